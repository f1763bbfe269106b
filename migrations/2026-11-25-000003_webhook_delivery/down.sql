DROP TABLE webhook_secrets;
DROP TABLE webhook_attempts;
DROP INDEX ix_webhook_deliveries_dead;
DROP INDEX ix_webhook_deliveries_due;
CREATE INDEX ix_webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
ALTER TABLE webhook_deliveries
    DROP CONSTRAINT ck_webhook_deliveries_status,
    DROP COLUMN delivered_at,
    DROP COLUMN last_error,
    DROP COLUMN last_status,
    DROP COLUMN last_attempt_at,
    DROP COLUMN locked_until,
    DROP COLUMN published_at;
