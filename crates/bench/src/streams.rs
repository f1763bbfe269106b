//! `tronpay-bench streams`: how many checkout status streams one API process
//! holds at once, and how long a change takes from its commit in PostgreSQL
//! to the event on a stream.
//!
//! It opens `--streams` Server-Sent Events streams (`GET
//! /v1/payments/{id}/stream`, one per payment of `--ids`) on the API at
//! `--url`, waits until each has sent its first event, reads the API's
//! resident memory (`--api-pid`), then cancels `--changes` of those payments
//! straight in the database (as a replica applying them would), a batch every
//! 100 ms, and measures each commit-to-event latency on the streams.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

#[derive(clap::Args, Clone)]
pub struct StreamArgs {
    /// Base URL of the API.
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    url: String,
    /// The API's database (the changes are written there).
    #[arg(long)]
    database_url: String,
    /// Payment ids (pending), one per line; at least `--streams`.
    #[arg(long)]
    ids: PathBuf,
    /// Streams to hold open at once.
    #[arg(long, default_value_t = 5_000)]
    streams: usize,
    /// Payments changed while the streams are open (10 every 100 ms).
    #[arg(long, default_value_t = 500)]
    changes: usize,
    /// The API's process id, for its resident memory.
    #[arg(long)]
    api_pid: Option<u32>,
}

/// Payments changed per batch, a batch every [`BATCH_EVERY`].
const BATCH: usize = 10;
const BATCH_EVERY: Duration = Duration::from_millis(100);

pub async fn run(args: StreamArgs) -> anyhow::Result<()> {
    let ids: Vec<String> = std::fs::read_to_string(&args.ids)
        .with_context(|| format!("reading {}", args.ids.display()))?
        .lines()
        .map(str::to_owned)
        .take(args.streams)
        .collect();
    anyhow::ensure!(
        ids.len() == args.streams,
        "{} ids for {} streams",
        ids.len(),
        args.streams
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    // When each payment's second event (the change) arrived.
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let opening = Arc::new(tokio::sync::Semaphore::new(200));
    let started = Instant::now();
    let mut streams = Vec::with_capacity(ids.len());
    for id in &ids {
        let (client, url, id) = (client.clone(), args.url.clone(), id.clone());
        let (opened, failed, arrived, opening) = (opened.clone(), failed.clone(), arrived.clone(), opening.clone());
        streams.push(tokio::spawn(async move {
            // At most 200 streams connecting at once; a stream gives its turn up at its first event.
            let mut permit = opening.acquire_owned().await.ok();
            let response = client.get(format!("{url}/v1/payments/{id}/stream")).send().await;
            let Ok(mut response) = response.map_err(drop).and_then(|r| r.error_for_status().map_err(drop)) else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let mut events = 0;
            let mut buffer = Vec::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                buffer.extend_from_slice(&chunk);
                while let Some(end) = buffer.windows(2).position(|pair| pair == b"\n\n") {
                    let frame: Vec<u8> = buffer.drain(..end + 2).collect();
                    if !frame.starts_with(b"event: status") {
                        continue;
                    }
                    events += 1;
                    if events == 1 {
                        permit.take();
                        opened.fetch_add(1, Ordering::Relaxed);
                    } else {
                        arrived
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert(id.clone(), Instant::now());
                        return;
                    }
                }
            }
        }));
    }
    while opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < ids.len() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "only {} of {} streams opened in 120 s",
            opened.load(Ordering::Relaxed),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open = opened.load(Ordering::Relaxed);
    println!(
        "streams: {open} open ({} refused) after {:.1} s",
        failed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    // Let the poller settle with every stream open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Some(pid) = args.api_pid {
        println!(
            "tronpay-api resident memory with {open} streams open: {}",
            resident(pid)?
        );
    }

    let (db, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let mut committed: HashMap<String, Instant> = HashMap::new();
    let mut ticks = tokio::time::interval(BATCH_EVERY);
    for batch in ids.chunks(BATCH).take(args.changes.div_ceil(BATCH)) {
        ticks.tick().await;
        let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
        db.execute(
            "UPDATE payments SET status = 'failed' WHERE id = ANY($1) AND status = 'pending'",
            &[&batch],
        )
        .await?;
        let now = Instant::now();
        committed.extend(batch.iter().map(|id| ((*id).to_owned(), now)));
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen = arrived.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len();
        if seen >= committed.len() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrived = arrived
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut latencies: Vec<Duration> = committed
        .iter()
        .filter_map(|(id, at)| arrived.get(id).map(|seen| seen.saturating_duration_since(*at)))
        .collect();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * p).round() as usize)
            .map_or(f64::NAN, |latency| latency.as_secs_f64() * 1000.0)
    };
    println!(
        "commit-to-event latency over {} changes with {open} streams open: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {} events missing",
        committed.len(),
        percentile(0.5),
        percentile(0.99),
        percentile(1.0),
        committed.len() - latencies.len(),
    );
    for stream in streams {
        stream.abort();
    }
    Ok(())
}

/// `VmRSS` of process `pid` (from `/proc`), as printed there.
fn resident(pid: u32) -> anyhow::Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .map(|value| value.trim().to_owned())
        .context("no VmRSS")
}
