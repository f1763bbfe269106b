-- What operators did from the dashboard (PRODUCT §11): every action, with
-- the operator's name, including those that touch no payment (API keys,
-- retrying every dead delivery). Actions on a payment are also in that
-- payment's `payment_logs`.
CREATE TABLE operator_actions (
    id        BIGSERIAL     PRIMARY KEY,
    operator  VARCHAR(64)   NOT NULL,
    action    VARCHAR(64)   NOT NULL,
    subject   VARCHAR(200)  NOT NULL,
    at        TIMESTAMP     NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);
CREATE INDEX ix_operator_actions_at ON operator_actions (at);
