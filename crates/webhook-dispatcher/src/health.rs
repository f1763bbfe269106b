//! The dispatcher's health endpoint: database, broker, deliveries waiting.
//!
//! `status` is `healthy`, or `unhealthy` (HTTP 503) when the database
//! cannot be reached or a task of this dispatcher ended (the consumer, the
//! sweep or the relay failed, panicked or gave up on an error retrying
//! cannot cure; `failure` names it and the process is about to exit
//! non-zero).

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{HttpResponse, web};
use tronpay_bus::BusStatus;
use tronpay_db::{DbPool, deliveries};
use tronpay_runtime::supervise::TaskHealth;

struct State {
    pool: DbPool,
    consumer: Arc<BusStatus>,
    relay: Arc<BusStatus>,
    tasks: Arc<TaskHealth>,
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
) -> anyhow::Result<(Server, u16)> {
    Ok(tronpay_runtime::health::server(
        bind,
        State {
            pool,
            consumer,
            relay,
            tasks,
        },
        health,
    )?)
}

async fn health(state: web::Data<State>) -> HttpResponse {
    let wait = Duration::from_secs(2);
    let backlog = tokio::time::timeout(wait, async {
        let mut conn = state.pool.get_within(wait).await?;
        deliveries::backlog(&mut conn).await
    })
    .await;
    let (database, backlog) = match backlog {
        Ok(Ok(backlog)) => ("connected", Some(backlog)),
        _ => ("disconnected", None),
    };
    let broker = if state.consumer.connected() && state.relay.connected() {
        "connected"
    } else {
        "disconnected"
    };
    let failure = state.tasks.failure();
    let healthy = database == "connected" && failure.is_none();
    let mut body = serde_json::json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "database": database,
        "broker": broker,
        "deliveries_waiting": backlog,
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
