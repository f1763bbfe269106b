DROP INDEX ix_webhook_deliveries_created_at;
DROP INDEX ix_transfers_chain_order;
DROP INDEX ix_transfers_detected_payment_id;
-- Assigned transfers become 'unmatched' again while their payments keep the
-- credit: after migrating up again they could be assigned a second time, so
-- check `SELECT txid, log_index, payment_id FROM transfers WHERE match_kind =
-- 'assigned'` before going down with real data.
UPDATE transfers SET match_kind = 'unmatched' WHERE match_kind = 'assigned';
ALTER TABLE transfers
    DROP CONSTRAINT ck_transfers_match_kind,
    ADD CONSTRAINT ck_transfers_match_kind
        CHECK (match_kind IN ('exact', 'partial', 'completing', 'overpaid', 'late', 'unmatched', 'ignored')) NOT VALID;
ALTER TABLE payments
    DROP CONSTRAINT ck_payments_notify_events,
    ADD CONSTRAINT ck_payments_notify_events
        CHECK (notify_events <@ ARRAY['payment.completed', 'payment.expired', 'payment.detected', 'payment.late']::text[])
        NOT VALID;
ALTER TABLE webhook_deliveries
    DROP CONSTRAINT ck_webhook_deliveries_event_type,
    ADD CONSTRAINT ck_webhook_deliveries_event_type
        CHECK (event_type IN ('payment.completed', 'payment.expired', 'payment.detected', 'payment.late')) NOT VALID;
DROP INDEX uq_payments_idempotency;
ALTER TABLE payments
    DROP COLUMN idempotency_request_hash,
    DROP COLUMN idempotency_key,
    DROP COLUMN idempotency_key_id,
    DROP COLUMN checkout_url,
    DROP COLUMN metadata_json,
    DROP COLUMN redirect_url,
    DROP COLUMN api_version;
DROP TABLE api_keys;
