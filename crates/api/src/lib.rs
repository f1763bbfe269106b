//! The merchant HTTP API of tronpay.
//!
//! It keeps the original Flask service's endpoints, JSON shapes, status codes
//! and error texts, and owns payment state in PostgreSQL.

pub mod callback_guard;
pub mod chain_events;
pub mod error;
pub mod expiry;
pub mod request;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod workers;

pub use settings::ApiSettings;
pub use startup::Application;
