//! Prometheus metrics (PRODUCT §12): the process's one recorder (the
//! `metrics` facade, rendered by `metrics-exporter-prometheus`), the
//! `/metrics` answer, and the HTTP request series every service's server
//! records the same way.
//!
//! Series are named with their unit (`_seconds`, `_total`, `_blocks`) and
//! labelled only with bounded values: route templates (`/v1/payments/{id}`,
//! never the path), methods, status codes, outcomes and kinds from fixed
//! lists. Every histogram whose name ends in `_seconds` has the buckets of
//! [`SECONDS_BUCKETS`]. The series of each service are listed in the
//! README's "Metrics" section.
//!
//! The recorder is process-wide: services started in one process (as the
//! end-to-end tests do) share it, and each one's `/metrics` shows them all.

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds (seconds) of the `_seconds` histograms: 1 ms to 30 s.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often the recorder's histograms are drained (`run_upkeep`).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The installed recorder's handle (`None`: another recorder was installed
/// first, so this process renders nothing).
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder, once (later calls do nothing), with a
/// thread that drains its histograms every [`UPKEEP_EVERY`]. Each service
/// calls it at start; recording before it is a no-op.
pub fn install() {
    HANDLE.get_or_init(|| {
        let built = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(PrometheusBuilder::install_recorder);
        match built {
            Ok(handle) => {
                let upkeep = handle.clone();
                let spawned = std::thread::Builder::new()
                    .name("metrics-upkeep".into())
                    .spawn(move || {
                        loop {
                            std::thread::sleep(UPKEEP_EVERY);
                            upkeep.run_upkeep();
                        }
                    });
                if let Err(error) = spawned {
                    tracing::warn!(%error, "metrics: no upkeep thread; histograms are drained at each scrape");
                }
                Some(handle)
            }
            Err(error) => {
                tracing::warn!(%error, "metrics: recorder not installed; /metrics stays empty");
                None
            }
        }
    });
}

/// The Prometheus text exposition of every series recorded so far (empty
/// before [`install`]).
pub fn render() -> String {
    match HANDLE.get() {
        Some(Some(handle)) => {
            handle.run_upkeep();
            handle.render()
        }
        _ => String::new(),
    }
}

/// `GET /metrics`: [`render`] as `text/plain; version=0.0.4`.
pub async fn endpoint() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(render())
}

/// Records one answered request: `http_requests_total{method, route,
/// status}` and `http_request_duration_seconds{method, route}`. `route` is
/// the matched route's template, or `unmatched` (no route: a 404), so the
/// label set stays bounded whatever paths clients send.
pub fn record_request(method: &str, route: Option<&str>, status: u16, elapsed: Duration) {
    let route = route.unwrap_or("unmatched").to_owned();
    let method = match method {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method.to_owned(),
        _ => "other".to_owned(),
    };
    metrics::counter!(
        "http_requests_total",
        "method" => method.clone(),
        "route" => route.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
}

/// Middleware (`actix_web::middleware::from_fn`) that records every request
/// of a server with [`record_request`]; the API's edge records its own.
pub async fn track(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request.match_pattern();
    let response = next.call(request).await?;
    record_request(&method, route.as_deref(), response.status().as_u16(), started.elapsed());
    Ok(response)
}

/// A metric's value in a Prometheus text exposition: the sum over every
/// series of `name` whose labels include each of `labels` (`key="value"`),
/// or `None` without any. For tests and the benchmark tools.
pub fn value_in(exposition: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in exposition.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
        if series_name != name || !labels.iter().all(|label| series_labels.contains(label)) {
            continue;
        }
        if let Ok(value) = value.parse::<f64>() {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_summed_over_the_series_with_the_labels() {
        let text = "# TYPE x counter\nx{a=\"1\",b=\"2\"} 3\nx{a=\"1\",b=\"3\"} 4\nx{a=\"2\"} 10\nxy 7\ny 1\n";
        assert_eq!(value_in(text, "x", &["a=\"1\""]), Some(7.0));
        assert_eq!(value_in(text, "x", &[]), Some(17.0));
        assert_eq!(value_in(text, "xy", &[]), Some(7.0));
        assert_eq!(value_in(text, "x", &["a=\"3\""]), None);
    }
}
