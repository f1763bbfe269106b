-- Webhook delivery: every attempt recorded, retries scheduled in the
-- delivery row (the source of truth), signing secrets kept for rotation.

ALTER TABLE webhook_deliveries
    ADD COLUMN published_at    TIMESTAMP,
    ADD COLUMN locked_until    TIMESTAMP,
    ADD COLUMN last_attempt_at TIMESTAMP,
    ADD COLUMN last_status     INTEGER,
    ADD COLUMN last_error      TEXT,
    ADD COLUMN delivered_at    TIMESTAMP,
    ADD CONSTRAINT ck_webhook_deliveries_status CHECK (status IN ('pending', 'sending', 'delivered', 'failed', 'dead'));
-- Deliveries enqueued before this migration were handed to the bus already.
UPDATE webhook_deliveries SET published_at = created_at;
DROP INDEX ix_webhook_deliveries_due;
CREATE INDEX ix_webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status IN ('pending', 'sending');
CREATE INDEX ix_webhook_deliveries_dead ON webhook_deliveries (created_at) WHERE status IN ('dead', 'failed');

CREATE TABLE webhook_attempts (
    id            BIGSERIAL   PRIMARY KEY,
    delivery_id   UUID        NOT NULL REFERENCES webhook_deliveries (id),
    attempt       INTEGER     NOT NULL,
    started_at    TIMESTAMP   NOT NULL,
    duration_ms   INTEGER     NOT NULL,
    http_status   INTEGER,
    response_body TEXT,
    error         TEXT,
    outcome       VARCHAR(16) NOT NULL,
    CONSTRAINT ck_webhook_attempts_outcome CHECK (outcome IN ('delivered', 'retry', 'failed', 'dead'))
);
CREATE INDEX ix_webhook_attempts_delivery ON webhook_attempts (delivery_id);

-- Signing secrets (`whsec_…`). The newest signs; during a rotation the
-- previous one signs too until it expires.
CREATE TABLE webhook_secrets (
    id         SERIAL    PRIMARY KEY,
    secret     TEXT      NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    expires_at TIMESTAMP
);
