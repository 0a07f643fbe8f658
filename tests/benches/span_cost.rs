//! What one traced order costs in spans alone (prints figures): the eight spans an order makes
//! with workloads off (HTTP server, validation, three producer and three consumer spans, with
//! their attributes and the trace context injected and extracted at each hop), exported over
//! OTLP/gRPC to a real receiver through the batch span processor, made three ways:
//! - the OpenTelemetry SDK's tracer, called directly: the least any code built on the
//!   `opentelemetry` crates pays;
//! - the services' own spans (`tracing_lab_service::spans`), on the provider that
//!   `tracing_lab_telemetry::init` installs, as in the services;
//! - `tracing` spans bridged by `tracing-opentelemetry` (as the operator makes its spans), on the
//!   same provider.
//!
//! CPU is counted on every thread of this process except the receiver's, so it includes the
//! batch processor and the exporter.
//!
//! `cargo bench -p tracing-lab-tests --bench span_cost`

use anyhow::Result;
use opentelemetry::global::BoxedTracer;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use std::time::Duration;
use tracing_lab_service::spans::{self, ActiveSpan};
use tracing_lab_tests::{OtlpReceiver, procfs};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

const ORDERS: usize = 20_000;
const SPANS_PER_ORDER: usize = 8;
const ROUNDS: usize = 3;

/// CPU time of this process's threads, the receiver's excluded.
fn cpu_without_receiver() -> Result<Duration> {
    Ok(procfs::threads_cpu(None)?
        .into_iter()
        .filter(|(name, _)| name != "otlp-receiver")
        .map(|(_, cpu)| cpu)
        .sum())
}

fn consumer_attributes(i: usize) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", "kafka"),
        KeyValue::new("messaging.operation.type", "process"),
        KeyValue::new("messaging.operation.name", "process"),
        KeyValue::new("messaging.destination.name", "orders"),
        KeyValue::new("messaging.consumer.group.name", "processing"),
        KeyValue::new("messaging.destination.partition.id", (i % 6).to_string()),
        KeyValue::new("messaging.kafka.offset", i as i64),
        KeyValue::new("messaging.message.body.size", 120_i64),
        KeyValue::new("messaging.queue_wait_ms", 3_i64),
        KeyValue::new("order.id", format!("{i:08}-0000-4000-8000-000000000000")),
        KeyValue::new("order.quantity", 3_i64),
    ]
}

fn producer_attributes(i: usize) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", "kafka"),
        KeyValue::new("messaging.operation.type", "send"),
        KeyValue::new("messaging.operation.name", "send"),
        KeyValue::new("messaging.destination.name", "orders"),
        KeyValue::new(
            "messaging.kafka.message.key",
            format!("{i:08}-0000-4000-8000-000000000000"),
        ),
        KeyValue::new("messaging.message.body.size", 120_i64),
        KeyValue::new("messaging.destination.partition.id", (i % 6).to_string()),
        KeyValue::new("messaging.kafka.offset", i as i64),
    ]
}

fn server_attributes(i: usize) -> Vec<KeyValue> {
    vec![
        KeyValue::new("http.request.method", "POST"),
        KeyValue::new("http.route", "/order"),
        KeyValue::new("url.path", "/order"),
        KeyValue::new("url.scheme", "http"),
        KeyValue::new("order.id", format!("{i:08}-0000-4000-8000-000000000000")),
        KeyValue::new("order.quantity", 3_i64),
        KeyValue::new("http.response.status_code", 202_i64),
    ]
}

/// A hop's headers: inject on one side, extract on the other, as over Kafka.
fn hop(propagator: &TraceContextPropagator, cx: &Context) -> Context {
    let mut headers = HashMap::new();
    propagator.inject_context(cx, &mut headers);
    propagator.extract(&headers)
}

/// One order with the SDK's API.
fn order_sdk(tracer: &opentelemetry_sdk::trace::SdkTracer, p: &TraceContextPropagator, i: usize) {
    let mut server = tracer
        .span_builder("create_order")
        .with_kind(SpanKind::Server)
        .with_attributes(server_attributes(i))
        .start_with_context(tracer, &Context::new());
    let server_cx = Context::new().with_remote_span_context(server.span_context().clone());
    tracer
        .span_builder("input_validation")
        .start_with_context(tracer, &server_cx)
        .end();
    let mut parent = server_cx;
    for step in ["process_order", "notify_order", "analyze_order"] {
        let mut producer = tracer
            .span_builder("send orders")
            .with_kind(SpanKind::Producer)
            .with_attributes(producer_attributes(i))
            .start_with_context(tracer, &parent);
        let sent = Context::new().with_remote_span_context(producer.span_context().clone());
        let received = hop(p, &sent);
        producer.end();
        let consumer = tracer
            .span_builder(step)
            .with_kind(SpanKind::Consumer)
            .with_attributes(consumer_attributes(i))
            .start_with_context(tracer, &received);
        parent = Context::new().with_remote_span_context(consumer.span_context().clone());
        drop(consumer);
    }
    server.end();
}

/// One order with the services' spans.
fn order_services(tracer: &BoxedTracer, p: &TraceContextPropagator, i: usize) {
    let server = ActiveSpan::start(
        tracer,
        "create_order",
        SpanKind::Server,
        &Context::new(),
        server_attributes(i),
    );
    drop(ActiveSpan::start(
        tracer,
        "input_validation",
        SpanKind::Internal,
        server.context(),
        Vec::new(),
    ));
    let mut parent = server.context().clone();
    for step in ["process_order", "notify_order", "analyze_order"] {
        let producer = ActiveSpan::start(
            tracer,
            "send orders",
            SpanKind::Producer,
            &parent,
            producer_attributes(i),
        );
        let received = hop(p, producer.context());
        drop(producer);
        let consumer = ActiveSpan::start(
            tracer,
            step,
            SpanKind::Consumer,
            &received,
            consumer_attributes(i),
        );
        parent = consumer.context().clone();
    }
}

/// One order with bridged `tracing` spans.
fn order_bridged(p: &TraceContextPropagator, i: usize) {
    let server = tracing::info_span!("create_order", otel.kind = "server");
    server.set_parent(Context::new()).ok();
    for kv in server_attributes(i) {
        server.set_attribute(kv.key, kv.value);
    }
    let _entered = server.enter();
    drop(tracing::info_span!("step", otel.name = "input_validation"));
    let mut parent = server.context();
    for step in ["process_order", "notify_order", "analyze_order"] {
        let producer =
            tracing::info_span!("publish", otel.name = "send orders", otel.kind = "producer");
        producer.set_parent(parent).ok();
        for kv in producer_attributes(i) {
            producer.set_attribute(kv.key, kv.value);
        }
        let received = hop(p, &producer.context());
        drop(producer);
        let consumer = tracing::info_span!("consume", otel.name = step, otel.kind = "consumer");
        consumer.set_parent(received).ok();
        for kv in consumer_attributes(i) {
            consumer.set_attribute(kv.key, kv.value);
        }
        parent = consumer.context();
    }
}

/// Runs `order` ORDERS times and waits until the receiver has every span; CPU µs per order.
async fn measure(receiver: &OtlpReceiver, order: impl Fn(usize)) -> Result<f64> {
    receiver.clear();
    let before = cpu_without_receiver()?;
    for i in 0..ORDERS {
        order(i);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while receiver.count() < ORDERS * SPANS_PER_ORDER {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{} of {} spans arrived",
            receiver.count(),
            ORDERS * SPANS_PER_ORDER
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let used = cpu_without_receiver()? - before;
    Ok(used.as_secs_f64() * 1e6 / ORDERS as f64)
}

fn print(label: &str, runs: &mut [f64]) {
    runs.sort_by(f64::total_cmp);
    let best = runs[0];
    println!(
        "{label}: {best:5.1} us CPU per order ({:.2} us per span; best of {ROUNDS}: {runs:.1?})",
        best / SPANS_PER_ORDER as f64
    );
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // SAFETY: set before any other thread exists. Both ways export each batch within 200 ms, and
    // the queue holds a whole round (spans come faster here than any service makes them, and a
    // dropped span would be work not counted).
    unsafe {
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "200");
        std::env::set_var(
            "OTEL_BSP_MAX_QUEUE_SIZE",
            (ORDERS * SPANS_PER_ORDER).to_string(),
        );
    }
    runtime.block_on(async {
        let receiver = OtlpReceiver::start().await?;
        let propagator = TraceContextPropagator::new();
        println!(
            "spans of one order ({SPANS_PER_ORDER} spans, workloads off), exported over OTLP/gRPC with the default batch settings:"
        );

        let exporter = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(receiver.grpc_endpoint())
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("span-cost");
        let mut runs = Vec::new();
        for _ in 0..ROUNDS {
            runs.push(measure(&receiver, |i| order_sdk(&tracer, &propagator, i)).await?);
        }
        print("OpenTelemetry SDK tracer, direct", &mut runs);
        tokio::task::spawn_blocking(move || provider.shutdown()).await??;

        // SAFETY: the threads running now do not read the environment.
        unsafe {
            std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc_endpoint());
            std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
            std::env::set_var("RUST_LOG", "warn");
        }
        let guard = tracing_lab_telemetry::init("span-cost")?;
        let tracer = spans::tracer();
        let (mut ours, mut bridged) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            ours.push(measure(&receiver, |i| order_services(&tracer, &propagator, i)).await?);
            bridged.push(measure(&receiver, |i| order_bridged(&propagator, i)).await?);
        }
        print("the services' spans             ", &mut ours);
        print("tracing + tracing-opentelemetry ", &mut bridged);
        tokio::task::spawn_blocking(move || guard.shutdown()).await??;
        Ok(())
    })
}
