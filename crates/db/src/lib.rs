//! PostgreSQL access shared by the tronpay services and the CLI.
//!
//! One place builds connections ([`pool`]), one place names the tables
//! ([`schema`]), and queries are small functions that take a connection, so
//! they work the same inside or outside a transaction.

pub mod api_keys;
pub mod chain;
pub mod deliveries;
pub mod error;
pub mod grants;
pub mod idempotency;
pub mod locks;
pub mod logs;
pub mod matching;
pub mod migrate;
pub mod models;
pub mod observe;
pub mod operators;
pub mod outbox;
pub mod payments;
pub mod pool;
pub mod prepared;
pub mod receiving;
pub mod schema;
pub mod secrets;
pub mod settings;
pub mod stats;
pub mod tls;
pub mod webhooks;

pub use diesel_async::AsyncPgConnection;
pub use error::DbError;
pub use pool::{DbPool, PooledConnection, connect};
pub use settings::DbSettings;
