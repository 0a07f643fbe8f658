//! The load generator: posts orders to the api at `loadgen.ordersPerSecond`, each in a client span
//! whose context travels in the request headers (so the trace starts at the client).

use super::record_exception;
use crate::metrics::{Metrics, StatusLabel};
use crate::propagation::inject_http;
use axum::http::HeaderMap;
use opentelemetry::trace::Status;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Requests allowed in flight; beyond that, ticks are skipped rather than queued without bound.
const MAX_IN_FLIGHT: usize = 256;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(
    target: &str,
    orders_per_second: f64,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let url = format!("{target}/order");
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / orders_per_second));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    tracing::info!(%url, orders_per_second, "sending orders");
    for n in 0u64.. {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!("{MAX_IN_FLIGHT} orders already in flight; skipping one");
            continue;
        };
        let (client, url, metrics) = (client.clone(), url.clone(), metrics.clone());
        tasks.spawn(async move {
            let _slot = slot;
            send_order(&client, &url, n, &metrics).await;
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn send_order(client: &reqwest::Client, url: &str, n: u64, metrics: &Metrics) {
    let span = tracing::info_span!("send_order", otel.name = "POST", otel.kind = "client");
    span.set_attribute("http.request.method", "POST");
    span.set_attribute("url.full", url.to_owned());
    let mut headers = HeaderMap::new();
    inject_http(&span.context(), &mut headers);
    let body = serde_json::json!({
        "item": format!("product-{}", n % 100),
        "quantity": rand::rng().random_range(1..=10),
    });
    let sent = client
        .post(url)
        .headers(headers)
        .json(&body)
        .send()
        .instrument(span.clone())
        .await;
    let status = match sent {
        Ok(response) => {
            let status = response.status();
            span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
            if status.is_client_error() || status.is_server_error() {
                span.set_status(Status::error(status.to_string()));
                tracing::warn!(parent: &span, status = status.as_u16(), "order not accepted");
            }
            status.as_u16()
        }
        Err(err) => {
            record_exception(&span, "RequestError", &err.to_string());
            tracing::warn!(parent: &span, error = %err, "sending an order failed");
            0
        }
    };
    metrics
        .http_responses
        .get_or_create(&StatusLabel { status })
        .inc();
}
