-- Following the chain and handing events between services.

-- USDT transfers to watched addresses, identified by (txid, log index): one
-- transaction can pay several addresses. The chain watcher writes the chain
-- facts (status: detected at the tip, confirmed when final, dropped when a
-- detected transfer is not in the final block); the API writes how it was
-- matched (payment_id, match_kind, applied_at).
CREATE TABLE transfers (
    txid                 VARCHAR(64)    NOT NULL,
    log_index            INTEGER        NOT NULL,
    block_number         BIGINT         NOT NULL,
    block_time           TIMESTAMP      NOT NULL,
    from_address         VARCHAR(34)    NOT NULL,
    to_address           VARCHAR(34)    NOT NULL,
    amount_usdt          NUMERIC(18, 6) NOT NULL,
    status               VARCHAR(16)    NOT NULL,
    seen_at              TIMESTAMP      NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    confirmed_at         TIMESTAMP,
    detected_payment_id  VARCHAR(36)    REFERENCES payments (id),
    payment_id           VARCHAR(36)    REFERENCES payments (id),
    match_kind           VARCHAR(16),
    applied_at           TIMESTAMP,
    PRIMARY KEY (txid, log_index),
    CONSTRAINT ck_transfers_status CHECK (status IN ('detected', 'confirmed', 'dropped')),
    CONSTRAINT ck_transfers_match_kind CHECK (match_kind IN ('exact', 'partial', 'completing', 'overpaid', 'late', 'unmatched')),
    CONSTRAINT ck_transfers_amount CHECK (amount_usdt >= 0)
);
CREATE INDEX ix_transfers_to_address ON transfers (to_address);
CREATE INDEX ix_transfers_payment_id ON transfers (payment_id);
CREATE INDEX ix_transfers_detected_block ON transfers (block_number) WHERE status = 'detected';
CREATE INDEX ix_transfers_unapplied ON transfers (to_address, block_time) WHERE status = 'confirmed' AND applied_at IS NULL;
CREATE INDEX ix_transfers_unmatched ON transfers (block_time) WHERE match_kind = 'unmatched';

-- Matching and the expiry sweep look up pending payments by address and by
-- deadline.
CREATE INDEX ix_payments_pending_wallet ON payments (wallet_address, created_at) WHERE status = 'pending';
CREATE INDEX ix_payments_pending_expires ON payments (expires_at) WHERE status = 'pending';

-- Which events a payment's webhook receives besides completion (payments
-- made through the original /create_payment get completion only).
ALTER TABLE payments ADD COLUMN notify_events TEXT[] NOT NULL DEFAULT '{}';

-- Where the chain watcher is: the last final block whose transfers and
-- events are committed (advanced in the same transaction as them), the last
-- tip block scanned for early detection, and what it last saw upstream.
CREATE TABLE chain_state (
    id                SMALLINT   PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    cursor_block      BIGINT     NOT NULL,
    cursor_block_time TIMESTAMP,
    tip_block         BIGINT     NOT NULL,
    head_block        BIGINT,
    head_block_time   TIMESTAMP,
    final_block       BIGINT,
    polled_at         TIMESTAMP,
    last_error        TEXT,
    last_error_at     TIMESTAMP,
    leader            VARCHAR(200),
    updated_at        TIMESTAMP  NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);

-- Transactional outbox: an event is written here in the same transaction as
-- the change that causes it; a relay publishes it (with publisher confirms)
-- and marks it published. Nothing is lost while the broker is down.
CREATE TABLE outbox (
    id           BIGSERIAL    PRIMARY KEY,
    message_id   UUID         NOT NULL UNIQUE,
    routing_key  VARCHAR(100) NOT NULL,
    payload      JSONB        NOT NULL,
    created_at   TIMESTAMP    NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    published_at TIMESTAMP
);
CREATE INDEX ix_outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX ix_outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Consumers remember the messages they applied, in the same transaction as
-- the effect, so a redelivered message changes nothing.
CREATE TABLE processed_messages (
    consumer     VARCHAR(50) NOT NULL,
    message_id   UUID        NOT NULL,
    processed_at TIMESTAMP   NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    PRIMARY KEY (consumer, message_id)
);

-- Webhook notifications to deliver (the dispatcher adds attempts and
-- outcomes); webhook_id is the Standard Webhooks message id, stable across
-- retries.
CREATE TABLE webhook_deliveries (
    id           UUID         PRIMARY KEY,
    payment_id   VARCHAR(36)  NOT NULL REFERENCES payments (id),
    event_type   VARCHAR(50)  NOT NULL,
    webhook_id   VARCHAR(64)  NOT NULL UNIQUE,
    payload      JSONB        NOT NULL,
    status       VARCHAR(16)  NOT NULL DEFAULT 'pending',
    attempts     INTEGER      NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    created_at   TIMESTAMP    NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);
-- A payment completes once, so it is announced once.
CREATE UNIQUE INDEX uq_webhook_deliveries_completed ON webhook_deliveries (payment_id) WHERE event_type = 'payment.completed';
CREATE INDEX ix_webhook_deliveries_payment ON webhook_deliveries (payment_id);
CREATE INDEX ix_webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
