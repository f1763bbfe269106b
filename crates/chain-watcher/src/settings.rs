//! Settings of `tronpay-chain-watcher` (see the README's configuration table).

use std::time::Duration;

use serde::Deserialize;
use tronpay_domain::TronAddress;
use tronpay_tron::NodeSettings;

#[derive(Debug, Clone, Deserialize)]
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
    /// `SCAN_START_BLOCK`: where a first start begins (default: the current
    /// final block).
    pub scan_start_block: Option<u64>,
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
            detect_unconfirmed: true,
            fetch_concurrency: 8,
            catchup_batch: 200,
            node_timeout_ms: 10_000,
            watcher_bind: "127.0.0.1:5001".into(),
            instance_id: None,
        }
    }
}

impl WatcherSettings {
    pub fn validate(&self) -> Result<(), String> {
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
        self.watcher_bind
            .parse::<std::net::SocketAddr>()
            .map_err(|_| format!("WATCHER_BIND must be an address and port, not {:?}", self.watcher_bind))?;
        Ok(())
    }

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
        })
    }

    pub fn instance(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "watcher".into());
            format!("{host}:{}", std::process::id())
        })
    }
}
