DROP TABLE amount_reservations;
ALTER TABLE payments DROP COLUMN amount_to_pay;
DROP TABLE receiving_addresses;
ALTER TABLE payments
    DROP CONSTRAINT ck_payments_address_mode,
    DROP COLUMN address_mode;
