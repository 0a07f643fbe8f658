//! The consumer roles (processing, notification, analytics): take an order from the input topic,
//! do the role's steps, record progress in Redis, publish to the next topic; offsets are committed
//! only after all of that (see `kafka::Consumer`).

use super::{ANALYZED_COUNTER, OrderMessage, Service, is_permanent, now_ms, order_key};
use crate::kafka::{Slot, check_headers};
use crate::metrics::OutcomeLabel;
use crate::propagation::extract_kafka;
use crate::spans::{ActiveSpan, record_exception};
use crate::store::Call;
use opentelemetry::trace::{SpanKind, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_semantic_conventions::attribute as semconv;
use rdkafka::message::{Message, OwnedMessage};
use std::sync::{Arc, LazyLock};
use tracing_lab_config::{Role, contract};

/// Records a stage's progress on the order's hash; with ARGV[4] = 1 also counts the order as
/// analysed, the first time only (HSETNX), so redelivered messages are not counted twice.
/// Only the api creates the hash: when it is gone (expired, Redis lost its data) the script
/// writes nothing and returns 0. Each script is hashed once (`EVALSHA` sends its SHA-1), not once
/// a message.
static RECORD_PROGRESS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'status', ARGV[3])
if ARGV[4] == '1' and redis.call('HSETNX', KEYS[1], 'analyzed', 1) == 1 then
  redis.call('INCR', KEYS[2])
end
return 1
",
    )
});

/// Marks the order failed on the api's hash, if it still exists (a missing one stays missing).
static MARK_FAILED: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'status', ARGV[1]) end",
    )
});

/// The span name and steps of a role, as in the original lab.
pub fn steps(role: Role) -> (&'static str, &'static [&'static str]) {
    let steps: &[&str] = match role {
        Role::Api => &["input_validation", "audit_logging"],
        Role::Processing => &["data_transformation", "business_logic"],
        Role::Notification => &["message_formatting"],
        Role::Analytics => &["data_analysis"],
    };
    (role.order_span(), steps)
}

/// Why a message was not handled.
enum Failure {
    /// The message itself is malformed: skipped.
    Invalid(String),
    /// Retrying cannot help: skipped, and `/ready` reports it.
    Permanent(anyhow::Error),
    /// A dependency is away: retried.
    Temporary(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        if is_permanent(&err) {
            Self::Permanent(err)
        } else {
            Self::Temporary(err)
        }
    }
}

/// Handles one message. `Err` means "retry" (a dependency failed). A malformed message, a
/// permanent error or an injected failure is handled (`Ok`): recorded on the span and in the log
/// with the message's topic, partition and offset, and not retried.
pub async fn handle(
    service: Arc<Service>,
    message: Arc<OwnedMessage>,
    slot: Slot,
) -> anyhow::Result<()> {
    let role = service.role;
    let (span_name, steps) = steps(role);
    let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
    let queue_wait_ms = message
        .timestamp()
        .to_millis()
        .map(|sent| (now_ms() - sent).max(0));
    let mut attributes = vec![
        KeyValue::new(semconv::MESSAGING_SYSTEM, "kafka"),
        KeyValue::new(semconv::MESSAGING_OPERATION_TYPE, "process"),
        KeyValue::new(semconv::MESSAGING_OPERATION_NAME, "process"),
        KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, topic.to_owned()),
        KeyValue::new(semconv::MESSAGING_CONSUMER_GROUP_NAME, role.name()),
        KeyValue::new(
            semconv::MESSAGING_DESTINATION_PARTITION_ID,
            partition.to_string(),
        ),
        KeyValue::new(semconv::MESSAGING_KAFKA_OFFSET, offset),
        KeyValue::new(
            semconv::MESSAGING_MESSAGE_BODY_SIZE,
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
        attributes.push(KeyValue::new(
            semconv::MESSAGING_KAFKA_MESSAGE_KEY,
            key.to_owned(),
        ));
    }
    // Without (valid) trace headers the span starts a trace of its own.
    let headers = check_headers(message.headers());
    let parent = match &headers {
        Ok(headers) => service.incoming_context(|| extract_kafka(Some(headers))),
        Err(_) => Context::new(),
    };
    let span = ActiveSpan::start(
        &service.tracer,
        span_name,
        SpanKind::Consumer,
        &parent,
        attributes,
    );

    let outcome = match headers {
        Ok(_) => span.within(process(&service, &message, steps, slot)).await,
        Err(invalid) => Err(Failure::Invalid(invalid.to_string())),
    };
    let (label, result) = match outcome {
        Ok(label) => (label, Ok(())),
        Err(Failure::Invalid(reason)) => {
            record_exception(&span.span(), "InvalidMessage", &reason);
            tracing::error!(
                topic,
                partition,
                offset,
                reason,
                "skipping a malformed message"
            );
            ("invalid", Ok(()))
        }
        Err(Failure::Permanent(err)) => {
            let error = format!("{err:#}");
            record_exception(&span.span(), "PermanentError", &error);
            tracing::error!(
                topic,
                partition,
                offset,
                error,
                "skipping a message: retrying cannot fix this error"
            );
            service
                .permanent_errors
                .record(format!("{topic}/{partition}@{offset}: {error}"));
            ("skipped", Ok(()))
        }
        Err(Failure::Temporary(err)) => {
            record_exception(&span.span(), "DependencyError", &format!("{err:#}"));
            ("retried", Err(err))
        }
    };
    service
        .metrics
        .messages
        .get_or_create(&OutcomeLabel { outcome: label })
        .inc();
    result
}

async fn process(
    service: &Service,
    message: &OwnedMessage,
    steps: &[&'static str],
    slot: Slot,
) -> Result<&'static str, Failure> {
    let cx = Context::current();
    let span = cx.span();
    // librdkafka gives an empty value as `Some(&[])` or `None`, depending on the producer.
    let payload = message.payload().filter(|p| !p.is_empty());
    let order: OrderMessage = match payload.map(serde_json::from_slice) {
        Some(Ok(order)) => order,
        Some(Err(err)) => {
            return Err(Failure::Invalid(format!("payload is not an order: {err}")));
        }
        None => return Err(Failure::Invalid("empty payload".into())),
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
    let mut redis = service.store.connection();
    if let Some(fault) = service.injected_error() {
        record_exception(&span, contract::INJECTED_FAULT, &fault.to_string());
        tracing::warn!(order_id = %order.order_id, "injected failure: the order stops here");
        let _: () = service
            .store
            .traced(
                Call::MARK_FAILED,
                MARK_FAILED
                    .key(&key)
                    .arg(format!("failed_in_{role}"))
                    .invoke_async(&mut redis),
            )
            .await
            .map_err(anyhow::Error::from)?;
        return Ok("failed");
    }

    // One script, so progress and the once-per-order analysed count change together.
    let count_once = i32::from(service.role == Role::Analytics);
    let recorded: i32 = service
        .store
        .traced(
            Call::RECORD_PROGRESS,
            RECORD_PROGRESS
                .key(&key)
                .key(ANALYZED_COUNTER)
                .arg(format!("{role}_at_ms"))
                .arg(now_ms())
                .arg(role)
                .arg(count_once)
                .invoke_async(&mut redis),
        )
        .await
        .map_err(anyhow::Error::from)?;
    if recorded == 0 {
        span.add_event(
            "order record missing",
            vec![KeyValue::new("order.key", key.clone())],
        );
        tracing::warn!(
            order_id = %order.order_id,
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            "the order's record is gone from Redis; progress not recorded"
        );
    }

    if service.producer.is_some() {
        let acknowledged = service.publish(&order)?;
        // The work is done: the next message may start while the broker acknowledges this one.
        slot.release();
        acknowledged.await?;
    }
    tracing::info!(
        order_id = %order.order_id,
        partition = message.partition(),
        offset = message.offset(),
        "order handled"
    );
    Ok("ok")
}
