//! The health endpoint of a service without an API of its own (the chain
//! watcher, the webhook dispatcher): `/health` as the service reports it and
//! `/health/live` for liveness probes, on a small server of one worker.

use std::future::Future;
use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};

/// Liveness: the process serves requests (dependencies are `/health`'s job,
/// so a database outage never gets the pod restarted).
pub async fn live() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"alive"}"#)
}

/// Binds `bind` (port 0 in tests) and returns the server, not yet polled,
/// with the port it got. `health` answers `GET`/`HEAD /health` with `state`.
pub fn server<T, F, Fut>(bind: &str, state: T, health: F) -> std::io::Result<(Server, u16)>
where
    T: Send + Sync + 'static,
    F: Fn(web::Data<T>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = HttpResponse> + 'static,
{
    let listener = TcpListener::bind(bind)
        .map_err(|error| std::io::Error::new(error.kind(), format!("cannot listen on {bind}: {error}")))?;
    let port = listener.local_addr()?.port();
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/health", web::get().to(health.clone()))
            .route("/health", web::head().to(health.clone()))
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
