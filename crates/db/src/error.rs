//! Database failures, classified so that an operator reads one clear line
//! and a service can tell "database unavailable" (503) from a bug (500).

use diesel::result::{DatabaseErrorKind, Error as DieselError};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    InvalidUrl(String),
    #[error("cannot reach PostgreSQL at {target}: {detail}")]
    Unreachable { target: String, detail: String },
    #[error("PostgreSQL at {target} refused user {user:?}: {detail} (check the user and password in DATABASE_URL)")]
    AuthenticationFailed {
        target: String,
        user: String,
        detail: String,
    },
    #[error(
        "database {database:?} does not exist at {target} (create it with `createdb {database}`, then run `tronpay db create-tables`)"
    )]
    DatabaseMissing { target: String, database: String },
    #[error(
        "PostgreSQL at {target} has too many connections: {detail} (lower DB_POOL_SIZE/DB_MAX_OVERFLOW or raise max_connections)"
    )]
    TooManyConnections { target: String, detail: String },
    #[error("the tronpay tables are missing: run `tronpay db create-tables`")]
    TablesMissing,
    #[error("no database connection became free within DB_POOL_TIMEOUT_SECONDS (pool exhausted)")]
    PoolTimeout,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("the database connection was lost: {0}")]
    ConnectionLost(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("database error: {0}")]
    Query(#[source] DieselError),
}

impl DbError {
    /// True when the database cannot be used right now (down, unreachable,
    /// saturated), as opposed to a query that is wrong.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. }
                | Self::AuthenticationFailed { .. }
                | Self::DatabaseMissing { .. }
                | Self::TooManyConnections { .. }
                | Self::TablesMissing
                | Self::PoolTimeout
                | Self::Unavailable(_)
                | Self::ConnectionLost(_)
        )
    }

    /// The name of the unique constraint this error violated, if any.
    pub fn unique_violation(&self) -> Option<&str> {
        match self {
            Self::Query(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)) => info.constraint_name(),
            _ => None,
        }
    }
}

impl From<DieselError> for DbError {
    fn from(error: DieselError) -> Self {
        match &error {
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => Self::ConnectionLost(info.message().to_owned()),
            DieselError::BrokenTransactionManager => {
                Self::ConnectionLost("the connection broke during a transaction".into())
            }
            // diesel keeps PostgreSQL's message, not its SQLSTATE; these are
            // the server's (English) texts.
            // 42P01 undefined_table
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)
                if info.message().starts_with("relation ") && info.message().ends_with(" does not exist") =>
            {
                Self::TablesMissing
            }
            // 57014 query_canceled (statement_timeout), 57P01..57P03 admin or
            // crash shutdown, 0A000 "cached plan must not change result type"
            // after the schema changed under a pooled connection.
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)
                if [
                    "canceling statement due to",
                    "terminating connection",
                    "the database system is",
                    "cached plan must not change",
                ]
                .iter()
                .any(|start| info.message().starts_with(start)) =>
            {
                Self::Unavailable(info.message().to_owned())
            }
            _ => Self::Query(error),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for DbError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        use deadpool::managed::{PoolError, TimeoutType};
        use diesel_async::pooled_connection::PoolError as Backend;
        match error {
            PoolError::Timeout(TimeoutType::Wait) => Self::PoolTimeout,
            PoolError::Timeout(TimeoutType::Create) => Self::Unavailable("connecting to PostgreSQL timed out".into()),
            PoolError::Timeout(TimeoutType::Recycle) => {
                Self::Unavailable("checking a pooled connection timed out".into())
            }
            PoolError::Backend(Backend::ConnectionError(error)) => Self::Unavailable(match error {
                diesel::ConnectionError::BadConnection(message) => message,
                other => other.to_string(),
            }),
            PoolError::Backend(Backend::QueryError(error)) => Self::from(error),
            PoolError::Closed => Self::Unavailable("the connection pool is closed".into()),
            PoolError::NoRuntimeSpecified => Self::Unavailable("the connection pool has no runtime".into()),
            PoolError::PostCreateHook(error) => Self::Unavailable(error.to_string()),
        }
    }
}

/// Classifies a failed connection attempt.
pub(crate) fn classify_connect_error(
    error: &tokio_postgres::Error,
    target: &str,
    user: &str,
    database: &str,
) -> DbError {
    use tokio_postgres::error::SqlState;

    if let Some(db_error) = error.as_db_error() {
        let detail = db_error.message().to_owned();
        let code = db_error.code();
        return if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            DbError::AuthenticationFailed {
                target: target.into(),
                user: user.into(),
                detail,
            }
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            DbError::DatabaseMissing {
                target: target.into(),
                database: database.into(),
            }
        } else if *code == SqlState::TOO_MANY_CONNECTIONS {
            DbError::TooManyConnections {
                target: target.into(),
                detail,
            }
        } else {
            DbError::Unreachable {
                target: target.into(),
                detail,
            }
        };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            let tls = io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
            let detail = match io.kind() {
                _ if tls.is_some() => format!(
                    "TLS handshake failed: {} (check sslmode and sslrootcert in DATABASE_URL)",
                    tls.map(ToString::to_string).unwrap_or_default()
                ),
                std::io::ErrorKind::ConnectionRefused => "connection refused (is PostgreSQL running there?)".to_owned(),
                std::io::ErrorKind::TimedOut => "connection timed out".to_owned(),
                _ => io.to_string(),
            };
            return DbError::Unreachable {
                target: target.into(),
                detail,
            };
        }
        source = current.source();
    }
    DbError::Unreachable {
        target: target.into(),
        detail: error.to_string(),
    }
}
