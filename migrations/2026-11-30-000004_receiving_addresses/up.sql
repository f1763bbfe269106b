-- Receiving addresses (PRODUCT §10): how a payment got its address, and the
-- addresses tronpay hands out itself.

-- 'given' (the merchant's, as the original always did), 'xpub' (derived from
-- the account key), 'pool' (imported), 'unique_amount' (one shared address).
ALTER TABLE payments
    ADD COLUMN address_mode VARCHAR(16) NOT NULL DEFAULT 'given',
    ADD CONSTRAINT ck_payments_address_mode
        CHECK (address_mode IN ('given', 'xpub', 'pool', 'unique_amount')) NOT VALID;

-- Addresses to hand out: derived from an account xpub ahead of need
-- (`account` names the key, `derivation_index` is i in m/44'/195'/0'/0/i),
-- or imported into the pool. `payment_id` is the payment that holds it (for
-- the pool, the last one). A derived address is handed out once, lowest
-- index first, and never again.
CREATE TABLE receiving_addresses (
    address          VARCHAR(34) PRIMARY KEY,
    source           VARCHAR(16) NOT NULL,
    account          VARCHAR(16),
    derivation_index INTEGER,
    payment_id       VARCHAR(36),
    assigned_at      TIMESTAMP,
    created_at       TIMESTAMP   NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    CONSTRAINT ck_receiving_addresses_source CHECK (source IN ('xpub', 'pool')),
    CONSTRAINT ck_receiving_addresses_derived
        CHECK (source <> 'xpub' OR (account IS NOT NULL AND derivation_index >= 0)),
    CONSTRAINT uq_receiving_addresses_index UNIQUE (account, derivation_index)
);
-- The next free derived address of an account, in index order.
CREATE INDEX ix_receiving_addresses_free ON receiving_addresses (account, derivation_index)
    WHERE payment_id IS NULL;
CREATE INDEX ix_receiving_addresses_payment ON receiving_addresses (payment_id);

-- unique_amount: what the buyer must send when it differs from the amount
-- asked (NULL: the same), and the amounts held on a shared address. The
-- primary key is the guarantee that no two payments on the address expect
-- the same amount; a row is deleted only a grace period after its payment
-- ended, so a late transfer never pays a stranger.
ALTER TABLE payments ADD COLUMN amount_to_pay NUMERIC(18, 6);
CREATE TABLE amount_reservations (
    address    VARCHAR(34)    NOT NULL,
    amount     NUMERIC(18, 6) NOT NULL,
    payment_id VARCHAR(36)    NOT NULL,
    created_at TIMESTAMP      NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    PRIMARY KEY (address, amount)
);
CREATE INDEX ix_amount_reservations_payment ON amount_reservations (payment_id);
