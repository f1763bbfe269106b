-- The address pool (PRODUCT §10, ADDRESS_MODE=pool): imported addresses
-- (`receiving_addresses.source = 'pool'`) are lent to one pending payment at
-- a time and come back a grace period after it ended. A pool address is free
-- while `payment_id` IS NULL; `released_at` is when it last came back (NULL:
-- never lent), and the one that has rested longest is lent first.
ALTER TABLE receiving_addresses ADD COLUMN released_at TIMESTAMP;
CREATE INDEX ix_receiving_addresses_pool_free ON receiving_addresses (released_at NULLS FIRST, address)
    WHERE source = 'pool' AND payment_id IS NULL;
