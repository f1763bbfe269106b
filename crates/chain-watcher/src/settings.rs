//! Settings of `tronpay-chain-watcher` (see the README's configuration table).

use std::time::Duration;

use serde::Deserialize;
use tronpay_domain::TronAddress;
use tronpay_runtime::Validate;
use tronpay_tron::NodeSettings;

/// Its `Debug` shows whether `TRONGRID_API_KEY` is set, never the key.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct WatcherSettings {
    /// `TRON_NODE_URL`: one or more (comma-separated) java-tron HTTP API base URLs.
    pub tron_node_url: String,
    /// `TRONGRID_API_KEY`, sent as `TRON-PRO-API-KEY`.
    pub trongrid_api_key: Option<String>,
    /// `USDT_TRC20_CONTRACT_ADDRESS`.
    pub usdt_trc20_contract_address: String,
    /// `POLLING_INTERVAL_SECONDS`: the longest wait between polls when idle.
    pub polling_interval_seconds: u64,
    /// `BLOCK_INTERVAL_MS`: the chain's block time; the next poll is timed to
    /// just after the next block is due.
    pub block_interval_ms: u64,
    /// `CONFIRMATIONS`: trust `head − N` as final instead of the solidified block.
    pub confirmations: Option<u64>,
    /// `SCAN_START_BLOCK`: where a first start begins (default: the block
    /// of the oldest pending payment's creation, within
    /// `SCAN_MAX_LOOKBACK_SECONDS`; the current final block when none is
    /// pending).
    pub scan_start_block: Option<u64>,
    /// `SCAN_MAX_LOOKBACK_SECONDS`: how far back before the current final
    /// block a first start may begin to cover pending payments (default one
    /// day, the default payment lifetime); older payments are logged as cut.
    pub scan_max_lookback_seconds: u64,
    /// `NODE_STALL_SECONDS`: a node whose head or final block stays the same
    /// for longer than this (by the watcher's clock) is treated as faulty:
    /// recorded, failed over, and shown as degraded in health.
    pub node_stall_seconds: u64,
    /// `DETECT_UNCONFIRMED`: record transfers in blocks that are not final yet.
    pub detect_unconfirmed: bool,
    /// `FETCH_CONCURRENCY`: blocks fetched at once while catching up.
    pub fetch_concurrency: usize,
    /// `CATCHUP_BATCH`: blocks per catch-up round between polls.
    pub catchup_batch: u64,
    /// `NODE_TIMEOUT_MS`: per request to the node.
    pub node_timeout_ms: u64,
    /// `WATCHER_BIND`: where the health endpoint listens.
    pub watcher_bind: String,
    /// `INSTANCE_ID`: this replica's name in `chain_state.leader` (default host:pid).
    pub instance_id: Option<String>,
}

impl std::fmt::Debug for WatcherSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Taken apart so that a new field does not compile until it is shown
        // here (or deliberately hidden).
        let Self {
            tron_node_url,
            trongrid_api_key,
            usdt_trc20_contract_address,
            polling_interval_seconds,
            block_interval_ms,
            confirmations,
            scan_start_block,
            scan_max_lookback_seconds,
            node_stall_seconds,
            detect_unconfirmed,
            fetch_concurrency,
            catchup_batch,
            node_timeout_ms,
            watcher_bind,
            instance_id,
        } = self;
        let node_urls: Vec<String> = tron_node_url.split(',').map(tronpay_runtime::redact_url).collect();
        f.debug_struct("WatcherSettings")
            .field("tron_node_url", &node_urls.join(","))
            .field("trongrid_api_key", &trongrid_api_key.as_ref().map(|_| "…"))
            .field("usdt_trc20_contract_address", usdt_trc20_contract_address)
            .field("polling_interval_seconds", polling_interval_seconds)
            .field("block_interval_ms", block_interval_ms)
            .field("confirmations", confirmations)
            .field("scan_start_block", scan_start_block)
            .field("scan_max_lookback_seconds", scan_max_lookback_seconds)
            .field("node_stall_seconds", node_stall_seconds)
            .field("detect_unconfirmed", detect_unconfirmed)
            .field("fetch_concurrency", fetch_concurrency)
            .field("catchup_batch", catchup_batch)
            .field("node_timeout_ms", node_timeout_ms)
            .field("watcher_bind", watcher_bind)
            .field("instance_id", instance_id)
            .finish()
    }
}

impl Default for WatcherSettings {
    fn default() -> Self {
        Self {
            tron_node_url: "https://api.trongrid.io".into(),
            trongrid_api_key: None,
            usdt_trc20_contract_address: "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t".into(),
            polling_interval_seconds: 3,
            block_interval_ms: 3_000,
            confirmations: None,
            scan_start_block: None,
            scan_max_lookback_seconds: 24 * 60 * 60,
            node_stall_seconds: 30,
            detect_unconfirmed: true,
            fetch_concurrency: 8,
            catchup_batch: 200,
            node_timeout_ms: 10_000,
            watcher_bind: "127.0.0.1:5001".into(),
            instance_id: None,
        }
    }
}

impl Validate for WatcherSettings {
    /// Checks every value, naming the setting that is wrong.
    fn validate(&self) -> Result<(), String> {
        self.node_settings()?;
        self.usdt()?;
        if self.polling_interval_seconds == 0 {
            return Err("POLLING_INTERVAL_SECONDS must be at least 1".into());
        }
        if self.block_interval_ms < 10 {
            return Err("BLOCK_INTERVAL_MS must be at least 10".into());
        }
        if !(1..=64).contains(&self.fetch_concurrency) {
            return Err("FETCH_CONCURRENCY must be between 1 and 64".into());
        }
        if self.catchup_batch == 0 {
            return Err("CATCHUP_BATCH must be at least 1".into());
        }
        if self.node_timeout_ms < 100 {
            return Err("NODE_TIMEOUT_MS must be at least 100".into());
        }
        if !(1..=30 * 24 * 3600).contains(&self.node_stall_seconds) {
            return Err("NODE_STALL_SECONDS must be between 1 and 2592000 (30 days)".into());
        }
        if self.scan_max_lookback_seconds > 30 * 24 * 3600 {
            return Err("SCAN_MAX_LOOKBACK_SECONDS must be at most 2592000 (30 days)".into());
        }
        self.watcher_bind
            .parse::<std::net::SocketAddr>()
            .map_err(|_| format!("WATCHER_BIND must be an address and port, not {:?}", self.watcher_bind))?;
        Ok(())
    }
}

impl WatcherSettings {
    pub fn usdt(&self) -> Result<TronAddress, String> {
        TronAddress::parse(&self.usdt_trc20_contract_address)
            .map_err(|error| format!("USDT_TRC20_CONTRACT_ADDRESS is not a TRON address: {error}"))
    }

    pub fn node_settings(&self) -> Result<NodeSettings, String> {
        Ok(NodeSettings {
            urls: NodeSettings::parse_urls(&self.tron_node_url)?,
            api_key: self.trongrid_api_key.clone().filter(|key| !key.trim().is_empty()),
            timeout: Duration::from_millis(self.node_timeout_ms),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            stall_after: Duration::from_secs(self.node_stall_seconds),
        })
    }

    pub fn instance(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "watcher".into());
            format!("{host}:{}", std::process::id())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_trongrid_api_key() {
        let settings = WatcherSettings {
            trongrid_api_key: Some("3f6a9c1e-secret-key".into()),
            tron_node_url: "https://node:hunter2@tron.example/,https://api.trongrid.io".into(),
            ..WatcherSettings::default()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("3f6a9c1e"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("trongrid_api_key: Some(\"…\")"), "{shown}");
        assert!(shown.contains("api.trongrid.io"), "{shown}");
        assert!(shown.contains("watcher_bind: \"127.0.0.1:5001\""), "{shown}");
        let node = format!("{:?}", settings.node_settings().unwrap());
        assert!(!node.contains("3f6a9c1e") && !node.contains("hunter2"), "{node}");
    }
}
