//! `tronpay-bench webhooks`: deliveries per second to a local receiver, and
//! the latency from a payment's commit to its webhook's arrival.
//!
//! The completions (payment, delivery row and `callback.due` in the outbox)
//! are written straight to the database, as the API would in its matching
//! transaction; a real `tronpay-webhook-dispatcher` process publishes and
//! delivers them to a receiver in this process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::{Context, bail};

use crate::Service;

#[derive(clap::Args, Clone)]
pub struct WebhookArgs {
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,
    /// An empty database with the tronpay tables.
    #[arg(long)]
    pub database_url: String,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub rabbitmq_url: String,
    /// Completions written at once (throughput).
    #[arg(long, default_value_t = 10_000)]
    pub burst: u32,
    /// Completions per second for the latency figure …
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// … during this many seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    #[arg(long, default_value_t = 18_190)]
    pub port: u16,
}

/// Arrival time (ms since the epoch) per webhook id.
type Arrivals = Arc<Mutex<HashMap<String, i64>>>;

async fn receive(request: HttpRequest, arrivals: web::Data<Arrivals>) -> HttpResponse {
    let now = chrono::Utc::now().timestamp_millis();
    if let Some(id) = request
        .headers()
        .get("webhook-id")
        .and_then(|value| value.to_str().ok())
        && let Ok(mut arrivals) = arrivals.lock()
    {
        arrivals.entry(id.to_owned()).or_insert(now);
    }
    HttpResponse::Ok().finish()
}

pub async fn run(args: WebhookArgs) -> anyhow::Result<()> {
    let (db, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);

    let arrivals: Arrivals = Arc::default();
    let shared = web::Data::new(Arc::clone(&arrivals));
    let receiver = HttpServer::new(move || App::new().app_data(shared.clone()).default_service(web::to(receive)))
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", args.port + 1))?
        .run();
    let receiver_handle = receiver.handle();
    tokio::spawn(receiver);
    let callback = format!("http://127.0.0.1:{}/hook", args.port + 1);

    let bus = format!("tronpay-bench.webhooks.{}", std::process::id());
    let path = args.bin_dir.join("tronpay-webhook-dispatcher");
    let dispatcher = Service(
        Command::new(&path)
            .env("DATABASE_URL", &args.database_url)
            .env("RABBITMQ_URL", &args.rabbitmq_url)
            .env("BUS_EXCHANGE", &bus)
            .env("BUS_QUEUE_PREFIX", &bus)
            .env("CALLBACK_ALLOW_PRIVATE", "true")
            .env("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .env("DISPATCHER_BIND", format!("127.0.0.1:{}", args.port))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let complete = async |count: u32, tag: &str| -> anyhow::Result<()> {
        db.execute(
            "WITH p AS (INSERT INTO payments (id, wallet_address, expected_amount_usdt, callback_url, order_id, status, created_at, completed_at, \
                                             expires_at, last_checked_timestamp, received_amount_usdt, transaction_hash) \
                        SELECT gen_random_uuid()::text, 'TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t', 12.34, $1, $2 || '-' || n, 'completed', \
                               now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', (now() AT TIME ZONE 'utc') + interval '1 day', 0, 12.34, \
                               md5(n::text) || md5($2 || n) \
                        FROM generate_series(1, $3::int) AS n RETURNING id, order_id, transaction_hash), \
                  d AS (INSERT INTO webhook_deliveries (id, payment_id, event_type, webhook_id, payload, published_at) \
                        SELECT gen_random_uuid(), id, 'payment.completed', 'msg_' || replace(gen_random_uuid()::text, '-', ''), \
                               jsonb_build_object('payment_id', id, 'order_id', order_id, 'wallet_address', 'TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t', \
                                                  'currency', 'USDT_TRC20', 'expected_amount_usdt', 12.34, 'received_amount_usdt', 12.34, \
                                                  'transaction_hash', transaction_hash, 'status', 'completed', 'event', 'payment.completed'), \
                               now() AT TIME ZONE 'utc' \
                        FROM p RETURNING id, payment_id) \
             INSERT INTO outbox (message_id, routing_key, payload) \
             SELECT gen_random_uuid(), 'callback.due', jsonb_build_object('delivery_id', id::text, 'payment_id', payment_id, 'event_type', 'payment.completed') FROM d",
            &[&callback, &tag, &i32::try_from(count)?],
        )
        .await?;
        Ok(())
    };
    let delivered = async |tag: &str| -> anyhow::Result<i64> {
        Ok(db
            .query_one(
                "SELECT count(*) FROM webhook_deliveries d JOIN payments p ON p.id = d.payment_id WHERE d.status = 'delivered' AND p.order_id LIKE $1 || '-%'",
                &[&tag],
            )
            .await?
            .get(0))
    };

    // Throughput: a burst of completions.
    let started = Instant::now();
    complete(args.burst, "burst").await?;
    while delivered("burst").await? < i64::from(args.burst) {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the burst was not delivered within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    println!(
        "webhooks: {} completions delivered in {:.2} s = {:.0} deliveries/s (signed, to a local receiver, {} attempt rows)",
        args.burst,
        elapsed.as_secs_f64(),
        f64::from(args.burst) / elapsed.as_secs_f64(),
        db.query_one("SELECT count(*) FROM webhook_attempts", &[])
            .await?
            .get::<_, i64>(0),
    );

    // Latency: completions at a steady rate, in batches every 100 ms.
    let per_tick = (args.rate / 10).max(1);
    let ticks = args.seconds * 10;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    for tick in 0..ticks {
        ticker.tick().await;
        complete(per_tick, &format!("steady{tick}")).await?;
    }
    let expected = i64::from(per_tick * ticks);
    let waited = Instant::now();
    loop {
        let count: i64 = db
            .query_one("SELECT count(*) FROM webhook_deliveries d JOIN payments p ON p.id = d.payment_id WHERE d.status = 'delivered' AND p.order_id LIKE 'steady%'", &[])
            .await?
            .get(0);
        if count >= expected {
            break;
        }
        if waited.elapsed() > Duration::from_secs(120) {
            bail!("steady completions were not delivered");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = db
        .query(
            "SELECT d.webhook_id, (extract(epoch FROM p.completed_at) * 1000)::bigint FROM webhook_deliveries d \
             JOIN payments p ON p.id = d.payment_id WHERE p.order_id LIKE 'steady%'",
            &[],
        )
        .await?;
    let arrivals = arrivals.lock().map(|arrivals| arrivals.clone()).unwrap_or_default();
    let mut latencies: Vec<i64> = rows
        .iter()
        .filter_map(|row| {
            arrivals
                .get(row.get::<_, &str>(0))
                .map(|arrived| arrived - row.get::<_, i64>(1))
        })
        .collect();
    latencies.sort_unstable();
    if latencies.is_empty() {
        bail!("no arrival was recorded");
    }
    let pick = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "webhooks: {} completions at {}/s: commit -> received p50 {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        args.rate,
        pick(0.5),
        pick(0.99),
        latencies.last().copied().unwrap_or(0)
    );
    drop(dispatcher);
    receiver_handle.stop(false).await;
    Ok(())
}
