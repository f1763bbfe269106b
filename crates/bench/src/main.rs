//! `tronpay-bench`: drives a running tronpay API over HTTP from its own
//! process and prints requests per second and latency percentiles.
//!
//! ```text
//! tronpay-bench create --url http://127.0.0.1:5000 --seconds 15 --connections 64 --ids-out ids.txt
//! tronpay-bench status --url http://127.0.0.1:5000 --seconds 15 --connections 64 --ids ids.txt
//! tronpay-bench v1-create --url http://127.0.0.1:5000 --key tpk_… --seconds 15
//! tronpay-bench v1-list --url http://127.0.0.1:5000 --key tpk_… --seconds 15
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};

mod chain;
mod streams;
mod webhooks;

/// A service process the bench started, stopped when dropped: SIGTERM,
/// up to 5 s to finish, then kill.
struct Service(std::process::Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The release binaries a scenario runs and the servers they use (the
/// chain and webhooks scenarios).
#[derive(clap::Args, Clone)]
struct Setup {
    /// Where the release binaries are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// An empty database with the tronpay tables.
    #[arg(long)]
    database_url: String,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    rabbitmq_url: String,
}

impl Setup {
    /// Starts `binary` from `--bin-dir` with `args`, on the database and the
    /// broker, logging warnings only (its output discarded), with `env` set
    /// as well.
    fn start(&self, binary: &str, args: &[String], env: &[(&str, String)]) -> anyhow::Result<Service> {
        let path = self.bin_dir.join(binary);
        let mut command = std::process::Command::new(&path);
        command
            .args(args)
            .env("DATABASE_URL", &self.database_url)
            .env("RABBITMQ_URL", &self.rabbitmq_url)
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        Ok(Service(child))
    }

    /// A connection to the database, for writing and checking rows.
    async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (db, connection) = tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(db)
    }
}

#[derive(Parser)]
#[command(name = "tronpay-bench", about = "HTTP load generator for the tronpay API")]
struct Args {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(clap::Args, Clone)]
struct Load {
    /// Base URL of the API.
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    url: String,
    /// How long to measure.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Requests in flight at once (one keep-alive connection each).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Load-generator threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Subcommand)]
enum Scenario {
    /// POST /create_payment with unique order ids.
    Create {
        #[command(flatten)]
        load: Load,
        /// Write the created payment ids here (for the status scenario).
        #[arg(long)]
        ids_out: Option<PathBuf>,
    },
    /// GET /payment_status/{id} over ids created before.
    Status {
        #[command(flatten)]
        load: Load,
        /// Payment ids, one per line.
        #[arg(long)]
        ids: PathBuf,
    },
    /// GET /pay/{id} (the checkout page) over ids created before.
    Checkout {
        #[command(flatten)]
        load: Load,
        /// Payment ids, one per line.
        #[arg(long)]
        ids: PathBuf,
    },
    /// Open status streams (GET /v1/payments/{id}/stream) at once, then
    /// change payments in the database: the latency from each commit to its
    /// event.
    Streams(streams::StreamArgs),
    /// POST /v1/payments with an API key and a fresh Idempotency-Key each.
    V1Create {
        #[command(flatten)]
        load: Load,
        /// An API key with payments:write.
        #[arg(long, env = "TRONPAY_BENCH_KEY")]
        key: String,
        /// Send no Idempotency-Key (to see what the idempotency record costs).
        #[arg(long)]
        without_idempotency_key: bool,
        /// Send no address: the API assigns one (ADDRESS_MODE xpub or
        /// unique_amount).
        #[arg(long)]
        without_address: bool,
        /// A different whole amount per request, counting up from the value
        /// given (1 when none; wrapping within 1 to 999,999 USDT), as a
        /// shop's orders have; otherwise always 12.34. Runs that should not
        /// meet each other's amounts (held for a day in mode unique_amount)
        /// start far apart.
        #[arg(long, value_name = "FIRST", num_args = 0..=1, default_missing_value = "1")]
        vary_amount: Option<u64>,
    },
    /// GET /v1/payments?limit=50 (the newest page) with an API key.
    V1List {
        #[command(flatten)]
        load: Load,
        /// An API key with payments:read.
        #[arg(long, env = "TRONPAY_BENCH_KEY")]
        key: String,
    },
    /// The chain watcher: catch-up speed and final-to-completed latency.
    Chain(chain::ChainArgs),
    /// The webhook dispatcher: deliveries/s, commit-to-receipt latency, and
    /// the wait of a healthy receiver behind hanging ones.
    Webhooks(webhooks::WebhookArgs),
}

/// What one worker measured.
#[derive(Default)]
struct Sample {
    latencies_us: Vec<u32>,
    errors: u64,
    ids: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // reqwest is built without a TLS provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = |threads: usize| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let load = match &args.scenario {
        Scenario::Create { load, .. }
        | Scenario::Status { load, .. }
        | Scenario::Checkout { load, .. }
        | Scenario::V1Create { load, .. }
        | Scenario::V1List { load, .. } => load.clone(),
        Scenario::Chain(chain) => return runtime(1)?.block_on(chain::run(chain.clone())),
        Scenario::Streams(streams) => return runtime(1)?.block_on(streams::run(streams.clone())),
        Scenario::Webhooks(webhooks) => return runtime(1)?.block_on(webhooks::run(webhooks.clone())),
    };
    runtime(load.threads.max(1))?.block_on(run(args.scenario, load))
}

async fn run(scenario: Scenario, load: Load) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(load.connections)
        .timeout(Duration::from_secs(30))
        .build()?;
    let ids: Arc<Vec<String>> = Arc::new(match &scenario {
        Scenario::Status { ids, .. } | Scenario::Checkout { ids, .. } => std::fs::read_to_string(ids)
            .with_context(|| format!("reading {}", ids.display()))?
            .lines()
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    });
    // (name, expected status, API key).
    let (name, expected, key): (&str, u16, Option<String>) = match &scenario {
        Scenario::Create { .. } => ("POST /create_payment", 201, None),
        Scenario::Status { .. } => ("GET /payment_status/{id}", 200, None),
        Scenario::Checkout { .. } => ("GET /pay/{id}", 200, None),
        Scenario::V1Create {
            key,
            without_idempotency_key: false,
            without_address: false,
            ..
        } => ("POST /v1/payments (key, Idempotency-Key)", 201, Some(key.clone())),
        Scenario::V1Create {
            key,
            without_address: true,
            ..
        } => (
            "POST /v1/payments (key, Idempotency-Key, no address)",
            201,
            Some(key.clone()),
        ),
        Scenario::V1Create { key, .. } => ("POST /v1/payments (key, no Idempotency-Key)", 201, Some(key.clone())),
        Scenario::V1List { key, .. } => ("GET /v1/payments?limit=50 (key)", 200, Some(key.clone())),
        Scenario::Chain(_) | Scenario::Webhooks(_) | Scenario::Streams(_) => {
            anyhow::bail!("not an HTTP load scenario")
        }
    };
    let creating = matches!(scenario, Scenario::Create { .. });
    let v1_creating = matches!(scenario, Scenario::V1Create { .. });
    let (without_address, vary_amount) = match &scenario {
        Scenario::V1Create {
            without_address,
            vary_amount,
            ..
        } => (*without_address, *vary_amount),
        _ => (false, None),
    };
    let idempotency_keys = matches!(
        scenario,
        Scenario::V1Create {
            without_idempotency_key: false,
            ..
        }
    );
    let listing = matches!(scenario, Scenario::V1List { .. });
    let checkout = matches!(scenario, Scenario::Checkout { .. });
    if matches!(scenario, Scenario::Status { .. } | Scenario::Checkout { .. }) && ids.is_empty() {
        anyhow::bail!("no payment ids to read");
    }
    let run_id = std::process::id();
    let counter = Arc::new(AtomicU64::new(0));

    // Warm up connections and caches before measuring.
    let warmup = Duration::from_secs(2);
    let measure = Duration::from_secs(load.seconds);
    let started = Instant::now();
    let measure_from = started + warmup;
    let deadline = measure_from + measure;

    let workers: Vec<_> = (0..load.connections)
        .map(|worker| {
            let client = client.clone();
            let url = load.url.clone();
            let ids = Arc::clone(&ids);
            let counter = Arc::clone(&counter);
            let authorization = key.as_ref().map(|key| format!("Bearer {key}"));
            tokio::spawn(async move {
                let mut sample = Sample::default();
                let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (worker as u64 + 1);
                loop {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    let request = if creating {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        client.post(format!("{url}/create_payment")).body(format!(
                            r#"{{"wallet_address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t","expected_amount_usdt":12.34,"callback_url":"https://93.184.216.34/hook","order_id":"bench-{run_id}-{n}"}}"#
                        ))
                    } else if v1_creating {
                        // The same work as the original create (a webhook
                        // URL, an amount), plus the key and the idempotency
                        // record.
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let address = if without_address {
                            ""
                        } else {
                            r#""address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t","#
                        };
                        let amount = match vary_amount {
                            Some(first) => (1 + (first.saturating_sub(1) + n) % 999_999).to_string(),
                            None => "12.34".to_owned(),
                        };
                        let request = client
                            .post(format!("{url}/v1/payments"))
                            .header("content-type", "application/json")
                            .body(format!(
                                r#"{{{address}"amount":"{amount}","notify_url":"https://93.184.216.34/hook","order_id":"bench-v1-{run_id}-{n}"}}"#
                            ));
                        if idempotency_keys {
                            request.header("idempotency-key", format!("bench-{run_id}-{n}"))
                        } else {
                            request
                        }
                    } else if listing {
                        client.get(format!("{url}/v1/payments?limit=50"))
                    } else {
                        // xorshift: a cheap uniform pick among the ids.
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let id = &ids[(seed % ids.len() as u64) as usize];
                        if checkout {
                            client.get(format!("{url}/pay/{id}"))
                        } else {
                            client.get(format!("{url}/payment_status/{id}"))
                        }
                    };
                    let request = match &authorization {
                        Some(value) => request.header("authorization", value),
                        None => request,
                    };
                    let outcome = request.send().await;
                    let ok = match outcome {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let body = response.bytes().await.unwrap_or_default();
                            if status == expected && creating {
                                let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                                if let Some(id) = value["payment_id"].as_str() {
                                    sample.ids.push(id.to_owned());
                                }
                            }
                            status == expected
                        }
                        Err(_) => false,
                    };
                    // Only requests sent and answered inside the window count.
                    if now >= measure_from && Instant::now() <= deadline {
                        if ok {
                            let micros = now.elapsed().as_micros();
                            sample.latencies_us.push(u32::try_from(micros).unwrap_or(u32::MAX));
                        } else {
                            sample.errors += 1;
                        }
                    }
                }
                sample
            })
        })
        .collect();

    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut created_ids = Vec::new();
    for worker in workers {
        let sample = worker.await?;
        latencies.extend(sample.latencies_us);
        errors += sample.errors;
        created_ids.extend(sample.ids);
    }
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        f64::from(latencies[index]) / 1000.0
    };
    println!(
        "{name}: {:.0} requests/s over {} s with {} connections; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} ok, {} errors",
        latencies.len() as f64 / measure.as_secs_f64(),
        measure.as_secs(),
        load.connections,
        percentile(0.50),
        percentile(0.99),
        percentile(1.0),
        latencies.len(),
        errors,
    );
    if let Scenario::Create {
        ids_out: Some(path), ..
    } = scenario
    {
        std::fs::write(&path, created_ids.join("\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
