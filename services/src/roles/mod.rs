//! The five roles and what they share: the order message, workload steps, injected faults, and
//! publishing to the next topic with the trace context in the message headers.

pub mod api;
pub mod loadgen;
pub mod stage;

use crate::kafka::{self, Delivered, NotAcknowledged, Producer};
use crate::metrics::{Metrics, WorkloadLabels};
use crate::propagation::kafka_headers;
use crate::quote::QuoteClient;
use crate::resources::ResourceMonitor;
use crate::spans::{ActiveSpan, record_exception};
use crate::store::Store;
use crate::workload::Simulator;
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};
use opentelemetry_semantic_conventions::attribute as semconv;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing_lab_config::{Faults, Role, contract};

/// What travels through the topics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OrderMessage {
    pub order_id: String,
    pub item: String,
    pub quantity: u32,
    pub created_at_ms: i64,
}

/// Redis key of an order's hash.
pub fn order_key(order_id: &str) -> String {
    format!("order:{order_id}")
}

/// Counter of orders analysed at least once (each order counted once, despite redelivery).
pub const ANALYZED_COUNTER: &str = "orders:analyzed";

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What every role uses to do its work.
pub struct Service {
    pub role: Role,
    pub faults: Faults,
    pub simulator: Simulator,
    pub monitor: Arc<ResourceMonitor>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    pub producer: Option<Producer>,
    /// The quote client, in the api when the lab turns the hop on.
    pub quote: Option<QuoteClient>,
    pub tracer: BoxedTracer,
    pub permanent_errors: Arc<PermanentErrors>,
}

/// How long `/ready` reports a permanent error after it happened.
const REPORT_PERMANENT_FOR: Duration = Duration::from_secs(60);

/// The last error that retrying cannot fix (a rejected Redis command or Kafka record). `/ready`
/// fails for a minute after one, so it shows in `kubectl get pods` while the messages move on.
#[derive(Default)]
pub struct PermanentErrors(Mutex<Option<(Instant, String)>>);

impl PermanentErrors {
    pub fn record(&self, what: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), what));
    }

    /// `Err` naming the last permanent error while it is recent.
    pub fn check(&self) -> anyhow::Result<()> {
        match &*self.0.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((at, what)) if at.elapsed() < REPORT_PERMANENT_FOR => anyhow::bail!(
                "permanent error {} s ago, message skipped: {what}",
                at.elapsed().as_secs()
            ),
            _ => Ok(()),
        }
    }
}

/// Whether retrying cannot help: Redis rejected the command itself (`WRONGTYPE`, a script
/// error) or the broker rejected the record. Connection trouble and timeouts are temporary.
pub fn is_permanent(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        if let Some(redis) = cause.downcast_ref::<redis::RedisError>() {
            matches!(
                redis.kind(),
                redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
            ) && matches!(redis.retry_method(), redis::RetryMethod::NoRetry)
        } else if let Some(kafka) = cause.downcast_ref::<NotAcknowledged>() {
            kafka
                .error
                .rdkafka_error_code()
                .is_some_and(kafka::is_permanent)
        } else {
            false
        }
    })
}

/// A fault injected on purpose (`faults.errorRate`).
#[derive(Debug, thiserror::Error)]
#[error("injected failure in {0} (faults.errorRate)")]
pub struct InjectedFault(pub &'static str);

impl Service {
    /// One named step (`input_validation`, `data_transformation`, ...): a child span running one
    /// piece of simulated work, carrying `workload.*` and `resource.*` attributes.
    /// With workloads disabled there is nothing to show: no span at all (cheaper at high rates).
    pub async fn step(&self, name: &'static str) -> anyhow::Result<()> {
        if !self.simulator.enabled() {
            return Ok(());
        }
        self.work_in(&ActiveSpan::child(&self.tracer, name), name)
            .await
    }

    /// Runs one piece of simulated work inside `span` and puts its figures on it.
    pub async fn work_in(&self, span: &ActiveSpan, name: &'static str) -> anyhow::Result<()> {
        let Some((kind, intensity)) = self.simulator.choose() else {
            return Ok(());
        };
        let started = Instant::now();
        let outcome = span.within(self.simulator.run(kind, intensity)).await;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(err) => {
                record_exception(&span.span(), "WorkloadError", &format!("{err:#}"));
                return Err(err.context(format!("{name}: {} work", kind.name())));
            }
        };
        let attributes = [
            KeyValue::new("workload.type", kind.name()),
            KeyValue::new("workload.intensity", intensity.name()),
            KeyValue::new("workload.operation", outcome.operation),
            KeyValue::new(
                "workload.duration_ms",
                (outcome.usage.wall.as_secs_f64() * 1e5).round() / 100.0,
            ),
            KeyValue::new("workload.items_processed", outcome.items as i64),
        ];
        span.span()
            .set_attributes(attributes.into_iter().chain(self.monitor.span_attributes(
                started,
                Instant::now(),
                outcome.usage,
            )));
        self.metrics
            .workload_seconds
            .get_or_create(&WorkloadLabels {
                operation: outcome.operation,
                intensity: intensity.name(),
            })
            .observe(outcome.usage.wall.as_secs_f64());
        Ok(())
    }

    /// `faults.extraLatencyMs` as its own span, so it is visible as such in the trace. Dropping
    /// the future (drain deadline, revoked partition) cancels it.
    pub async fn injected_latency(&self) {
        let ms = self.faults.extra_latency_ms;
        if ms > 0 {
            let span = ActiveSpan::start(
                &self.tracer,
                contract::INJECTED_LATENCY_SPAN,
                SpanKind::Internal,
                &Context::current(),
                vec![KeyValue::new("fault.latency_ms", ms as i64)],
            );
            span.within(tokio::time::sleep(Duration::from_millis(ms)))
                .await;
        }
    }

    /// The context a call arrived with, unless `faults.dropTraceContext` ignores it.
    pub fn incoming_context(&self, extract: impl FnOnce() -> Context) -> Context {
        if self.faults.drop_trace_context {
            Context::new()
        } else {
            extract()
        }
    }

    /// Draws whether this call fails on purpose.
    pub fn injected_error(&self) -> Option<InjectedFault> {
        let rate = self.faults.error_rate;
        (rate > 0.0 && rand::rng().random::<f64>() < rate)
            .then_some(InjectedFault(self.role.name()))
    }

    /// Publishes `order` to this role's output topic in a producer span whose context travels in
    /// the message headers. Returns once the record is queued, with a future that resolves when
    /// the broker acknowledged it (the span ends then). A failure carries [`NotAcknowledged`],
    /// which says whether the record may be in the topic anyway.
    pub fn publish(
        &self,
        order: &OrderMessage,
    ) -> anyhow::Result<impl Future<Output = anyhow::Result<Delivered>> + Send + use<>> {
        let (Some(producer), Some(topic)) = (&self.producer, self.role.output_topic()) else {
            anyhow::bail!("{} publishes nothing", self.role);
        };
        let payload = serde_json::to_vec(order)?;
        let (host, port) = producer.server();
        let span = ActiveSpan::start(
            &self.tracer,
            format!("send {topic}"),
            SpanKind::Producer,
            &Context::current(),
            vec![
                KeyValue::new(semconv::MESSAGING_SYSTEM, "kafka"),
                KeyValue::new(semconv::MESSAGING_OPERATION_TYPE, "send"),
                KeyValue::new(semconv::MESSAGING_OPERATION_NAME, "send"),
                KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, topic),
                KeyValue::new(semconv::MESSAGING_KAFKA_MESSAGE_KEY, order.order_id.clone()),
                KeyValue::new(semconv::MESSAGING_MESSAGE_BODY_SIZE, payload.len() as i64),
                KeyValue::new(semconv::SERVER_ADDRESS, host.to_owned()),
                KeyValue::new(semconv::SERVER_PORT, i64::from(port)),
            ],
        );
        let headers = kafka_headers(span.context());
        let acknowledged = producer
            .queue(topic, &order.order_id, &payload, headers)
            .inspect_err(|err| record_exception(&span.span(), "KafkaError", &err.to_string()))?;
        Ok(async move {
            match span.within(acknowledged.wait()).await {
                Ok(delivered) => {
                    span.span().set_attributes([
                        KeyValue::new(
                            semconv::MESSAGING_DESTINATION_PARTITION_ID,
                            delivered.partition.to_string(),
                        ),
                        KeyValue::new(semconv::MESSAGING_KAFKA_OFFSET, delivered.offset),
                    ]);
                    Ok(delivered)
                }
                Err(err) => {
                    record_exception(&span.span(), "KafkaError", &err.to_string());
                    Err(err.into())
                }
            }
        })
    }
}

/// Retries `connect` until it succeeds or `stop` is cancelled (dependencies may start later
/// than the service, as in Kubernetes).
pub async fn until_connected<T, F, Fut>(
    what: &str,
    stop: &tokio_util::sync::CancellationToken,
    mut connect: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut pause = Duration::from_millis(200);
    loop {
        match connect().await {
            Ok(value) => return Ok(value),
            Err(err) => tracing::warn!(error = format!("{err:#}"), "{what} failed; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => anyhow::bail!("stopped before {what} succeeded"),
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}
