//! The consumer roles (processing, notification, analytics): take an order from the input topic,
//! do the role's steps, record progress in Redis, publish to the next topic; offsets are committed
//! only after all of that (see `kafka::Consumer`).

use super::{ANALYZED_COUNTER, OrderMessage, Service, now_ms, order_key};
use crate::metrics::OutcomeLabel;
use crate::propagation::extract_kafka;
use crate::spans::{ActiveSpan, record_exception};
use opentelemetry::trace::{SpanKind, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};
use rdkafka::message::{Message, OwnedMessage};
use std::sync::Arc;
use tracing_lab_config::Role;

/// Records a stage's progress on the order's hash; with ARGV[4] = 1 also counts the order as
/// analysed, the first time only (HSETNX), so redelivered messages are not counted twice.
const RECORD_PROGRESS: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'status', ARGV[3])
if ARGV[4] == '1' and redis.call('HSETNX', KEYS[1], 'analyzed', 1) == 1 then
  redis.call('INCR', KEYS[2])
end
";

/// The span name and steps of a consumer role, as in the original lab.
pub fn steps(role: Role) -> (&'static str, &'static [&'static str]) {
    match role {
        Role::Api => ("create_order", &["input_validation", "audit_logging"]),
        Role::Processing => ("process_order", &["data_transformation", "business_logic"]),
        Role::Notification => ("notify_order", &["message_formatting"]),
        Role::Analytics => ("analyze_order", &["data_analysis"]),
    }
}

/// Handles one message. `Err` means "retry" (a dependency failed); a malformed message or an
/// injected failure is handled (`Ok`): recorded on the span, not retried forever.
pub async fn handle(service: Arc<Service>, message: Arc<OwnedMessage>) -> anyhow::Result<()> {
    let role = service.role;
    let (span_name, steps) = steps(role);
    let queue_wait_ms = message
        .timestamp()
        .to_millis()
        .map(|sent| (now_ms() - sent).max(0));
    let mut attributes = vec![
        KeyValue::new("messaging.system", "kafka"),
        KeyValue::new("messaging.operation.type", "process"),
        KeyValue::new("messaging.operation.name", "process"),
        KeyValue::new("messaging.destination.name", message.topic().to_owned()),
        KeyValue::new("messaging.consumer.group.name", role.name()),
        KeyValue::new(
            "messaging.destination.partition.id",
            message.partition().to_string(),
        ),
        KeyValue::new("messaging.kafka.offset", message.offset()),
        KeyValue::new(
            "messaging.message.body.size",
            message.payload().map_or(0, <[u8]>::len) as i64,
        ),
    ];
    if let Some(wait) = queue_wait_ms {
        // Head-of-line blocking shows here: time between publish and the start of processing.
        attributes.push(KeyValue::new("messaging.queue_wait_ms", wait));
        service
            .metrics
            .queue_wait_seconds
            .observe(wait as f64 / 1000.0);
    }
    if let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) {
        attributes.push(KeyValue::new("messaging.kafka.message.key", key.to_owned()));
    }
    // Without (valid) trace headers the span starts a trace of its own.
    let span = ActiveSpan::start(
        &service.tracer,
        span_name,
        SpanKind::Consumer,
        &extract_kafka(message.headers()),
        attributes,
    );

    let outcome = span.within(process(&service, &message, steps)).await;
    let label = match &outcome {
        Ok(label) => *label,
        Err(err) => {
            record_exception(&span.span(), "DependencyError", &format!("{err:#}"));
            "retried"
        }
    };
    service
        .metrics
        .messages
        .get_or_create(&OutcomeLabel { outcome: label })
        .inc();
    outcome.map(|_| ())
}

async fn process(
    service: &Service,
    message: &OwnedMessage,
    steps: &[&'static str],
) -> anyhow::Result<&'static str> {
    let cx = Context::current();
    let span = cx.span();
    let order: OrderMessage = match message.payload().map(serde_json::from_slice) {
        Some(Ok(order)) => order,
        Some(Err(err)) => {
            record_exception(
                &span,
                "InvalidMessage",
                &format!("payload is not an order: {err}"),
            );
            tracing::error!(
                offset = message.offset(),
                "skipping a message that is not an order"
            );
            return Ok("invalid");
        }
        None => {
            record_exception(&span, "InvalidMessage", "empty payload");
            return Ok("invalid");
        }
    };
    span.set_attributes([
        KeyValue::new("order.id", order.order_id.clone()),
        KeyValue::new("order.quantity", i64::from(order.quantity)),
    ]);

    for step in steps {
        service.step(step).await?;
    }
    service.injected_latency().await;
    let role = service.role.name();
    let key = order_key(&order.order_id);
    let mut redis = service.redis.clone();
    if let Some(fault) = service.injected_error() {
        record_exception(&span, "InjectedFault", &fault.to_string());
        tracing::warn!(order_id = %order.order_id, "injected failure: the order stops here");
        let _: () = redis::pipe()
            .hset(&key, "status", format!("failed_in_{role}"))
            .ignore()
            .query_async(&mut redis)
            .await?;
        return Ok("failed");
    }

    // One script, so progress and the once-per-order analysed count change together.
    let count_once = i32::from(service.role == Role::Analytics);
    let _: () = redis::Script::new(RECORD_PROGRESS)
        .key(&key)
        .key(ANALYZED_COUNTER)
        .arg(format!("{role}_at_ms"))
        .arg(now_ms())
        .arg(role)
        .arg(count_once)
        .invoke_async(&mut redis)
        .await?;

    if service.producer.is_some() {
        service.publish(&order).await?;
    }
    tracing::info!(order_id = %order.order_id, "order handled");
    Ok("ok")
}
