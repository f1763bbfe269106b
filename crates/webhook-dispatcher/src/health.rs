//! The dispatcher's health endpoint: database, broker, deliveries waiting.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{HttpResponse, web};
use tronpay_bus::BusStatus;
use tronpay_db::{DbPool, deliveries};

struct State {
    pool: DbPool,
    consumer: Arc<BusStatus>,
    relay: Arc<BusStatus>,
}

/// Binds the health server (port 0 in tests) and returns it with its port.
pub fn server(
    bind: &str,
    pool: DbPool,
    consumer: Arc<BusStatus>,
    relay: Arc<BusStatus>,
) -> anyhow::Result<(Server, u16)> {
    Ok(tronpay_runtime::health::server(
        bind,
        State { pool, consumer, relay },
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
    let healthy = database == "connected";
    let body = serde_json::json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "database": database,
        "broker": broker,
        "deliveries_waiting": backlog,
        "version": env!("CARGO_PKG_VERSION"),
    });
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
