DROP TABLE webhook_deliveries;
DROP TABLE processed_messages;
DROP TABLE outbox;
DROP TABLE chain_state;
ALTER TABLE payments DROP COLUMN notify_events;
DROP INDEX ix_payments_pending_expires;
DROP INDEX ix_payments_pending_wallet;
DROP TABLE transfers;
