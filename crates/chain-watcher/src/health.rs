//! The watcher's health endpoint: database, broker, leadership and how far
//! behind the chain the scanner is.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{HttpResponse, web};
use tronpay_bus::BusStatus;
use tronpay_db::{DbPool, chain};

use crate::scanner::ScanStatus;

struct State {
    pool: DbPool,
    scan: Arc<ScanStatus>,
    relay: Arc<BusStatus>,
}

/// Binds the health server (port 0 in tests) and returns it with its port.
pub fn server(bind: &str, pool: DbPool, scan: Arc<ScanStatus>, relay: Arc<BusStatus>) -> anyhow::Result<(Server, u16)> {
    Ok(tronpay_runtime::health::server(
        bind,
        State { pool, scan, relay },
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
    let leader = state.scan.leader.load(Ordering::Relaxed);
    let chain_json = chain.map(|chain| {
        let lag = chain.final_block.map(|final_block| final_block - chain.cursor_block);
        serde_json::json!({
            "head_block": chain.head_block,
            "final_block": chain.final_block,
            "cursor_block": chain.cursor_block,
            "lag_blocks": lag,
            "polled_at": chain.polled_at.map(|time| time.and_utc().timestamp_millis()),
            "last_error": chain.last_error,
            "last_error_at": chain.last_error_at.map(|time| time.and_utc().timestamp_millis()),
            "scanner": chain.leader,
        })
    });
    let crashed = state.scan.failed.load(Ordering::Relaxed);
    let healthy = database == "connected" && !crashed;
    let body = serde_json::json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "database": database,
        "broker": if state.relay.connected() { "connected" } else { "disconnected" },
        "leader": leader,
        "scanner_crashed": crashed,
        "chain": chain_json,
        "version": env!("CARGO_PKG_VERSION"),
    });
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
