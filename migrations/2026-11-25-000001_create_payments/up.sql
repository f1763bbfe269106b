-- The tables of the original TRON USDT Payment Monitor, with its column
-- names, types and indexes (see its PostgreSQL migration guide), so that its
-- documented queries and its users' own reports keep working.
--
-- Times are TIMESTAMP WITHOUT TIME ZONE holding UTC, as the original wrote them.

CREATE TYPE payment_status AS ENUM ('pending', 'completed', 'failed', 'expired');

CREATE TABLE payments (
    id                     VARCHAR(36)    PRIMARY KEY,
    wallet_address         VARCHAR(34)    NOT NULL,
    expected_amount_usdt   NUMERIC(18, 6) NOT NULL,
    callback_url           TEXT           NOT NULL,
    order_id               VARCHAR(100)   NOT NULL,
    status                 payment_status NOT NULL DEFAULT 'pending',
    transaction_hash       VARCHAR(64),
    received_amount_usdt   NUMERIC(18, 6),
    created_at             TIMESTAMP      NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    completed_at           TIMESTAMP,
    last_checked_timestamp BIGINT         NOT NULL,
    callback_attempts      INTEGER        NOT NULL DEFAULT 0,
    last_callback_attempt  TIMESTAMP,
    callback_success       BOOLEAN        NOT NULL DEFAULT false,
    -- tronpay: the deadline fixed at creation (created_at + PAYMENT_TTL_SECONDS),
    -- so that changing the setting never moves a promise already made.
    expires_at             TIMESTAMP      NOT NULL,
    CONSTRAINT ck_payments_expected_amount_positive CHECK (expected_amount_usdt > 0),
    CONSTRAINT ck_payments_received_amount_not_negative CHECK (received_amount_usdt >= 0)
);

CREATE INDEX ix_payments_wallet_address ON payments (wallet_address);
CREATE INDEX ix_payments_order_id ON payments (order_id);
CREATE INDEX ix_payments_status ON payments (status);
CREATE INDEX ix_payments_created_at ON payments (created_at);
CREATE INDEX ix_payments_transaction_hash ON payments (transaction_hash);
-- An order can be paid again after a payment for it ended, but only one
-- payment per order may be waiting at a time. The API maps a violation of
-- this index, by name, to 409.
CREATE UNIQUE INDEX uq_payments_order_id_pending ON payments (order_id) WHERE status = 'pending';

CREATE TABLE payment_logs (
    id         SERIAL       PRIMARY KEY,
    payment_id VARCHAR(36)  NOT NULL REFERENCES payments (id),
    event_type VARCHAR(50)  NOT NULL,
    message    TEXT,
    metadata   JSON,
    created_at TIMESTAMP    NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);

CREATE INDEX ix_payment_logs_payment_id ON payment_logs (payment_id);
CREATE INDEX ix_payment_logs_event_type ON payment_logs (event_type);
CREATE INDEX ix_payment_logs_created_at ON payment_logs (created_at);
