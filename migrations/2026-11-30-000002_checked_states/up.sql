-- Every state column holds only the values of its domain enum (one string
-- form each); crates/db/tests/states.rs checks these lists against the enums.
-- NOT VALID: every row tronpay wrote already holds such a value; checking
-- them would scan the (possibly very large) tables under an exclusive lock.
ALTER TABLE webhook_deliveries
    ADD CONSTRAINT ck_webhook_deliveries_event_type
        CHECK (event_type IN ('payment.completed', 'payment.expired', 'payment.detected', 'payment.late')) NOT VALID;
ALTER TABLE payments
    ADD CONSTRAINT ck_payments_notify_events
        CHECK (notify_events <@ ARRAY['payment.completed', 'payment.expired', 'payment.detected', 'payment.late']::text[])
        NOT VALID;
-- payment_logs.event_type is not constrained: the column belongs to the
-- original service's schema, whose rows (and an operator's own notes) may
-- carry other event types. tronpay writes only its LogEvent names there.
