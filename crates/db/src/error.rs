//! Database failures, typed by what a caller should do about them, and the
//! one place that classifies them.
//!
//! Every failure is one of five kinds ([`DbErrorKind`]):
//!
//! - [`Unavailable`]: the database cannot be used right now (unreachable,
//!   saturated, failing over, a statement timed out). Retry with backoff;
//!   HTTP 503.
//! - [`Conflict`]: the write lost to another (a named constraint, a lost
//!   compare-and-set, the cursor moved by another scanner, a deadlock or
//!   serialization failure). The caller decides: a 409, a retry, or a stop.
//! - Corrupt: a stored row that cannot be read as what it must be. Logged
//!   with its key and skipped or surfaced; never retried for ever.
//! - [`Setup`]: the database lacks what tronpay needs (a table or column,
//!   a privilege) or its URL is wrong. Retrying cannot cure it; an operator
//!   must.
//! - Bug: a broken invariant or a statement PostgreSQL rejects.
//!
//! diesel-async keeps PostgreSQL's SQLSTATE for only a few kinds
//! (constraints, serialization failure, read-only transaction); for the rest
//! only the server's message is left. [`MESSAGES`] is the one table that
//! reads message texts (PostgreSQL's English ones); nothing else in tronpay
//! decides anything by an error's text. Each row is tested against a real
//! server (`crates/db/tests/errors.rs`).

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// What a caller should do about a [`DbError`] (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    Unavailable,
    Conflict,
    Corrupt,
    Setup,
    Bug,
}

/// A database failure (see the module documentation for the kinds).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// `what` (`payment`, `transfer`, …) with key `key` cannot be read.
    #[error("{what} {key} cannot be read: {detail}")]
    Corrupt {
        what: &'static str,
        key: String,
        detail: String,
    },
    #[error(transparent)]
    Setup(#[from] Setup),
    /// A broken invariant, or a statement PostgreSQL rejects.
    #[error("bug: {0}")]
    Bug(String),
}

/// The database cannot be used right now; retrying later can cure it.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
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
    #[error("no database connection became free within DB_POOL_TIMEOUT_SECONDS (pool exhausted)")]
    PoolTimeout,
    #[error("the database connection was lost: {0}")]
    ConnectionLost(String),
    /// A statement timeout, a lock timeout, or a cancel.
    #[error("a statement was cancelled: {0}")]
    Cancelled(String),
    /// Connected to a server that only reads: a standby, or a primary being
    /// demoted during a failover.
    #[error("the database is read-only (a standby, or a failover in progress): {0}")]
    ReadOnly(String),
    /// Starting up or shutting down, out of disk or memory, an I/O error, a
    /// connection pooler's own limit, a plan invalidated by a schema change,
    /// …
    #[error("database unavailable: {0}")]
    Other(String),
}

/// The write lost to another one.
#[derive(Debug, thiserror::Error)]
pub enum Conflict {
    /// A named constraint refused the row (the caller may turn a known one
    /// into a 409).
    #[error("{kind} {constraint:?} refused the row: {detail}")]
    Constraint {
        kind: ConstraintKind,
        constraint: Option<String>,
        detail: String,
    },
    /// A deadlock or a serialization failure: retry the transaction.
    #[error("the transaction lost a concurrent race: {0}")]
    Serialization(String),
    /// A compare-and-set matched no row: the state it expected is gone.
    #[error("{0}")]
    Lost(String),
    /// Another scanner moved the chain cursor away from `expected`.
    #[error("the cursor is no longer at block {expected} (another scanner?)")]
    CursorMoved { expected: i64 },
}

/// Which kind of constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintKind {
    #[error("unique constraint")]
    Unique,
    #[error("foreign key")]
    ForeignKey,
    #[error("check constraint")]
    Check,
    #[error("not-null constraint")]
    NotNull,
    #[error("exclusion constraint")]
    Exclusion,
    #[error("restriction")]
    Restrict,
}

/// The database is not set up for tronpay; an operator must act.
#[derive(Debug, thiserror::Error)]
pub enum Setup {
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    InvalidUrl(String),
    /// A table, column, type or function tronpay needs is missing.
    #[error("{0}: the tronpay tables are missing or incomplete: run `tronpay db create-tables`")]
    SchemaMissing(String),
    #[error("the database user lacks a privilege tronpay needs: {0}")]
    PermissionDenied(String),
    #[error("migration failed: {0}")]
    Migration(String),
}

impl DbError {
    /// What a caller should do about it.
    pub fn kind(&self) -> DbErrorKind {
        match self {
            Self::Unavailable(_) => DbErrorKind::Unavailable,
            Self::Conflict(_) => DbErrorKind::Conflict,
            Self::Corrupt { .. } => DbErrorKind::Corrupt,
            Self::Setup(_) => DbErrorKind::Setup,
            Self::Bug(_) => DbErrorKind::Bug,
        }
    }

    /// True when the database cannot be used right now (down, unreachable,
    /// saturated, failing over), as opposed to a query that is wrong or a
    /// schema that is missing.
    pub fn is_unavailable(&self) -> bool {
        self.kind() == DbErrorKind::Unavailable
    }

    /// True when trying the same work again can succeed by itself: the
    /// database was unavailable, or the transaction lost a race.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Conflict(Conflict::Serialization(_) | Conflict::Lost(_))
        )
    }

    /// The name of the unique constraint this error violated, if any.
    pub fn unique_violation(&self) -> Option<&str> {
        match self {
            Self::Conflict(Conflict::Constraint {
                kind: ConstraintKind::Unique,
                constraint,
                ..
            }) => constraint.as_deref(),
            _ => None,
        }
    }

    /// A row `what` with key `key` that cannot be read.
    pub fn corrupt(what: &'static str, key: impl std::fmt::Display, detail: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            what,
            key: key.to_string(),
            detail: detail.to_string(),
        }
    }

    /// A broken invariant.
    pub fn bug(detail: impl Into<String>) -> Self {
        Self::Bug(detail.into())
    }
}

/// How a message from the server is recognised.
#[derive(Debug, Clone, Copy)]
pub enum Match {
    StartsWith(&'static str),
    /// Starts with the first text and ends with the second.
    Around(&'static str, &'static str),
    Contains(&'static str),
}

impl Match {
    fn matches(self, message: &str) -> bool {
        match self {
            Self::StartsWith(start) => message.starts_with(start),
            Self::Around(start, end) => message.starts_with(start) && message.ends_with(end),
            Self::Contains(part) => message.contains(part),
        }
    }
}

/// What a recognised message means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    SchemaMissing,
    PermissionDenied,
    Cancelled,
    ConnectionLost,
    ReadOnly,
    Unavailable,
    Serialization,
}

/// The errors diesel-async reports without their SQLSTATE, by PostgreSQL's
/// (and PgBouncer's) message: the SQLSTATE, the text, what it means.
pub const MESSAGES: &[(&str, Match, Meaning)] = &[
    (
        "42P01",
        Match::Around("relation \"", "\" does not exist"),
        Meaning::SchemaMissing,
    ),
    (
        "42703",
        Match::Around("column ", " does not exist"),
        Meaning::SchemaMissing,
    ),
    (
        "42883",
        Match::Around("function ", " does not exist"),
        Meaning::SchemaMissing,
    ),
    (
        "42704",
        Match::Around("type \"", "\" does not exist"),
        Meaning::SchemaMissing,
    ),
    (
        "42501",
        Match::StartsWith("permission denied"),
        Meaning::PermissionDenied,
    ),
    (
        "57014",
        Match::StartsWith("canceling statement due to"),
        Meaning::Cancelled,
    ),
    ("55P03", Match::StartsWith("could not obtain lock"), Meaning::Cancelled),
    (
        "57P01",
        Match::StartsWith("terminating connection"),
        Meaning::ConnectionLost,
    ),
    (
        "0A000",
        Match::StartsWith("cached plan must not change result type"),
        Meaning::Unavailable,
    ),
    (
        "25006",
        Match::Contains("in a read-only transaction"),
        Meaning::ReadOnly,
    ),
    (
        "57P03",
        Match::StartsWith("the database system is"),
        Meaning::Unavailable,
    ),
    // Resources: a full disk, memory, an I/O error — the database cannot
    // work right now, not tronpay's statement.
    (
        "53100",
        Match::StartsWith("could not extend file"),
        Meaning::Unavailable,
    ),
    (
        "53100",
        Match::Contains("No space left on device"),
        Meaning::Unavailable,
    ),
    ("53200", Match::StartsWith("out of memory"), Meaning::Unavailable),
    ("53200", Match::StartsWith("out of shared memory"), Meaning::Unavailable),
    ("58030", Match::StartsWith("could not write to"), Meaning::Unavailable),
    ("58030", Match::StartsWith("could not read from"), Meaning::Unavailable),
    ("40P01", Match::StartsWith("deadlock detected"), Meaning::Serialization),
    (
        "40001",
        Match::StartsWith("could not serialize access"),
        Meaning::Serialization,
    ),
    // PgBouncer's own errors (SQLSTATE 08P01): its pool, not tronpay's query.
    ("08P01", Match::StartsWith("query_wait_timeout"), Meaning::Unavailable),
    // A pooler that lost a connection's prepared statements.
    (
        "26000",
        Match::Around("prepared statement \"", "\" does not exist"),
        Meaning::Unavailable,
    ),
    (
        "08P01",
        Match::StartsWith("server conn crashed"),
        Meaning::ConnectionLost,
    ),
    (
        "08P01",
        Match::StartsWith("no more connections allowed"),
        Meaning::Unavailable,
    ),
    (
        "08P01",
        Match::StartsWith("pgbouncer cannot connect to server"),
        Meaning::Unavailable,
    ),
    (
        "08P01",
        Match::StartsWith("server login has been failing"),
        Meaning::Unavailable,
    ),
];

/// What a server message means, if [`MESSAGES`] knows it.
pub fn meaning_of(message: &str) -> Option<Meaning> {
    row_of(message).map(|row| MESSAGES[row].2)
}

/// The index of the first row of [`MESSAGES`] that recognises `message`.
pub fn row_of(message: &str) -> Option<usize> {
    MESSAGES.iter().position(|(_, pattern, _)| pattern.matches(message))
}

impl From<DieselError> for DbError {
    fn from(error: DieselError) -> Self {
        let constraint = |kind, info: &dyn diesel::result::DatabaseErrorInformation| {
            Self::Conflict(Conflict::Constraint {
                kind,
                constraint: info.constraint_name().map(str::to_owned),
                detail: info.message().to_owned(),
            })
        };
        match &error {
            DieselError::DatabaseError(kind, info) => {
                let info = info.as_ref();
                let message = info.message();
                match kind {
                    DatabaseErrorKind::UniqueViolation => constraint(ConstraintKind::Unique, info),
                    DatabaseErrorKind::ForeignKeyViolation => constraint(ConstraintKind::ForeignKey, info),
                    DatabaseErrorKind::CheckViolation => constraint(ConstraintKind::Check, info),
                    DatabaseErrorKind::NotNullViolation => constraint(ConstraintKind::NotNull, info),
                    DatabaseErrorKind::ExclusionViolation => constraint(ConstraintKind::Exclusion, info),
                    DatabaseErrorKind::RestrictViolation => constraint(ConstraintKind::Restrict, info),
                    DatabaseErrorKind::SerializationFailure => Conflict::Serialization(message.to_owned()).into(),
                    DatabaseErrorKind::ReadOnlyTransaction => Unavailable::ReadOnly(message.to_owned()).into(),
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
                        Unavailable::ConnectionLost(message.to_owned()).into()
                    }
                    _ => match meaning_of(message) {
                        Some(Meaning::SchemaMissing) => Setup::SchemaMissing(message.to_owned()).into(),
                        Some(Meaning::PermissionDenied) => Setup::PermissionDenied(message.to_owned()).into(),
                        Some(Meaning::Cancelled) => Unavailable::Cancelled(message.to_owned()).into(),
                        Some(Meaning::ConnectionLost) => Unavailable::ConnectionLost(message.to_owned()).into(),
                        Some(Meaning::ReadOnly) => Unavailable::ReadOnly(message.to_owned()).into(),
                        Some(Meaning::Unavailable) => Unavailable::Other(message.to_owned()).into(),
                        Some(Meaning::Serialization) => Conflict::Serialization(message.to_owned()).into(),
                        None => Self::Bug(format!("PostgreSQL refused a statement: {message}")),
                    },
                }
            }
            DieselError::BrokenTransactionManager => {
                Unavailable::ConnectionLost("the connection broke during a transaction".into()).into()
            }
            // A row whose value does not fit the type it must have.
            DieselError::DeserializationError(cause) => Self::corrupt("row", "(unknown)", cause),
            _ => Self::Bug(error.to_string()),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for DbError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        use deadpool::managed::{PoolError, TimeoutType};
        use diesel_async::pooled_connection::PoolError as Backend;
        match error {
            PoolError::Timeout(TimeoutType::Wait) => Unavailable::PoolTimeout.into(),
            PoolError::Timeout(TimeoutType::Create) => {
                Unavailable::Other("connecting to PostgreSQL timed out".into()).into()
            }
            PoolError::Timeout(TimeoutType::Recycle) => {
                Unavailable::Other("checking a pooled connection timed out".into()).into()
            }
            PoolError::Backend(Backend::ConnectionError(error)) => Unavailable::Other(match error {
                diesel::ConnectionError::BadConnection(message) => message,
                other => other.to_string(),
            })
            .into(),
            PoolError::Backend(Backend::QueryError(error)) => Self::from(error),
            PoolError::Closed => Unavailable::Other("the connection pool is closed".into()).into(),
            PoolError::NoRuntimeSpecified => Self::bug("the connection pool has no runtime"),
            PoolError::PostCreateHook(error) => Unavailable::Other(error.to_string()).into(),
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
        let unavailable =
            if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
                Unavailable::AuthenticationFailed {
                    target: target.into(),
                    user: user.into(),
                    detail,
                }
            } else if *code == SqlState::INVALID_CATALOG_NAME {
                Unavailable::DatabaseMissing {
                    target: target.into(),
                    database: database.into(),
                }
            } else if *code == SqlState::TOO_MANY_CONNECTIONS {
                Unavailable::TooManyConnections {
                    target: target.into(),
                    detail,
                }
            } else {
                Unavailable::Unreachable {
                    target: target.into(),
                    detail,
                }
            };
        return unavailable.into();
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
            return Unavailable::Unreachable {
                target: target.into(),
                detail,
            }
            .into();
        }
        source = current.source();
    }
    Unavailable::Unreachable {
        target: target.into(),
        detail: error.to_string(),
    }
    .into()
}
