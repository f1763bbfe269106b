DROP INDEX ix_receiving_addresses_pool_free;
ALTER TABLE receiving_addresses DROP COLUMN released_at;
