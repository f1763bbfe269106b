-- The operator dashboard (PRODUCT §11): operators with argon2 password
-- hashes, their sessions (stored as SHA-256 hashes of the cookie's token, so
-- a database dump signs no one in) with each session's CSRF token, and failed
-- sign-ins (the rate limit every replica sees).
CREATE TABLE operators (
    id                  UUID         PRIMARY KEY,
    name                VARCHAR(64)  NOT NULL UNIQUE,
    password_hash       TEXT         NOT NULL,
    created_at          TIMESTAMP    NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    password_changed_at TIMESTAMP    NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);

CREATE TABLE operator_sessions (
    token_hash   VARCHAR(64)  PRIMARY KEY,
    operator_id  UUID         NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    csrf_token   VARCHAR(64)  NOT NULL,
    created_at   TIMESTAMP    NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    expires_at   TIMESTAMP    NOT NULL
);
CREATE INDEX ix_operator_sessions_operator ON operator_sessions (operator_id);
CREATE INDEX ix_operator_sessions_expires ON operator_sessions (expires_at);

CREATE TABLE operator_sign_in_failures (
    id         BIGSERIAL    PRIMARY KEY,
    name       VARCHAR(64)  NOT NULL,
    client_ip  VARCHAR(64)  NOT NULL,
    at         TIMESTAMP    NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);
CREATE INDEX ix_operator_sign_in_failures_name ON operator_sign_in_failures (name, at);
CREATE INDEX ix_operator_sign_in_failures_ip ON operator_sign_in_failures (client_ip, at);
