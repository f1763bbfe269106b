ALTER TABLE payments
    DROP CONSTRAINT ck_payments_notify_events,
    ADD CONSTRAINT ck_payments_notify_events
        CHECK (notify_events <@ ARRAY['payment.completed', 'payment.expired', 'payment.detected', 'payment.late']::text[])
        NOT VALID;
ALTER TABLE webhook_deliveries
    DROP CONSTRAINT ck_webhook_deliveries_event_type,
    ADD CONSTRAINT ck_webhook_deliveries_event_type
        CHECK (event_type IN ('payment.completed', 'payment.expired', 'payment.detected', 'payment.late')) NOT VALID;
ALTER TABLE payments
    DROP COLUMN checkout_url,
    DROP COLUMN metadata_json,
    DROP COLUMN redirect_url,
    DROP COLUMN api_version;
DROP TABLE idempotency_keys;
DROP TABLE api_keys;
