//! The load generator: posts orders to the api at `loadgen.ordersPerSecond`, each in a client span
//! whose context travels in the request headers (so the trace starts at the client), with a
//! customer tier in the W3C baggage that every service puts on its spans.
//!
//! When the api cannot take orders (not reachable yet, too slow to answer, or answering "retry
//! later"), the generator pauses instead of piling up requests, and resumes when an order goes
//! through.

use crate::http::error_chain;
use crate::metrics::{Metrics, StatusLabel};
use crate::propagation::inject_http;
use crate::spans::{self, ActiveSpan, record_exception};
use axum::http::{HeaderMap, StatusCode};
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Context, KeyValue};
use opentelemetry_semantic_conventions::attribute as semconv;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing_lab_telemetry::baggage::{CUSTOMER_TIER, CUSTOMER_TIERS};

/// Requests allowed in flight; beyond that, ticks are skipped rather than queued without bound.
const MAX_IN_FLIGHT: usize = 256;
/// An api that does not accept the connection within this is treated as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an order may take: the api may legitimately wait `faults.extraLatencyMs` (up to 60 s),
/// a quote's three lookups (up to 3 × 10 s), 5 s for Redis and 5 s for Kafka's acknowledgement,
/// plus its simulated work. Giving up earlier reports as failed an order the api goes on to accept.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(110);
/// How long requests still in flight at shutdown may finish before they are abandoned.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(5);

pub async fn run(
    target: &str,
    orders_per_second: f64,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    // A connection per order: the api Service balances connections, so scaled api pods share the
    // load, and an order never rides a connection opened before the api had endpoints.
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(0)
        .build()?;
    let url = format!("{target}/order");
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / orders_per_second));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let mut backoff = Backoff::default();
    let tracer = Arc::new(spans::tracer());
    tracing::info!(%url, orders_per_second, "sending orders");
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(sent) = tasks.join_next() => {
                let available = sent.map_err(|e| anyhow::anyhow!("an order task failed: {e}"))?;
                if available {
                    backoff.succeeded();
                } else if let Some(pause) = backoff.failed(Instant::now()) {
                    tracing::info!(pause_ms = pause.as_millis() as u64, "api unavailable; pausing orders");
                }
                continue;
            }
            _ = ticks.tick() => {}
        }
        if backoff.paused(Instant::now()) {
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!("{MAX_IN_FLIGHT} orders already in flight; skipping one");
            continue;
        };
        let (client, url, metrics, tracer) =
            (client.clone(), url.clone(), metrics.clone(), tracer.clone());
        tasks.spawn(async move {
            let _slot = slot;
            send_order(&tracer, &client, &url, n, &metrics).await
        });
        n += 1;
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            abandoned = tasks.len(),
            "orders still unanswered at shutdown"
        );
        tasks.shutdown().await;
    }
    Ok(())
}

/// Sends one order; `false` when the api could not take it (unreachable, timed out, or an
/// answer asking to retry later), which pauses the generator.
async fn send_order(
    tracer: &BoxedTracer,
    client: &reqwest::Client,
    url: &str,
    n: u64,
    metrics: &Metrics,
) -> bool {
    let customer = Context::new().with_baggage([KeyValue::new(CUSTOMER_TIER, customer_tier())]);
    let span = ActiveSpan::start(
        tracer,
        "POST",
        SpanKind::Client,
        &customer,
        vec![
            KeyValue::new(semconv::HTTP_REQUEST_METHOD, "POST"),
            KeyValue::new(semconv::URL_FULL, url.to_owned()),
        ],
    );
    let mut headers = HeaderMap::new();
    inject_http(span.context(), &mut headers);
    let body = serde_json::json!({
        "item": format!("product-{}", n % 100),
        "quantity": rand::rng().random_range(1..=10),
    });
    let sent = span
        .within(client.post(url).headers(headers).json(&body).send())
        .await;
    // The log lines below carry the span's ids.
    let _current = span.context().clone().attach();
    let (status, available) = match sent {
        Ok(response) => {
            let status = response.status();
            span.span().set_attribute(KeyValue::new(
                semconv::HTTP_RESPONSE_STATUS_CODE,
                i64::from(status.as_u16()),
            ));
            if status.is_client_error() || status.is_server_error() {
                span.span().set_status(Status::error(status.to_string()));
                tracing::warn!(status = status.as_u16(), "order not accepted");
            }
            (status.as_u16(), !asks_to_retry_later(status))
        }
        Err(err) => {
            let cause = error_chain(&err);
            record_exception(&span.span(), "RequestError", &cause);
            tracing::warn!(error = %cause, "sending an order failed");
            (0, false)
        }
    };
    metrics
        .http_responses
        .get_or_create(&StatusLabel { status })
        .inc();
    available
}

/// Most customers are on the free tier, few on premium: 60, 30 and 10 in 100.
fn customer_tier() -> &'static str {
    let [free, standard, premium] = CUSTOMER_TIERS;
    match rand::rng().random_range(0..100) {
        0..60 => free,
        60..90 => standard,
        _ => premium,
    }
}

/// Answers meaning "overloaded or a dependency is down": sending more only adds to the problem.
/// A plain 500 is an order's own failure (e.g. an injected fault) and does not pause sending.
fn asks_to_retry_later(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// Pauses after the api failed to take an order, doubling the pause (up to [`MAX_PAUSE`]) while
/// failures go on. Failures of requests already in flight when a pause began do not lengthen it.
#[derive(Default)]
struct Backoff {
    /// The current pause and when it ends; `None` after a success.
    pause: Option<(Duration, Instant)>,
}

impl Backoff {
    fn paused(&self, now: Instant) -> bool {
        self.pause.is_some_and(|(_, until)| now < until)
    }

    /// Records a failure; returns the pause it starts, if it starts one.
    fn failed(&mut self, now: Instant) -> Option<Duration> {
        if self.paused(now) {
            return None;
        }
        let pause = self
            .pause
            .map_or(FIRST_PAUSE, |(last, _)| (last * 2).min(MAX_PAUSE));
        self.pause = Some((pause, now + pause));
        Some(pause)
    }

    fn succeeded(&mut self) {
        self.pause = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_pause_with_growing_pauses_until_an_order_goes_through() {
        let start = Instant::now();
        let mut backoff = Backoff::default();
        assert!(!backoff.paused(start));
        assert_eq!(backoff.failed(start), Some(FIRST_PAUSE));
        assert!(backoff.paused(start + FIRST_PAUSE / 2));
        // Requests that were in flight fail too: the pause stays as it is.
        assert_eq!(backoff.failed(start + FIRST_PAUSE / 2), None);
        let after = start + FIRST_PAUSE;
        assert!(!backoff.paused(after));
        assert_eq!(backoff.failed(after), Some(FIRST_PAUSE * 2));
        let mut now = after;
        for _ in 0..10 {
            now += MAX_PAUSE;
            backoff.failed(now);
        }
        assert!(backoff.paused(now + MAX_PAUSE - Duration::from_millis(1)));
        assert!(!backoff.paused(now + MAX_PAUSE));
        backoff.succeeded();
        assert!(!backoff.paused(now));
        assert_eq!(backoff.failed(now), Some(FIRST_PAUSE));
    }

    #[test]
    fn only_overload_answers_pause_sending() {
        assert!(asks_to_retry_later(StatusCode::SERVICE_UNAVAILABLE));
        assert!(asks_to_retry_later(StatusCode::TOO_MANY_REQUESTS));
        assert!(!asks_to_retry_later(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!asks_to_retry_later(StatusCode::BAD_REQUEST));
        assert!(!asks_to_retry_later(StatusCode::ACCEPTED));
    }

    #[test]
    fn the_error_chain_names_the_cause() {
        let cause = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = anyhow::Error::new(cause).context("sending");
        assert_eq!(error_chain(err.as_ref()), "sending: refused");
    }
}
