//! The TRON full-node HTTP API as tronpay uses it (java-tron's `/wallet/…`
//! and `/walletsolidity/…` endpoints, which TronGrid also serves).
//!
//! [`types`] holds the response shapes, [`decode`] turns a block's
//! transaction receipts into USDT transfers, and [`client`] calls one or more
//! nodes with timeouts, backoff and failover.

pub mod client;
pub mod decode;
pub mod types;

pub use client::{NodeClient, NodeError, NodeSettings};
pub use decode::{SkipReason, Skipped, usdt_transfers};
pub use tronpay_domain::Transfer;
pub use types::{Block, BlockHeader, Log, Receipt, TxInfo};
