//! Database settings, read from the same layered configuration by every
//! service (environment names as the original service used them).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tronpay_runtime::{Validate, redact_url};

/// `DATABASE_URL` and the pool settings. Defaults are the original
/// service's SQLAlchemy pool: 10 connections plus 20 overflow, recycled
/// after 120 s, checked before use.
///
/// Serialized (for display) with the URL's password redacted.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct DbSettings {
    /// `DATABASE_URL`: `postgres://user:password@host:port/database`.
    #[serde(serialize_with = "tronpay_runtime::serialize_redacted_url")]
    pub database_url: String,
    /// `DB_POOL_SIZE`: connections kept open.
    pub db_pool_size: usize,
    /// `DB_MAX_OVERFLOW`: extra connections opened under load and closed
    /// again after `DB_OVERFLOW_IDLE_SECONDS` idle.
    pub db_max_overflow: usize,
    /// `DB_OVERFLOW_IDLE_SECONDS`.
    pub db_overflow_idle_seconds: u64,
    /// `DB_POOL_RECYCLE_SECONDS`: a connection older than this is replaced
    /// at its next checkout (0 = never).
    pub db_pool_recycle_seconds: u64,
    /// `DB_POOL_PRE_PING`: check a connection with `SELECT 1` before use.
    pub db_pool_pre_ping: bool,
    /// `DB_POOL_PRE_PING_IDLE_MS`: skip the check for a connection that was
    /// in use this recently (0 = check every time).
    pub db_pool_pre_ping_idle_ms: u64,
    /// `DB_POOL_TIMEOUT_SECONDS`: how long a request waits for a free connection.
    pub db_pool_timeout_seconds: u64,
    /// `DB_CONNECT_TIMEOUT_SECONDS`.
    pub db_connect_timeout_seconds: u64,
    /// `DB_STATEMENT_TIMEOUT_MS`: server-side limit per statement (0 = none).
    pub db_statement_timeout_ms: u64,
}

/// The database `make up` and the tests use when nothing else is set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/tronpay";

impl Default for DbSettings {
    fn default() -> Self {
        Self {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            db_pool_size: 10,
            db_max_overflow: 20,
            db_overflow_idle_seconds: 30,
            db_pool_recycle_seconds: 120,
            db_pool_pre_ping: true,
            db_pool_pre_ping_idle_ms: 1_000,
            db_pool_timeout_seconds: 10,
            db_connect_timeout_seconds: 5,
            db_statement_timeout_ms: 30_000,
        }
    }
}

impl DbSettings {
    /// Settings for `url` with every other value at its default.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            database_url: url.into(),
            ..Self::default()
        }
    }

    pub fn max_connections(&self) -> usize {
        self.db_pool_size + self.db_max_overflow
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.db_connect_timeout_seconds)
    }

    pub fn pool_timeout(&self) -> Duration {
        Duration::from_secs(self.db_pool_timeout_seconds)
    }
}

impl Validate for DbSettings {
    /// Checks the URL (and its TLS parameters) and the pool bounds, naming
    /// the setting that is wrong.
    fn validate(&self) -> Result<(), String> {
        if self.database_url.trim().is_empty() {
            return Err("DATABASE_URL is empty".into());
        }
        let (url, tls) = crate::tls::split_url(&self.database_url)
            .map_err(|error| format!("DATABASE_URL is not a valid PostgreSQL URL: {error}"))?;
        let config = url
            .parse::<tokio_postgres::Config>()
            .map_err(|error| format!("DATABASE_URL is not a valid PostgreSQL URL: {error}"))?;
        tls.client_config(tls.ssl_mode().unwrap_or(config.get_ssl_mode()))
            .map_err(|error| format!("DATABASE_URL: {error}"))?;
        if !(2..=1000).contains(&self.db_pool_size) {
            return Err("DB_POOL_SIZE must be between 2 and 1000".into());
        }
        if self.db_max_overflow > 1000 {
            return Err("DB_MAX_OVERFLOW must be at most 1000".into());
        }
        if self.db_pool_timeout_seconds == 0 {
            return Err("DB_POOL_TIMEOUT_SECONDS must be at least 1".into());
        }
        if self.db_connect_timeout_seconds == 0 {
            return Err("DB_CONNECT_TIMEOUT_SECONDS must be at least 1".into());
        }
        Ok(())
    }
}

impl fmt::Debug for DbSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbSettings")
            .field("database_url", &redact_url(&self.database_url))
            .field("db_pool_size", &self.db_pool_size)
            .field("db_max_overflow", &self.db_max_overflow)
            .field("db_pool_recycle_seconds", &self.db_pool_recycle_seconds)
            .field("db_pool_pre_ping", &self.db_pool_pre_ping)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_print() {
        let settings = DbSettings::for_url("postgres://u:secret@h/db");
        assert!(!format!("{settings:?}").contains("secret"));
    }

    #[test]
    fn validation_names_the_setting() {
        let mut settings = DbSettings::for_url("not a url at all ::");
        assert!(settings.validate().unwrap_err().starts_with("DATABASE_URL"));
        settings = DbSettings {
            db_pool_size: 1,
            ..DbSettings::default()
        };
        assert!(settings.validate().unwrap_err().starts_with("DB_POOL_SIZE"));
        assert!(DbSettings::default().validate().is_ok());
    }
}
