//! A TRON node simulator for trials, the test suite and benchmarks.
//!
//! It serves java-tron's HTTP endpoints (`/wallet/getnowblock`,
//! `/walletsolidity/getnowblock`, `/wallet/getblockbynum`,
//! `/wallet/gettransactioninfobyblocknum` and their solidity twins) and
//! TronGrid's `GET /v1/accounts/{address}/transactions/trc20` with the same
//! JSON shapes as the real services, over an in-memory chain that a control
//! API (`/sandbox/…`) fills with transfers, bulk traffic, reorgs and faults.
//! See `docs/SANDBOX.md`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use tronpay_sandbox::{Sandbox, SandboxConfig};
//! let sandbox = Sandbox::start(SandboxConfig::ephemeral()).await?;
//! let to = tronpay_domain::TronAddress::parse("TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt")?;
//! let sent = sandbox.transfer(to, "12.34".parse()?)?;
//! sandbox.mine(1)?;
//! println!("{} is in block {} at {}", sent.txid, sent.block, sandbox.url());
//! sandbox.stop().await;
//! # Ok(())
//! # }
//! ```

mod chain;
mod faults;
mod http;
mod render;
mod state;
mod trongrid;
pub mod webhooks;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tokio::task::JoinHandle;
use tronpay_domain::{TronAddress, TxId, UsdtAmount};

pub use faults::{FaultMode, FaultPlan};
pub use render::TRANSFER_TOPIC;
pub use state::{ControlError, GenerateRequest, Generated, Heights, Output, Reorged, Submitted, TransferRequest};

use crate::chain::{Params, named_address};
use crate::state::{Shared, now_ms};

/// Mainnet USDT (`TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t`) in its 20-byte form.
const MAINNET_USDT: [u8; 20] = [
    0xa6, 0x14, 0xf8, 0x03, 0xb6, 0xfd, 0x78, 0x09, 0x86, 0xa4, 0x2c, 0x78, 0xec, 0x9c, 0x7f, 0x77, 0xe6, 0xde, 0xd1,
    0x3c,
];

/// The payer of control transfers that name no `from` (the same in every
/// sandbox): `TYTCYGMPo1SedUn79QXRCNRm9Ct3EB5TS5`.
pub fn default_payer() -> TronAddress {
    TronAddress::from_evm_bytes(named_address("tronpay-sandbox payer"))
}

/// The router contract of multi-output transfers (the same in every
/// sandbox): `TBfd7ttxHeidj6u2jyhhMxuWWxJ687AhzT`.
pub fn router_address() -> TronAddress {
    TronAddress::from_evm_bytes(named_address("tronpay-sandbox router"))
}

/// How to run a sandbox. Its `Debug` shows whether a webhook secret is set,
/// never the secret.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Address to listen on; `127.0.0.1:0` picks a free port.
    pub bind: String,
    /// A block every `block_ms` milliseconds; 0 = only on `mine`/`blocks`.
    pub block_ms: u64,
    /// Blocks between the head and the last solid (final) block.
    pub solid_lag: u64,
    /// Seed of every generated id and amount; random when absent.
    pub seed: Option<u64>,
    /// The USDT TRC-20 contract whose Transfer logs are emitted.
    pub usdt_contract: TronAddress,
    /// Height of the first block.
    pub start_height: u64,
    /// HTTP worker threads.
    pub workers: usize,
    /// The `whsec_…` secret the built-in webhook receiver checks signatures
    /// with (`/sandbox/webhooks`).
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("bind", &self.bind)
            .field("block_ms", &self.block_ms)
            .field("solid_lag", &self.solid_lag)
            .field("seed", &self.seed)
            .field("usdt_contract", &self.usdt_contract)
            .field("start_height", &self.start_height)
            .field("workers", &self.workers)
            .field("webhook_secret", &self.webhook_secret.as_ref().map(|_| "whsec_…"))
            .finish()
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8090".into(),
            block_ms: 3000,
            solid_lag: 19,
            seed: None,
            usdt_contract: TronAddress::from_evm_bytes(MAINNET_USDT),
            start_height: 1_000_000,
            workers: 2,
            webhook_secret: None,
        }
    }
}

impl SandboxConfig {
    /// For tests: a free port on localhost, blocks only on demand, one worker.
    pub fn ephemeral() -> Self {
        Self {
            bind: "127.0.0.1:0".into(),
            block_ms: 0,
            workers: 1,
            ..Self::default()
        }
    }
}

/// Starts sandboxes.
pub struct Sandbox;

/// The sandbox as its binary runs it: starts `config`, logs
/// `tronpay-sandbox ready` with its URL and seed, serves until `shutdown`
/// resolves, then stops. Errors: the address cannot be bound.
pub async fn run(config: SandboxConfig, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let sandbox = Sandbox::start(config).await?;
    tracing::info!(url = %sandbox.url(), seed = sandbox.seed(), "tronpay-sandbox ready");
    shutdown.await;
    tracing::info!("shutdown signal received");
    sandbox.stop().await;
    tracing::info!("tronpay-sandbox stopped");
    Ok(())
}

impl Sandbox {
    /// Binds `config.bind` and starts serving (on the current tokio runtime)
    /// and, when `block_ms` > 0, sealing blocks on a timer.
    pub async fn start(config: SandboxConfig) -> anyhow::Result<RunningSandbox> {
        let seed = config.seed.unwrap_or_else(|| fastrand::u64(..));
        let params = Arc::new(Params::new(
            seed,
            config.usdt_contract,
            config.start_height,
            config.solid_lag,
            config.block_ms,
        ));
        let shared = web::Data::new(Shared::new(params, now_ms()));
        let secret = config
            .webhook_secret
            .as_deref()
            .map(tronpay_domain::signing::WebhookSecret::parse)
            .transpose()
            .map_err(|error| anyhow::anyhow!("webhook secret: {error}"))?;
        let inbox = web::Data::new(webhooks::Inbox::new(secret));
        let listener = TcpListener::bind(&config.bind).with_context(|| format!("cannot listen on {}", config.bind))?;
        let addr = listener.local_addr()?;
        let data = shared.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(inbox.clone())
                .app_data(web::PayloadConfig::new(32 << 20))
                .configure(webhooks::configure)
                .configure(http::configure)
                .default_service(web::to(http::not_found))
        })
        .workers(config.workers.max(1))
        // A `stall` fault holds requests for a long time; don't wait for them.
        .shutdown_timeout(2)
        // Signals are the caller's business (the binary stops on SIGTERM).
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        let server = tokio::spawn(server);
        let ticker = (config.block_ms > 0).then(|| tokio::spawn(seal_on_timer(shared.clone(), config.block_ms)));
        tracing::info!(%addr, seed, block_ms = config.block_ms, solid_lag = config.solid_lag, "sandbox node listening");
        Ok(RunningSandbox {
            shared,
            addr,
            handle,
            server: Some(server),
            ticker,
        })
    }
}

async fn seal_on_timer(shared: web::Data<Shared>, block_ms: u64) {
    let mut interval = tokio::time::interval(Duration::from_millis(block_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the first block comes one period later.
    interval.tick().await;
    loop {
        interval.tick().await;
        if let Err(error) = shared.mine(1) {
            tracing::warn!(%error, "cannot seal a block");
        }
    }
}

/// A sandbox serving on [`RunningSandbox::addr`]. Dropping it stops it too,
/// without waiting.
pub struct RunningSandbox {
    shared: web::Data<Shared>,
    addr: SocketAddr,
    handle: ServerHandle,
    server: Option<JoinHandle<std::io::Result<()>>>,
    ticker: Option<JoinHandle<()>>,
}

impl RunningSandbox {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, the value for `TRON_NODE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The seed in use (random unless configured).
    pub fn seed(&self) -> u64 {
        self.shared.params.seed
    }

    pub fn usdt_contract(&self) -> TronAddress {
        self.shared.params.usdt
    }

    pub fn heights(&self) -> Heights {
        self.shared.heights()
    }

    /// Queues a plain USDT transfer from [`default_payer`] into the next block.
    pub fn transfer(&self, to: TronAddress, amount: UsdtAmount) -> Result<Submitted, ControlError> {
        self.shared.submit(&TransferRequest::new(to, amount))
    }

    /// Queues any transfer (router, failed, own payer) into the next block.
    pub fn submit(&self, request: &TransferRequest) -> Result<Submitted, ControlError> {
        self.shared.submit(request)
    }

    /// Seals `count` blocks now; queued transfers go into the first.
    pub fn mine(&self, count: u64) -> Result<Heights, ControlError> {
        self.shared.mine(count)
    }

    /// Seals blocks of random USDT traffic (see `POST /sandbox/blocks`).
    pub fn generate(&self, request: &GenerateRequest) -> Result<Generated, ControlError> {
        self.shared.generate(request)
    }

    /// Replaces the last `depth` blocks, leaving out `drop`.
    pub fn reorg(&self, depth: u64, drop: &[TxId]) -> Result<Reorged, ControlError> {
        self.shared.reorg(depth, drop)
    }

    /// Makes upcoming node requests fail (see `POST /sandbox/faults`).
    pub fn set_faults(&self, plan: FaultPlan) -> Result<(), ControlError> {
        self.shared.set_faults(plan)
    }

    /// Freezes the node where it is, or lets it catch up (see
    /// `POST /sandbox/freeze`); returns the heights it now shows.
    pub fn freeze(&self, frozen: bool) -> Heights {
        self.shared.freeze(frozen)
    }

    /// What `GET /sandbox/status` answers.
    pub fn status(&self) -> serde_json::Value {
        self.shared.status()
    }

    /// Stops sealing and serving, letting in-flight requests finish briefly.
    pub async fn stop(mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        self.handle.stop(true).await;
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if self.server.is_some() {
            // The stop command is sent at once; nobody waits for it here.
            drop(self.handle.stop(false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_never_shows_the_webhook_secret() {
        let config = SandboxConfig {
            webhook_secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            ..SandboxConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("MfKQ9r8G"), "{shown}");
        assert!(shown.contains("webhook_secret: Some(\"whsec_…\")"), "{shown}");
    }
}
