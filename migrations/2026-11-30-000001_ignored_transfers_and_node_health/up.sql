-- Zero-value and dust transfers (address poisoning) are kept for the
-- operator as 'ignored': they never touch a payment. NOT VALID: the rows
-- already there met the narrower list; checking them again would scan the
-- whole table under an exclusive lock.
ALTER TABLE transfers
    DROP CONSTRAINT ck_transfers_match_kind,
    ADD CONSTRAINT ck_transfers_match_kind
        CHECK (match_kind IN ('exact', 'partial', 'completing', 'overpaid', 'late', 'unmatched', 'ignored')) NOT VALID;

-- What the health endpoints need to tell a stalled or unreachable node from
-- a current one: the final block's time (the newest block seen when only the
-- final block is polled), and the watcher's block interval and stall bound.
-- polled_at is now the last *successful* poll (failures set last_error_at).
ALTER TABLE chain_state
    ADD COLUMN final_block_time   TIMESTAMP,
    ADD COLUMN block_interval_ms  INTEGER,
    ADD COLUMN node_stall_seconds INTEGER;
