//! The HTTP server every role runs: `GET /health` (the process is alive), `GET /ready` (Kafka and
//! Redis answer), `GET /metrics` (Prometheus), plus the role's own routes; the server span of each
//! of those requests; and how its HTTP clients report a failed request.

use crate::metrics::{Metrics, StatusLabel};
use crate::propagation::extract_http;
use crate::roles::Service;
use crate::spans::ActiveSpan;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, SpanRef, Status};
use opentelemetry_semantic_conventions::attribute as semconv;
use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing_lab_config::contract;

/// Checks the dependencies a role needs before it can take work.
pub type Readiness = Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

#[derive(Clone)]
struct Probes {
    ready: Readiness,
    metrics: Arc<Metrics>,
}

/// Serves `routes` plus the probes until `stop` is cancelled; requests in flight then have `drain`
/// to finish, after which they are cancelled (their connections closed).
pub async fn serve(
    addr: SocketAddr,
    routes: Router,
    ready: Readiness,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    drain: Duration,
) -> anyhow::Result<()> {
    let probes = Router::new()
        .route(contract::HEALTH_PATH, get(|| async { "ok" }))
        .route(contract::READY_PATH, get(readiness))
        .route(contract::METRICS_PATH, get(render_metrics))
        .with_state(Probes { ready, metrics });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("LISTEN_ADDR={addr}: cannot listen: {e}"))?;
    tracing::info!(%addr, "listening");
    let served = axum::serve(listener, routes.merge(probes))
        .with_graceful_shutdown(stop.clone().cancelled_owned())
        .into_future();
    tokio::pin!(served);
    tokio::select! {
        result = &mut served => return Ok(result?),
        _ = stop.cancelled() => {}
    }
    match tokio::time::timeout(drain, served).await {
        Ok(result) => Ok(result?),
        Err(_) => {
            tracing::warn!(
                drain_ms = drain.as_millis() as u64,
                "drain deadline passed; cancelling the requests still in flight"
            );
            Ok(())
        }
    }
}

async fn readiness(State(probes): State<Probes>) -> Response {
    match (probes.ready)().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {err:#}"),
        )
            .into_response(),
    }
}

async fn render_metrics(State(probes): State<Probes>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        probes.metrics.render(),
    )
        .into_response()
}

/// The server span of one request to a role's route, under the caller's context from `headers`
/// (unless `faults.dropTraceContext` ignores it), with the HTTP conventions' request attributes.
pub fn server_span(
    service: &Service,
    headers: &HeaderMap,
    name: &'static str,
    method: &'static str,
    route: &'static str,
    path: String,
) -> ActiveSpan {
    ActiveSpan::start(
        &service.tracer,
        name,
        SpanKind::Server,
        &service.incoming_context(|| extract_http(headers)),
        vec![
            KeyValue::new(semconv::HTTP_REQUEST_METHOD, method),
            KeyValue::new(semconv::HTTP_ROUTE, route),
            KeyValue::new(semconv::URL_PATH, path),
            KeyValue::new(semconv::URL_SCHEME, "http"),
        ],
    )
}

/// Puts a request's answer on its server span and counts it: the status code; `error.type` for
/// every 4xx and 5xx, so that Jaeger finds refused requests too; the span failed only on a 5xx,
/// as the HTTP conventions say (a client's mistake is not the server's error).
pub fn record_response(span: &SpanRef<'_>, metrics: &Metrics, status: StatusCode) {
    span.set_attribute(KeyValue::new(
        semconv::HTTP_RESPONSE_STATUS_CODE,
        i64::from(status.as_u16()),
    ));
    if status.is_client_error() || status.is_server_error() {
        span.set_attribute(KeyValue::new(
            semconv::ERROR_TYPE,
            status.as_u16().to_string(),
        ));
    }
    if status.is_server_error() {
        span.set_status(Status::error(status.to_string()));
    }
    metrics
        .http_responses
        .get_or_create(&StatusLabel {
            status: status.as_u16(),
        })
        .inc();
}

/// The error and its sources: reqwest's own message hides the cause (refused, reset, timed out).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
