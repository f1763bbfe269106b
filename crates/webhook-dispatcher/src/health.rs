//! The dispatcher's health endpoint: database, broker, deliveries waiting.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use tronpay_bus::BusStatus;
use tronpay_db::{DbPool, deliveries};

struct State {
    pool: DbPool,
    consumer: Arc<BusStatus>,
    relay: Arc<BusStatus>,
}

pub fn server(
    bind: &str,
    pool: DbPool,
    consumer: Arc<BusStatus>,
    relay: Arc<BusStatus>,
) -> anyhow::Result<(Server, u16)> {
    let listener = TcpListener::bind(bind).map_err(|error| anyhow::anyhow!("cannot listen on {bind}: {error}"))?;
    let port = listener.local_addr()?.port();
    let state = web::Data::new(State { pool, consumer, relay });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/health", web::get().to(health))
            .route("/health", web::head().to(health))
            .route("/health/live", web::get().to(live))
            .route("/health/live", web::head().to(live))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    Ok((server, port))
}

/// Liveness: the process serves requests (dependencies are `/health`'s job,
/// so a database outage never gets the pod restarted).
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "alive" }))
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
