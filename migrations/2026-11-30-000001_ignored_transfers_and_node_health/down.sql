ALTER TABLE chain_state
    DROP COLUMN node_stall_seconds,
    DROP COLUMN block_interval_ms,
    DROP COLUMN final_block_time;
UPDATE transfers SET match_kind = 'unmatched' WHERE match_kind = 'ignored';
ALTER TABLE transfers
    DROP CONSTRAINT ck_transfers_match_kind,
    ADD CONSTRAINT ck_transfers_match_kind
        CHECK (match_kind IN ('exact', 'partial', 'completing', 'overpaid', 'late', 'unmatched'));
