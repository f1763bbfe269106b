//! The dispatcher's health endpoint: database, broker, deliveries waiting.
//!
//! `status` is `healthy`, or `unhealthy` (HTTP 503) when the database
//! cannot be reached or a task of this dispatcher ended (the consumer, the
//! sweep or the relay failed, panicked or gave up on an error retrying
//! cannot cure; `failure` names it and the process is about to exit
//! non-zero), by the rules every service shares
//! ([`tronpay_runtime::health`]).

use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::web;
use tronpay_bus::BusStatus;
use tronpay_db::{DbPool, deliveries};
use tronpay_runtime::health::{self, Report};
use tronpay_runtime::supervise::{TaskFailure, TaskHealth};

struct State {
    pool: DbPool,
    consumer: Arc<BusStatus>,
    relay: Arc<BusStatus>,
}

/// Binds the health server (port 0 in tests) and returns it, not yet
/// polled, with its port. `consumer` and `relay` are the broker status of
/// those tasks; `tasks` says whether a task failed.
pub fn server(
    bind: &str,
    pool: DbPool,
    consumer: Arc<BusStatus>,
    relay: Arc<BusStatus>,
    tasks: Arc<TaskHealth>,
) -> std::io::Result<(Server, u16)> {
    health::server(bind, State { pool, consumer, relay }, tasks, report)
}

async fn report(state: web::Data<State>, _failure: Option<TaskFailure>) -> Report {
    let backlog = health::database(async {
        let mut conn = state.pool.get_within(health::DATABASE_WAIT).await?;
        deliveries::backlog(&mut conn).await
    })
    .await;
    let broker = state.consumer.connected() && state.relay.connected();
    Report {
        database: backlog.is_some(),
        degraded: false,
        body: serde_json::json!({
            "broker": if broker { "connected" } else { "disconnected" },
            "deliveries_waiting": backlog,
        }),
    }
}
