//! `tronpay-bench webhooks`: deliveries per second to a local receiver, the
//! latency from a payment's commit to its webhook's arrival, and fairness:
//! how long a healthy receiver waits for its webhook when it comes after
//! deliveries to a receiver that never answers.
//!
//! The completions (payment, delivery row and `callback.due` in the outbox)
//! are written straight to the database, as the API would in its matching
//! transaction; a real `tronpay-webhook-dispatcher` process publishes and
//! delivers them to receivers in this process.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::bail;
use tokio::io::AsyncReadExt;

use crate::{Service, Setup};

#[derive(clap::Args, Clone)]
pub struct WebhookArgs {
    #[command(flatten)]
    setup: Setup,
    /// Completions written at once (throughput).
    #[arg(long, default_value_t = 10_000)]
    pub burst: u32,
    /// Completions per second for the latency figure …
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// … during this many seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Fairness cases, `N@C`: N deliveries to a receiver that never answers,
    /// then one to a receiver that answers at once, with
    /// `WEBHOOK_CONCURRENCY=C`.
    #[arg(long, value_delimiter = ',', default_value = "9@4,64@64")]
    pub fairness: Vec<FairnessCase>,
    /// Only the fairness phase.
    #[arg(long)]
    pub fairness_only: bool,
    /// The dispatcher's health port; the receivers use the next two.
    #[arg(long, default_value_t = 18_190)]
    pub port: u16,
}

/// `N@C`: N hanging deliveries with `WEBHOOK_CONCURRENCY=C`.
#[derive(Debug, Clone, Copy)]
pub struct FairnessCase {
    pub hanging: u32,
    pub concurrency: u32,
}

impl FromStr for FairnessCase {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (hanging, concurrency) = text
            .split_once('@')
            .ok_or_else(|| format!("{text:?} is not N@C (e.g. 9@4)"))?;
        Ok(Self {
            hanging: hanging
                .trim()
                .parse()
                .map_err(|_| format!("{text:?}: N is not a number"))?,
            concurrency: concurrency
                .trim()
                .parse()
                .map_err(|_| format!("{text:?}: C is not a number"))?,
        })
    }
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

/// A receiver that accepts connections and never answers: it reads and
/// discards the requests and holds the sockets until the dispatcher gives
/// up, counting connections opened and closed.
struct Hanging {
    opened: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    accepting: tokio::task::JoinHandle<()>,
    holding: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Hanging {
    async fn start(port: u16) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let opened = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let holding: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let accepting = tokio::spawn({
            let (opened, closed, holding) = (Arc::clone(&opened), Arc::clone(&closed), Arc::clone(&holding));
            async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    opened.fetch_add(1, Ordering::SeqCst);
                    let closed = Arc::clone(&closed);
                    let task = tokio::spawn(async move {
                        let mut buffer = [0u8; 4096];
                        while let Ok(1..) = socket.read(&mut buffer).await {}
                        closed.fetch_add(1, Ordering::SeqCst);
                    });
                    if let Ok(mut holding) = holding.lock() {
                        holding.push(task);
                    }
                }
            }
        });
        Ok(Self {
            opened,
            closed,
            accepting,
            holding,
        })
    }

    /// (connections open now, connections closed so far).
    fn counts(&self) -> (usize, usize) {
        let closed = self.closed.load(Ordering::SeqCst);
        (self.opened.load(Ordering::SeqCst) - closed, closed)
    }

    /// Stops listening and drops every held connection.
    fn stop(&self) {
        self.accepting.abort();
        if let Ok(holding) = self.holding.lock() {
            for task in holding.iter() {
                task.abort();
            }
        }
    }
}

/// Starts a dispatcher with its own exchange and queues; `settings` are
/// extra environment variables.
async fn start_dispatcher(args: &WebhookArgs, bus: &str, settings: &[(&str, String)]) -> anyhow::Result<Service> {
    let mut env = vec![
        ("BUS_EXCHANGE", bus.to_owned()),
        ("BUS_QUEUE_PREFIX", bus.to_owned()),
        ("CALLBACK_ALLOW_PRIVATE", "true".to_owned()),
        ("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()),
        ("DISPATCHER_BIND", format!("127.0.0.1:{}", args.port)),
    ];
    env.extend(settings.iter().cloned());
    let dispatcher = args.setup.start("tronpay-webhook-dispatcher", &[], &env)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(dispatcher)
}

/// Writes `count` completions whose callback is `callback`, order ids
/// `{tag}-1…`, as the API's matching transaction would.
async fn complete(db: &tokio_postgres::Client, callback: &str, tag: &str, count: u32) -> anyhow::Result<()> {
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
}

/// Deliveries of completions tagged `tag` recorded as delivered.
async fn delivered(db: &tokio_postgres::Client, tag: &str) -> anyhow::Result<i64> {
    Ok(db
        .query_one(
            "SELECT count(*) FROM webhook_deliveries d JOIN payments p ON p.id = d.payment_id WHERE d.status = 'delivered' AND p.order_id LIKE $1 || '-%'",
            &[&tag],
        )
        .await?
        .get(0))
}

pub async fn run(args: WebhookArgs) -> anyhow::Result<()> {
    let db = args.setup.connect().await?;

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

    if !args.fairness_only {
        throughput_and_latency(&args, &db, &arrivals, &callback).await?;
    }
    for case in &args.fairness {
        fairness(&args, &db, &arrivals, &callback, *case).await?;
    }
    receiver_handle.stop(false).await;
    Ok(())
}

/// A burst of completions (deliveries/s), then a steady rate (latency).
async fn throughput_and_latency(
    args: &WebhookArgs,
    db: &tokio_postgres::Client,
    arrivals: &Arrivals,
    callback: &str,
) -> anyhow::Result<()> {
    let bus = format!("tronpay-bench.webhooks.{}", std::process::id());
    let dispatcher = start_dispatcher(args, &bus, &[]).await?;

    // Throughput: a burst of completions.
    let started = Instant::now();
    complete(db, callback, "burst", args.burst).await?;
    while delivered(db, "burst").await? < i64::from(args.burst) {
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
        complete(db, callback, &format!("steady{tick}"), per_tick).await?;
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
    let arrived = arrivals.lock().map(|arrivals| arrivals.clone()).unwrap_or_default();
    let mut latencies: Vec<i64> = rows
        .iter()
        .filter_map(|row| {
            arrived
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
    Ok(())
}

/// `case.hanging` completions whose callback never answers, then one whose
/// callback answers at once (committed right after, so its message is
/// last): the time from that one's commit to its arrival.
async fn fairness(
    args: &WebhookArgs,
    db: &tokio_postgres::Client,
    arrivals: &Arrivals,
    callback: &str,
    case: FairnessCase,
) -> anyhow::Result<()> {
    let hanging = Hanging::start(args.port + 2).await?;
    let hanging_callback = format!("http://127.0.0.1:{}/hook", args.port + 2);
    let tag = format!("fair{}at{}x{}", case.hanging, case.concurrency, std::process::id());
    let bus = format!("tronpay-bench.{tag}");
    let dispatcher = start_dispatcher(args, &bus, &[("WEBHOOK_CONCURRENCY", case.concurrency.to_string())]).await?;

    complete(db, &hanging_callback, &format!("{tag}-hang"), case.hanging).await?;
    complete(db, callback, &format!("{tag}-ok"), 1).await?;
    let row = db
        .query_one(
            "SELECT d.webhook_id, (extract(epoch FROM p.completed_at) * 1000)::bigint FROM webhook_deliveries d \
             JOIN payments p ON p.id = d.payment_id WHERE p.order_id = $1",
            &[&format!("{tag}-ok-1")],
        )
        .await?;
    let (webhook_id, committed): (String, i64) = (row.get(0), row.get(1));
    let waited = Instant::now();
    let (arrived, (open, closed)) = loop {
        let arrived = arrivals
            .lock()
            .ok()
            .and_then(|arrivals| arrivals.get(&webhook_id).copied());
        if let Some(arrived) = arrived {
            break (arrived, hanging.counts());
        }
        if waited.elapsed() > Duration::from_secs(120) {
            bail!("the healthy receiver's webhook did not arrive within 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!(
        "webhooks fairness: {} deliveries to a receiver that never answers, then 1 to one that answers, WEBHOOK_CONCURRENCY={}: \
         the healthy one arrived {} ms after its commit ({} hanging requests open, {} timed out by then)",
        case.hanging,
        case.concurrency,
        arrived - committed,
        open,
        closed
    );
    // The hanging deliveries must not spill into the next case.
    hanging.stop();
    drop(dispatcher);
    db.execute(
        "UPDATE webhook_deliveries SET status = 'dead', locked_until = NULL WHERE status IN ('pending', 'sending') \
         AND payment_id IN (SELECT id FROM payments WHERE order_id LIKE $1 || '-%')",
        &[&tag],
    )
    .await?;
    Ok(())
}
