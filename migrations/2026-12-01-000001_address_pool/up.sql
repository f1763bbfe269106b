-- The address pool (PRODUCT §10, ADDRESS_MODE=pool), and cheaper hand-outs.
--
-- Handing out a derived address used to update its row in
-- receiving_addresses: a new row version and three index entries per create
-- (measured: xpub creates at ~60 % of given ones in PostgreSQL alone). Now
-- the free derived addresses have a table of their own, a create deletes
-- the one it takes (a delete writes no index entry), and the payment
-- records the index it got. receiving_addresses keeps the pool.

-- How far each account key has been derived: the next index to derive.
-- Refills take their range here, so two replicas never derive the same one.
CREATE TABLE derivation_accounts (
    account    VARCHAR(16) PRIMARY KEY,
    next_index BIGINT      NOT NULL CHECK (next_index >= 0)
);
-- Derived addresses not handed out yet; a create takes the lowest index.
-- An address handed out is deleted here and never derived again.
CREATE TABLE free_derived_addresses (
    account          VARCHAR(16) NOT NULL,
    derivation_index INTEGER     NOT NULL CHECK (derivation_index >= 0),
    address          VARCHAR(34) NOT NULL,
    PRIMARY KEY (account, derivation_index)
);
-- A derived payment's key and index (i in m/44'/195'/0'/0/i).
ALTER TABLE payments
    ADD COLUMN derivation_account VARCHAR(16),
    ADD COLUMN derivation_index INTEGER;

-- What earlier builds of this release derived moves over.
UPDATE payments p SET derivation_account = r.account, derivation_index = r.derivation_index
FROM receiving_addresses r WHERE r.source = 'xpub' AND r.payment_id = p.id;
INSERT INTO free_derived_addresses (account, derivation_index, address)
SELECT account, derivation_index, address FROM receiving_addresses WHERE source = 'xpub' AND payment_id IS NULL;
INSERT INTO derivation_accounts (account, next_index)
SELECT account, max(derivation_index) + 1 FROM receiving_addresses WHERE source = 'xpub' GROUP BY account;
DELETE FROM receiving_addresses WHERE source = 'xpub';

-- receiving_addresses is the pool: imported addresses lent to one pending
-- payment at a time, back a grace period after it ended. Free while
-- `payment_id` IS NULL; `released_at` is when it last came back (NULL:
-- never lent), and the one that has rested longest is lent first.
DROP INDEX ix_receiving_addresses_free;
DROP INDEX ix_receiving_addresses_payment;
ALTER TABLE receiving_addresses
    DROP CONSTRAINT uq_receiving_addresses_index,
    DROP CONSTRAINT ck_receiving_addresses_derived,
    DROP CONSTRAINT ck_receiving_addresses_source,
    DROP COLUMN account,
    DROP COLUMN derivation_index,
    ADD COLUMN released_at TIMESTAMP,
    ADD CONSTRAINT ck_receiving_addresses_source CHECK (source = 'pool');
CREATE INDEX ix_receiving_addresses_pool_free ON receiving_addresses (released_at NULLS FIRST, address)
    WHERE payment_id IS NULL;

-- Raised amounts are found by (address, amount); releasing them joins on
-- the payment from the (small) table side: this index only cost creates.
DROP INDEX ix_amount_reservations_payment;
