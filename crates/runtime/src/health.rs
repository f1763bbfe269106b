//! The health endpoint of a service without an API of its own (the chain
//! watcher, the webhook dispatcher): `/health` as the service reports it,
//! `/health/live` for liveness probes and `/metrics` (Prometheus, see
//! [`crate::metrics`]), on a small server of one worker.
//!
//! The service says what it knows ([`Report`]); the rules for `status` are
//! here, the same for each: `unhealthy` (HTTP 503) when the database does
//! not answer or a supervised task failed (`failure` names it: the process
//! is about to exit non-zero), else `degraded` when the service reports it
//! cannot work for a reason a restart would not cure (HTTP 200), else
//! `healthy`.

use std::fmt;
use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::json;

use crate::supervise::{TaskFailure, TaskHealth};

/// How long `/health` waits for the database in all before it says
/// `disconnected`.
pub const DATABASE_WAIT: Duration = Duration::from_secs(2);

/// Liveness: the process serves requests (dependencies are `/health`'s job,
/// so a database outage never gets the pod restarted).
pub async fn live() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"alive"}"#)
}

/// What a service says about itself at `/health`.
#[derive(Debug, Clone)]
pub struct Report {
    /// The database answered (within [`DATABASE_WAIT`]).
    pub database: bool,
    /// The service cannot do its work for a reason a restart would not cure
    /// (the watcher's node is stalled or unreachable).
    pub degraded: bool,
    /// The service's own fields (`broker`, `chain`, …); `status`,
    /// `database`, `version` and `failure` are added.
    pub body: serde_json::Value,
}

/// `probe`, a read of the database, given [`DATABASE_WAIT`]: `None` when it
/// failed (logged) or took longer.
pub async fn database<T, E: fmt::Display>(probe: impl Future<Output = Result<T, E>>) -> Option<T> {
    match tokio::time::timeout(DATABASE_WAIT, probe).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(error)) => {
            tracing::warn!(%error, "health: database unavailable");
            None
        }
        Err(_) => None,
    }
}

struct Shared<T, F> {
    state: web::Data<T>,
    tasks: Arc<TaskHealth>,
    report: F,
}

/// Binds `bind` (port 0 in tests) and returns the server, not yet polled,
/// with the port it got. `GET`/`HEAD /health` answers with what `report`
/// says about `state` (given the failure of `tasks`, if any).
pub fn server<T, F, Fut>(bind: &str, state: T, tasks: Arc<TaskHealth>, report: F) -> std::io::Result<(Server, u16)>
where
    T: Send + Sync + 'static,
    F: Fn(web::Data<T>, Option<TaskFailure>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Report> + 'static,
{
    let listener = TcpListener::bind(bind)
        .map_err(|error| std::io::Error::new(error.kind(), format!("cannot listen on {bind}: {error}")))?;
    let port = listener.local_addr()?.port();
    let shared = web::Data::new(Shared {
        state: web::Data::new(state),
        tasks,
        report,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .route("/health", web::get().to(answer::<T, F, Fut>))
            .route("/health", web::head().to(answer::<T, F, Fut>))
            .route("/health/live", web::get().to(live))
            .route("/health/live", web::head().to(live))
            .route("/metrics", web::get().to(crate::metrics::endpoint))
            .wrap(actix_web::middleware::from_fn(crate::metrics::track))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    Ok((server, port))
}

async fn answer<T, F, Fut>(shared: web::Data<Shared<T, F>>) -> HttpResponse
where
    F: Fn(web::Data<T>, Option<TaskFailure>) -> Fut,
    Fut: Future<Output = Report>,
{
    let failure = shared.tasks.failure();
    let Report {
        database,
        degraded,
        mut body,
    } = (shared.report)(shared.state.clone(), failure.clone()).await;
    let healthy = database && failure.is_none();
    body["status"] = json!(match (healthy, degraded) {
        (false, _) => "unhealthy",
        (true, true) => "degraded",
        (true, false) => "healthy",
    });
    body["database"] = json!(if database { "connected" } else { "disconnected" });
    body["version"] = json!(env!("CARGO_PKG_VERSION"));
    if let Some(failure) = failure {
        body["failure"] = json!(failure);
    }
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
