DROP TABLE receiving_addresses;
ALTER TABLE payments
    DROP CONSTRAINT ck_payments_address_mode,
    DROP COLUMN address_mode;
