//! A USDT TRC-20 transfer: the one type the node client decodes, the chain
//! watcher stores, the events carry and matching applies.
//!
//! A transfer is one `Transfer(address,address,uint256)` log of the USDT
//! contract in a transaction whose receipt succeeded. Its identity is
//! `(txid, log index)`: one transaction can pay several addresses.

use serde::{Deserialize, Serialize};

use crate::{TronAddress, TxId, UsdtAmount};

/// A transfer's identity: its transaction and the position of its log in
/// that transaction's log list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TransferId {
    pub txid: TxId,
    pub log_index: u32,
}

impl std::fmt::Display for TransferId {
    /// `txid:log_index`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.txid, self.log_index)
    }
}

/// A USDT transfer found on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    #[serde(flatten)]
    pub id: TransferId,
    pub from: TronAddress,
    pub to: TronAddress,
    pub amount: UsdtAmount,
    /// Height of its block.
    pub block_number: u64,
    /// Its block's time, milliseconds since the Unix epoch.
    pub block_time_ms: i64,
}
