-- The merchant API v1 (PRODUCT §9).

-- API keys: `tpk_<prefix>_<secret>`, printed once; only the SHA-256 of the
-- whole key is stored. The prefix finds the row; the hash is compared in
-- constant time.
CREATE TABLE api_keys (
    id           UUID         PRIMARY KEY,
    name         VARCHAR(100) NOT NULL,
    prefix       VARCHAR(16)  NOT NULL,
    secret_hash  VARCHAR(64)  NOT NULL,
    scopes       TEXT[]       NOT NULL,
    created_at   TIMESTAMP    NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    last_used_at TIMESTAMP,
    revoked_at   TIMESTAMP,
    CONSTRAINT uq_api_keys_prefix UNIQUE (prefix),
    CONSTRAINT ck_api_keys_scopes
        CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['payments:read', 'payments:write', 'operator']::text[])
);

-- v1 payments: which API made the payment (its webhooks and views follow),
-- where the buyer goes when it is paid, and the merchant's metadata (a JSON
-- object, kept as the text given).
ALTER TABLE payments
    ADD COLUMN api_version   SMALLINT NOT NULL DEFAULT 0,
    ADD COLUMN redirect_url  TEXT,
    ADD COLUMN metadata_json TEXT,
    ADD COLUMN checkout_url  TEXT,
    ADD COLUMN idempotency_key_id       UUID,
    ADD COLUMN idempotency_key          VARCHAR(255),
    ADD COLUMN idempotency_request_hash VARCHAR(64);

-- Idempotent creates: the `Idempotency-Key` of an API key stays on the
-- payment it created for 24 hours (then the API clears it), with the SHA-256
-- of the request body. The unique index makes two requests with one key
-- make one payment; the first response is the payment as created, so it is
-- rendered again rather than stored. Only keyed payments are in the index.
CREATE UNIQUE INDEX uq_payments_idempotency ON payments (idempotency_key_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- v1 webhook events: partial payments and cancellations, and the `ping` of
-- a test webhook (deliveries only: nobody subscribes to it).
ALTER TABLE webhook_deliveries
    DROP CONSTRAINT ck_webhook_deliveries_event_type,
    ADD CONSTRAINT ck_webhook_deliveries_event_type
        CHECK (event_type IN ('payment.completed', 'payment.expired', 'payment.detected', 'payment.late',
                              'payment.partially_paid', 'payment.cancelled', 'ping')) NOT VALID;
ALTER TABLE payments
    DROP CONSTRAINT ck_payments_notify_events,
    ADD CONSTRAINT ck_payments_notify_events
        CHECK (notify_events <@ ARRAY['payment.completed', 'payment.expired', 'payment.detected', 'payment.late',
                                      'payment.partially_paid', 'payment.cancelled']::text[]) NOT VALID;

-- An operator may credit an unmatched or late transfer to a payment, once:
-- the transfer's match kind becomes 'assigned'.
ALTER TABLE transfers
    DROP CONSTRAINT ck_transfers_match_kind,
    ADD CONSTRAINT ck_transfers_match_kind
        CHECK (match_kind IN ('exact', 'partial', 'completing', 'overpaid', 'late', 'unmatched', 'ignored',
                              'assigned')) NOT VALID;

-- The v1 views: a payment's transfers (also those only shown on it while
-- not final), transfer lists newest first, and statistics of deliveries.
CREATE INDEX ix_transfers_detected_payment_id ON transfers (detected_payment_id);
CREATE INDEX ix_transfers_chain_order ON transfers (block_number, txid, log_index);
CREATE INDEX ix_webhook_deliveries_created_at ON webhook_deliveries (created_at);
