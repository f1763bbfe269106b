CREATE INDEX ix_amount_reservations_payment ON amount_reservations (payment_id);

DROP INDEX ix_receiving_addresses_pool_free;
ALTER TABLE receiving_addresses
    DROP CONSTRAINT ck_receiving_addresses_source,
    DROP COLUMN released_at,
    ADD COLUMN account VARCHAR(16),
    ADD COLUMN derivation_index INTEGER,
    ADD CONSTRAINT ck_receiving_addresses_source CHECK (source IN ('xpub', 'pool')),
    ADD CONSTRAINT ck_receiving_addresses_derived
        CHECK (source <> 'xpub' OR (account IS NOT NULL AND derivation_index >= 0)),
    ADD CONSTRAINT uq_receiving_addresses_index UNIQUE (account, derivation_index);
CREATE INDEX ix_receiving_addresses_free ON receiving_addresses (account, derivation_index)
    WHERE payment_id IS NULL;
CREATE INDEX ix_receiving_addresses_payment ON receiving_addresses (payment_id);

INSERT INTO receiving_addresses (address, source, account, derivation_index, payment_id, assigned_at)
SELECT wallet_address, 'xpub', derivation_account, derivation_index, id, created_at
FROM payments WHERE derivation_account IS NOT NULL;
INSERT INTO receiving_addresses (address, source, account, derivation_index)
SELECT address, 'xpub', account, derivation_index FROM free_derived_addresses;

ALTER TABLE payments DROP COLUMN derivation_index, DROP COLUMN derivation_account;
DROP TABLE free_derived_addresses;
DROP TABLE derivation_accounts;
