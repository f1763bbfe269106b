//! The watcher's health endpoint: database, broker, leadership and how far
//! behind the chain the scanner is.
//!
//! `status` is `healthy`, `degraded` (HTTP 200: the node is stalled,
//! unreachable or refusing — `chain.problem` says which — so blocks are not
//! followed, but restarting this process would not help) or `unhealthy`
//! (HTTP 503: no database, or a task of this watcher ended — the scanner or
//! the relay failed, panicked or gave up on an error retrying cannot cure;
//! `failure` names it and the process is about to exit non-zero).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{HttpResponse, web};
use tronpay_bus::BusStatus;
use tronpay_db::{DbPool, chain};
use tronpay_runtime::supervise::TaskHealth;
use tronpay_tron::NodeClient;

use crate::Watcher;
use crate::scanner::ScanStatus;

/// The name the scanner task is supervised under.
pub const SCANNER_TASK: &str = "scanner";

struct State {
    pool: DbPool,
    scan: Arc<ScanStatus>,
    relay: Arc<BusStatus>,
    node: Arc<NodeClient>,
    tasks: Arc<TaskHealth>,
}

/// Binds the health server of `watcher` (port 0 in tests) and returns it,
/// not yet polled, with its port; `tasks` says whether a task failed.
pub fn server(bind: &str, pool: DbPool, watcher: &Watcher, tasks: Arc<TaskHealth>) -> anyhow::Result<(Server, u16)> {
    Ok(tronpay_runtime::health::server(
        bind,
        State {
            pool,
            scan: Arc::clone(&watcher.scan),
            relay: Arc::clone(&watcher.relay),
            node: Arc::clone(&watcher.node),
            tasks,
        },
        health,
    )?)
}

async fn health(state: web::Data<State>) -> HttpResponse {
    let wait = Duration::from_secs(2);
    let chain_state = tokio::time::timeout(wait, async {
        let mut conn = state.pool.get_within(wait).await?;
        chain::state(&mut conn).await
    })
    .await;
    let (database, chain) = match chain_state {
        Ok(Ok(chain)) => ("connected", chain),
        Ok(Err(error)) => {
            tracing::warn!(%error, "health: database unavailable");
            ("disconnected", None)
        }
        Err(_) => ("disconnected", None),
    };
    let failure = state.tasks.failure();
    // A failed task takes the process down; the scanner lock went with the
    // scanner task (even one that panicked before it could say so).
    let leader = state.scan.leader.load(Ordering::Relaxed) && failure.is_none();
    let chain_json = match chain {
        Some(chain) => serde_json::to_value(chain.health(chrono::Utc::now().naive_utc())).ok(),
        // Before the first successful poll there is no cursor yet; what the
        // node answered so far is all there is to show.
        None => state.node.last_error().map(|(error, at)| {
            let at = chrono::DateTime::<chrono::Utc>::from(at).timestamp_millis();
            serde_json::json!({
                "status": "degraded",
                "problem": format!("the node has not been polled successfully yet: {error}"),
                "last_error": error,
                "last_error_at": at,
            })
        }),
    };
    let degraded = chain_json.as_ref().is_some_and(|chain| chain["status"] == "degraded");
    let crashed = failure.as_ref().is_some_and(|failure| failure.task == SCANNER_TASK);
    let healthy = database == "connected" && failure.is_none();
    let status = match (healthy, degraded) {
        (false, _) => "unhealthy",
        (true, true) => "degraded",
        (true, false) => "healthy",
    };
    let mut body = serde_json::json!({
        "status": status,
        "database": database,
        "broker": if state.relay.connected() { "connected" } else { "disconnected" },
        "leader": leader,
        "scanner_crashed": crashed,
        "chain": chain_json,
        "version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(failure) = failure {
        body["failure"] = serde_json::json!(failure);
    }
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
