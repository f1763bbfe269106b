//! `tronpay-bench chain`: the chain watcher catching up on busy blocks, and
//! the latency from a block becoming final to its payment completing.
//!
//! It drives real processes: the sandbox node, `tronpay-chain-watcher` and
//! `tronpay-api` (release binaries from `--bin-dir`), against PostgreSQL and
//! RabbitMQ.

use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};
use tronpay_domain::TronAddress;

use crate::{Service, Setup};

#[derive(clap::Args, Clone)]
pub struct ChainArgs {
    #[command(flatten)]
    setup: Setup,
    /// Pending payments (each on its own address) the watcher checks every
    /// transfer against.
    #[arg(long, default_value_t = 100_000)]
    pub watched: usize,
    /// Blocks to catch up on.
    #[arg(long, default_value_t = 3_000)]
    pub blocks: u64,
    #[arg(long, default_value_t = 200)]
    pub transfers_per_block: u32,
    /// Of those, transfers that pay a watched payment exactly …
    #[arg(long, default_value_t = 2)]
    pub hits_per_block: u32,
    /// … in every N-th block (the others carry random traffic only).
    #[arg(long, default_value_t = 1)]
    pub hit_every: u64,
    /// Skip the latency phase.
    #[arg(long)]
    pub catch_up_only: bool,
    /// Blocks produced at `--latency-block-ms` for the latency figure.
    #[arg(long, default_value_t = 60)]
    pub latency_blocks: u64,
    #[arg(long, default_value_t = 1_000)]
    pub latency_block_ms: u64,
    #[arg(long, default_value_t = 19)]
    pub solid_lag: u64,
    /// Base port for the processes (sandbox, watcher health, API) of the
    /// catch-up phase; the latency phase uses the next ten.
    #[arg(long, default_value_t = 18_090)]
    pub port: u16,
}

struct Bench {
    args: ChainArgs,
    http: reqwest::Client,
    db: tokio_postgres::Client,
    /// The current phase's base port: each phase has its own, so a process
    /// of the last phase that is slow to exit never answers for this one.
    port: AtomicU16,
}

/// How far the latency phase's ports are from the catch-up phase's.
const LATENCY_PORT_OFFSET: u16 = 10;
/// The chains of the two phases (told apart by `/sandbox/status`).
const CATCH_UP_SEED: u64 = 7;
const LATENCY_SEED: u64 = 8;

pub async fn run(args: ChainArgs) -> anyhow::Result<()> {
    let bench = Bench {
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
        db: args.setup.connect().await?,
        port: AtomicU16::new(args.port),
        args,
    };
    bench.catch_up().await?;
    if !bench.args.catch_up_only {
        bench.latency().await?;
    }
    Ok(())
}

impl Bench {
    fn sandbox_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port.load(Ordering::Relaxed))
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.sandbox_url()))
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let value: Value = response.json().await?;
        if !status.is_success() {
            bail!("{path}: {status} {value}");
        }
        Ok(value)
    }

    /// Waits until the sandbox of chain `seed` answers (not another one).
    async fn wait_for_sandbox(&self, seed: u64) -> anyhow::Result<()> {
        for _ in 0..100 {
            if let Ok(status) = self.sandbox_status().await
                && status["seed"] == seed
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the sandbox of chain {seed} did not start on {}", self.sandbox_url())
    }

    /// Inserts `count` pending payments on fresh addresses; returns them
    /// with their expected amounts (base units).
    async fn watch(&self, count: usize, tag: &str) -> anyhow::Result<Vec<(TronAddress, u64)>> {
        let payments: Vec<(TronAddress, u64)> = (0..count)
            .map(|index| {
                let mut bytes = [0u8; 20];
                fastrand::fill(&mut bytes);
                (
                    TronAddress::from_evm_bytes(bytes),
                    10_000_000 + (index as u64 % 100_000) * 10_000,
                )
            })
            .collect();
        for chunk in payments.chunks(10_000) {
            let addresses: Vec<String> = chunk.iter().map(|(address, _)| address.to_base58()).collect();
            let amounts: Vec<String> = chunk
                .iter()
                .map(|(_, units)| format!("{}.{:06}", units / 1_000_000, units % 1_000_000))
                .collect();
            self.db
                .execute(
                    "INSERT INTO payments (id, wallet_address, expected_amount_usdt, callback_url, order_id, status, created_at, expires_at, last_checked_timestamp) \
                     SELECT gen_random_uuid()::text, a, m::numeric, 'https://93.184.216.34/hook', $3 || '-' || a, 'pending', \
                            (now() AT TIME ZONE 'utc') - interval '1 minute', (now() AT TIME ZONE 'utc') + interval '1 day', 0 \
                     FROM unnest($1::text[], $2::text[]) AS t(a, m)",
                    &[&addresses, &amounts, &tag],
                )
                .await?;
        }
        Ok(payments)
    }

    fn amount_text(units: u64) -> String {
        format!("{}.{:06}", units / 1_000_000, units % 1_000_000)
    }

    /// The sandbox's control-API status (its requests are not node calls).
    async fn sandbox_status(&self) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}/sandbox/status", self.sandbox_url()))
            .send()
            .await?
            .json()
            .await?)
    }

    async fn node_requests(&self) -> anyhow::Result<u64> {
        let status = self.sandbox_status().await?;
        Ok(status["requests"]
            .as_object()
            .map(|routes| {
                routes
                    .iter()
                    .filter(|(route, _)| route.starts_with("/wallet"))
                    .map(|(_, count)| count.as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0))
    }

    /// The sandbox's head height (from its control API, not counted as a node call).
    async fn head(&self) -> anyhow::Result<u64> {
        Ok(self.sandbox_status().await?["head"].as_u64().unwrap_or(0))
    }

    async fn cursor(&self) -> anyhow::Result<i64> {
        Ok(self
            .db
            .query_opt("SELECT cursor_block FROM chain_state", &[])
            .await?
            .map_or(0, |row| row.get(0)))
    }

    async fn completed(&self) -> anyhow::Result<i64> {
        Ok(self
            .db
            .query_one("SELECT count(*) FROM payments WHERE status = 'completed'", &[])
            .await?
            .get(0))
    }

    /// Exchange and queue names of one phase, unique to this run.
    fn bus(&self, phase: &str) -> tronpay_bus::BusSettings {
        let name = format!("tronpay-bench.{phase}.{}", std::process::id());
        tronpay_bus::BusSettings {
            rabbitmq_url: self.args.setup.rabbitmq_url.clone(),
            bus_exchange: name.clone(),
            bus_queue_prefix: name,
            ..tronpay_bus::BusSettings::default()
        }
    }

    /// Deletes a phase's exchanges and queues.
    async fn remove_bus(&self, bus: &tronpay_bus::BusSettings) -> anyhow::Result<()> {
        let connection = lapin::Connection::connect(&bus.rabbitmq_url, lapin::ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        for queue in bus.all_queues() {
            for name in [queue.name.clone(), queue.dead_letter()] {
                channel.queue_delete(name.as_str().into(), Default::default()).await?;
            }
        }
        for exchange in [bus.bus_exchange.clone(), bus.dead_letter_exchange()] {
            channel
                .exchange_delete(exchange.as_str().into(), Default::default())
                .await?;
        }
        connection.close(200, "bench done".into()).await?;
        Ok(())
    }

    fn services(
        &self,
        block_ms: u64,
        start: Option<u64>,
        bus: &tronpay_bus::BusSettings,
    ) -> anyhow::Result<(Service, Service)> {
        let port = self.port.load(Ordering::Relaxed);
        let common = |extra: Vec<(&'static str, String)>| {
            let mut env = vec![
                ("BUS_EXCHANGE", bus.bus_exchange.clone()),
                ("BUS_QUEUE_PREFIX", bus.bus_queue_prefix.clone()),
            ];
            env.extend(extra);
            env
        };
        let mut watcher_env = common(vec![
            ("TRON_NODE_URL", self.sandbox_url()),
            ("WATCHER_BIND", format!("127.0.0.1:{}", port + 1)),
            ("BLOCK_INTERVAL_MS", block_ms.to_string()),
            ("DETECT_UNCONFIRMED", "false".into()),
            // The catch-up chain is made in advance and does not move.
            ("NODE_STALL_SECONDS", "3600".into()),
        ]);
        if let Some(start) = start {
            watcher_env.push(("SCAN_START_BLOCK", start.to_string()));
        }
        let watcher = self.args.setup.start("tronpay-chain-watcher", &[], &watcher_env)?;
        let api = self.args.setup.start(
            "tronpay-api",
            &[],
            &common(vec![("BIND", format!("127.0.0.1:{}", port + 2))]),
        )?;
        Ok((watcher, api))
    }

    /// The sandbox node on the bench's port: a block every `block_ms` (0:
    /// on demand), chain `seed`.
    fn sandbox(&self, block_ms: u64, seed: u64) -> anyhow::Result<Service> {
        let args = &self.args;
        args.setup.start(
            "tronpay-sandbox",
            &[
                "--bind".into(),
                format!("127.0.0.1:{}", self.port.load(Ordering::Relaxed)),
                "--block-ms".into(),
                block_ms.to_string(),
                "--solid-lag".into(),
                args.solid_lag.to_string(),
                "--seed".into(),
                seed.to_string(),
            ],
            &[],
        )
    }

    /// Catch-up: blocks/s over a backlog of busy blocks, and node calls per block.
    async fn catch_up(&self) -> anyhow::Result<()> {
        let args = &self.args;
        let _sandbox = self.sandbox(0, CATCH_UP_SEED)?;
        self.wait_for_sandbox(CATCH_UP_SEED).await?;
        let prepared = Instant::now();
        let watched = self.watch(args.watched, "catchup").await?;
        let mut hits = watched.iter().cycle();
        let first = self.post("/sandbox/mine", json!({"count": 1})).await?["head"]
            .as_u64()
            .unwrap_or(0)
            + 1;
        let mut paid = 0u64;
        for block in 0..args.blocks {
            let hits_here = if block % args.hit_every.max(1) == 0 {
                args.hits_per_block
            } else {
                0
            };
            for _ in 0..hits_here {
                let Some((address, units)) = hits.next() else { break };
                self.post(
                    "/sandbox/transfer",
                    json!({"to": address.to_base58(), "amount": Self::amount_text(*units)}),
                )
                .await?;
                paid += 1;
            }
            let random = args.transfers_per_block.saturating_sub(hits_here);
            self.post("/sandbox/blocks", json!({"count": 1, "transfers_per_block": random}))
                .await?;
        }
        let heights = self.post("/sandbox/mine", json!({"count": args.solid_lag})).await?;
        let last = heights["solid"].as_u64().unwrap_or(0);
        println!(
            "catch-up setup: {} watched payments, {} blocks ({}..={last}) of {} USDT transfers, {} paying a watched payment, in {:.1} s",
            args.watched,
            last + 1 - first,
            first,
            args.transfers_per_block,
            paid,
            prepared.elapsed().as_secs_f64()
        );

        let calls_before = self.node_requests().await?;
        let started = Instant::now();
        let bus = self.bus("catchup");
        let services = self.services(3_000, Some(first), &bus)?;
        let target = i64::try_from(last)?;
        while self.cursor().await? < target {
            if started.elapsed() > Duration::from_secs(1_800) {
                bail!("the watcher did not catch up within 30 minutes");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let caught_up = started.elapsed();
        let calls = self.node_requests().await? - calls_before;
        let blocks = last + 1 - first;
        println!(
            "catch-up: {blocks} blocks in {:.2} s = {:.0} blocks/s ({:.0} USDT transfers/s checked against {} watched addresses); {:.2} node calls per block",
            caught_up.as_secs_f64(),
            blocks as f64 / caught_up.as_secs_f64(),
            (blocks * u64::from(args.transfers_per_block)) as f64 / caught_up.as_secs_f64(),
            args.watched,
            calls as f64 / blocks as f64,
        );
        let expected = i64::try_from(paid)?;
        while self.completed().await? < expected {
            if started.elapsed() > Duration::from_secs(1_800) {
                bail!("payments did not complete within 30 minutes");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "catch-up: all {paid} paid payments completed {:.2} s after the watcher started",
            started.elapsed().as_secs_f64()
        );
        drop(services);
        self.remove_bus(&bus).await
    }

    /// Steady state: blocks every `latency_block_ms`, one paying transfer
    /// each; latency from the block becoming final (the sandbox sealing the
    /// block `solid_lag` later) to the payment's `completed_at`.
    async fn latency(&self) -> anyhow::Result<()> {
        let args = &self.args;
        self.db
            .batch_execute("TRUNCATE payment_logs, transfers, webhook_attempts, webhook_deliveries, outbox, processed_messages, chain_state; DELETE FROM payments;")
            .await?;
        self.port
            .store(args.port.saturating_add(LATENCY_PORT_OFFSET), Ordering::Relaxed);
        let _sandbox = self.sandbox(args.latency_block_ms, LATENCY_SEED)?;
        self.wait_for_sandbox(LATENCY_SEED).await?;
        // A fresh chain has no final block to advance until it is `solid_lag`
        // blocks long; steady state starts after that.
        let start = self.head().await?;
        while self.head().await? < start + args.solid_lag + 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let watched = self.watch(args.latency_blocks as usize, "latency").await?;
        let bus = self.bus("latency");
        let services = self.services(args.latency_block_ms, None, &bus)?;
        while self.cursor().await? == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let calls_before = self.node_requests().await?;
        let head_before = self.head().await?;
        // One paying transfer per block, queued just after each block seals.
        let mut paid_in = Vec::new();
        for (address, units) in &watched {
            let submitted = self
                .post(
                    "/sandbox/transfer",
                    json!({"to": address.to_base58(), "amount": Self::amount_text(*units)}),
                )
                .await?;
            paid_in.push((address.to_base58(), submitted["block"].as_u64().unwrap_or(0)));
            let block = submitted["block"].as_u64().unwrap_or(0);
            while self.head().await? < block {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let deadline = Instant::now()
            + Duration::from_millis(args.latency_block_ms * (args.solid_lag + 10))
            + Duration::from_secs(30);
        while self.completed().await? < i64::try_from(watched.len())? {
            if Instant::now() > deadline {
                bail!("not every payment completed");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let head_after = self.head().await?;
        let calls = self.node_requests().await? - calls_before;

        let mut latencies = Vec::new();
        for (address, block) in &paid_in {
            let finalised_by = self
                .post("/wallet/getblockbynum", json!({"num": block + args.solid_lag}))
                .await?;
            let final_ms = finalised_by["block_header"]["raw_data"]["timestamp"]
                .as_i64()
                .unwrap_or(0);
            let row = self
                .db
                .query_one(
                    "SELECT (extract(epoch FROM completed_at) * 1000)::bigint FROM payments WHERE wallet_address = $1",
                    &[address],
                )
                .await?;
            let completed_ms: i64 = row.get(0);
            latencies.push(completed_ms - final_ms);
        }
        latencies.sort_unstable();
        let pick = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "latency ({} blocks at {} ms, solid lag {}): block final -> payment completed p50 {} ms, p99 {} ms, max {} ms; {:.2} node calls per block",
            latencies.len(),
            args.latency_block_ms,
            args.solid_lag,
            pick(0.5),
            pick(0.99),
            latencies.last().copied().unwrap_or(0),
            calls as f64 / (head_after.saturating_sub(head_before).max(1)) as f64,
        );
        drop(services);
        self.remove_bus(&bus).await
    }
}
