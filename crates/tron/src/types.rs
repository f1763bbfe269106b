//! Response shapes of java-tron's HTTP API. Only the fields tronpay reads are
//! declared; everything else is ignored, so a node that adds fields is fine.

use serde::{Deserialize, Serialize};

/// A block as `getnowblock`, `walletsolidity/getnowblock` and `getblockbynum`
/// return it. A missing block is `{}`, which parses with every field absent.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Block {
    #[serde(rename = "blockID", default, skip_serializing_if = "Option::is_none")]
    pub block_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_header: Option<BlockHeader>,
    /// Absent for an empty block (protobuf JSON omits empty lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transactions: Vec<BlockTransaction>,
    /// java-tron's HTTP-200 `{"Error": "…"}` answer (its text, or the JSON
    /// value when it is not a string); absent in a real block.
    #[serde(rename = "Error", alias = "error", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct BlockHeader {
    pub raw_data: BlockRawData,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct BlockRawData {
    /// Height; java-tron omits it for the genesis block (0).
    #[serde(default)]
    pub number: u64,
    /// Milliseconds since the Unix epoch.
    #[serde(default)]
    pub timestamp: i64,
    #[serde(rename = "parentHash", default)]
    pub parent_hash: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct BlockTransaction {
    #[serde(rename = "txID")]
    pub tx_id: String,
}

impl Block {
    /// The node's own error text, when the answer was `{"Error": …}`.
    pub fn error_text(&self) -> Option<String> {
        self.error
            .as_ref()
            .map(|value| value.as_str().map_or_else(|| value.to_string(), str::to_owned))
    }

    /// `None` for `{}` (a block the node does not have).
    pub fn number(&self) -> Option<u64> {
        self.block_header.as_ref().map(|header| header.raw_data.number)
    }

    pub fn timestamp_ms(&self) -> Option<i64> {
        self.block_header.as_ref().map(|header| header.raw_data.timestamp)
    }
}

/// One entry of `gettransactioninfobyblocknum`: a transaction's receipt and
/// event logs.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct TxInfo {
    pub id: String,
    #[serde(rename = "blockNumber", default)]
    pub block_number: u64,
    #[serde(rename = "blockTimeStamp", default)]
    pub block_timestamp: i64,
    /// The contract the transaction called (21-byte hex), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_address: Option<String>,
    #[serde(default)]
    pub receipt: Receipt,
    /// `"FAILED"` for a failed transaction; absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<Log>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Receipt {
    /// `SUCCESS`, `REVERT`, `OUT_OF_ENERGY`, …; absent for plain TRX transfers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// An event log: the emitting contract's 20-byte address (no `41` prefix),
/// 32-byte topics and data, all hex.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Log {
    pub address: String,
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default)]
    pub data: String,
}
