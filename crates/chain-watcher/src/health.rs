//! The watcher's health endpoint: database, broker, leadership and how far
//! behind the chain the scanner is.
//!
//! `status` is `healthy`, `degraded` (HTTP 200: the node is stalled,
//! unreachable or refusing — `chain.problem` says which — so blocks are not
//! followed, but restarting this process would not help) or `unhealthy`
//! (HTTP 503: no database, or a task of this watcher ended — the scanner or
//! the relay failed, panicked or gave up on an error retrying cannot cure;
//! `failure` names it and the process is about to exit non-zero), by the
//! rules every service shares ([`tronpay_runtime::health`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix_web::dev::Server;
use actix_web::web;
use tronpay_bus::BusStatus;
use tronpay_db::{DbPool, chain};
use tronpay_runtime::health::{self, Report};
use tronpay_runtime::supervise::{TaskFailure, TaskHealth};
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
}

/// Binds the health server of `watcher` (port 0 in tests) and returns it,
/// not yet polled, with its port; `tasks` says whether a task failed.
pub fn server(bind: &str, pool: DbPool, watcher: &Watcher, tasks: Arc<TaskHealth>) -> std::io::Result<(Server, u16)> {
    let state = State {
        pool,
        scan: Arc::clone(&watcher.scan),
        relay: Arc::clone(&watcher.relay),
        node: Arc::clone(&watcher.node),
    };
    health::server(bind, state, tasks, report)
}

async fn report(state: web::Data<State>, failure: Option<TaskFailure>) -> Report {
    let chain = health::database(async {
        let mut conn = state.pool.get_within(health::DATABASE_WAIT).await?;
        chain::state(&mut conn).await
    })
    .await;
    let database = chain.is_some();
    // A failed task takes the process down; the scanner lock went with the
    // scanner task (even one that panicked before it could say so).
    let leader = state.scan.leader.load(Ordering::Relaxed) && failure.is_none();
    let chain = match chain.flatten() {
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
    Report {
        database,
        degraded: chain.as_ref().is_some_and(|chain| chain["status"] == "degraded"),
        body: serde_json::json!({
            "broker": if state.relay.connected() { "connected" } else { "disconnected" },
            "leader": leader,
            "scanner_crashed": failure.is_some_and(|failure| failure.task == SCANNER_TASK),
            "chain": chain,
        }),
    }
}
