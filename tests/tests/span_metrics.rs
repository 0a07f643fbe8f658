//! RED metrics from spans, as a lab with `spanMetrics` renders them: the Collector's spanmetrics
//! connector, Prometheus's OTLP receiver and Jaeger's metrics API, all real programs started from
//! the rendered objects. Spans of known durations and statuses go in; Jaeger's Monitor tab API
//! gives back their percentiles and error share, per operation and span kind, counting the spans
//! tail sampling drops too.

use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_lab_tests::TraceBackend;
use tracing_lab_tests::jaeger::Red;
use tracing_lab_tests::lab::{rendered, stored};
use tracing_lab_tests::poll::eventually;

/// The spans of one pod of a service, each `(operation, kind, duration, failed)`, ended now.
fn export(
    endpoint: &str,
    (service, pod): (&str, &str),
    spans: &[(&'static str, SpanKind, Duration, bool)],
) {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .with_attribute(KeyValue::new("k8s.pod.name", pod.to_owned()))
                .build(),
        )
        .build();
    let tracer = provider.tracer("span-metrics");
    let end = SystemTime::now();
    for (name, kind, duration, failed) in spans {
        let mut span = tracer
            .span_builder(*name)
            .with_kind(kind.clone())
            .with_start_time(end - *duration)
            .with_attributes([KeyValue::new("test.case", "span-metrics")])
            .start(&tracer);
        if *failed {
            span.set_status(Status::error("injected"));
        }
        span.end_with_timestamp(end);
    }
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn jaeger_reads_percentiles_and_errors_per_operation_from_the_span_metrics() {
    // Tail sampling keeps only errors: the metrics count every span all the same.
    let lab = stored(
        "lab",
        "metrics",
        serde_json::json!({"spanMetrics": {"enabled": true},
            "sampling": {"tail": {"enabled": true, "keepErrors": true, "latencyThresholdMs": 0, "percentage": 0.0,
                "decisionWaitSeconds": 1}}}),
    )
    .unwrap();
    let (children, loopback) = rendered(&lab).unwrap();
    let backend = TraceBackend::start_rendered(&children, &loopback)
        .await
        .unwrap();
    let endpoint = backend.otlp_endpoint().to_owned();
    let send = |pod: (&'static str, &'static str),
                spans: Vec<(&'static str, SpanKind, Duration, bool)>| {
        let endpoint = endpoint.clone();
        tokio::task::spawn_blocking(move || export(&endpoint, pod, &spans))
    };
    let ms = Duration::from_millis;

    // A rate needs two samples of a counter: one span of each first, so that each series exists
    // before the spans that are measured. The connector sends every 5 s.
    send(
        ("processing", "processing-a"),
        vec![("process_order", SpanKind::Consumer, ms(90), false)],
    )
    .await
    .unwrap();
    send(
        ("api", "api-a"),
        vec![("create_order", SpanKind::Server, ms(5), false)],
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;

    // processing: 36 quick messages and 4 slow ones, 2 of the slow failed; one step span each.
    // Two pods share them, as after `kubectl scale`: one series per service all the same.
    let mut processing = Vec::new();
    for i in 0..40 {
        let slow = i % 10 == 9;
        let duration = if slow { ms(1900) } else { ms(90) };
        processing.push((
            "process_order",
            SpanKind::Consumer,
            duration,
            slow && i < 20,
        ));
        processing.push(("data_transformation", SpanKind::Internal, ms(20), false));
    }
    let second = processing.split_off(40);
    send(("processing", "processing-a"), processing)
        .await
        .unwrap();
    send(("processing", "processing-b"), second).await.unwrap();
    send(
        ("api", "api-a"),
        (0..20)
            .map(|_| ("create_order", SpanKind::Server, ms(5), false))
            .collect(),
    )
    .await
    .unwrap();

    let query = backend.query();
    let minute = Duration::from_secs(60);
    let (p50, p95, errors) = eventually(
        "Jaeger's metrics of process_order",
        Duration::from_secs(40),
        || async {
            let metric =
                |red| query.operation_metrics(red, "processing", "consumer", minute, minute);
            let p50 = metric(Red::Latency { quantile: 0.5 }).await;
            let p95 = metric(Red::Latency { quantile: 0.95 }).await;
            let errors = metric(Red::Errors).await;
            let (p50, p95, errors) = match (p50, p95, errors) {
                (Ok(a), Ok(b), Ok(c)) => (a, b, c),
                other => return Err(format!("{other:?}")),
            };
            let op = |m: &std::collections::BTreeMap<String, f64>| m.get("process_order").copied();
            match (op(&p50), op(&p95), op(&errors)) {
                // The measured spans are in when the slow ones show.
                (Some(p50), Some(p95), Some(errors)) if p95 > 1000.0 && errors > 0.0 => {
                    Ok((p50, p95, errors))
                }
                _ => Err(format!("p50 {p50:?}, p95 {p95:?}, errors {errors:?}")),
            }
        },
    )
    .await;
    eprintln!("process_order: p50 {p50:.0} ms, p95 {p95:.0} ms, errors {errors:.3}");
    // Percentiles interpolate inside the bucket that holds them (90 ms lies in (50, 100], 1.9 s
    // in (1.75 s, 2 s]), from rates Prometheus extrapolates to the window's edges: the quick
    // spans make the median, the slow tenth the p95.
    assert!(p50 > 50.0 && p50 <= 100.0, "p50 {p50}");
    assert!(p95 > 1500.0 && p95 <= 2000.0, "p95 {p95}");
    assert!((errors - 0.05).abs() < 0.005, "2 of 40 failed: {errors}");

    // The span kind selects: the steps are internal, the api's spans are server spans.
    let consumer = query
        .operation_metrics(Red::Calls, "processing", "consumer", minute, minute)
        .await
        .unwrap();
    assert_eq!(consumer.keys().collect::<Vec<_>>(), ["process_order"]);
    let internal = query
        .operation_metrics(Red::Calls, "processing", "internal", minute, minute)
        .await
        .unwrap();
    assert_eq!(internal.keys().collect::<Vec<_>>(), ["data_transformation"]);
    let calls = consumer["process_order"];
    assert!(calls > 0.0, "process_order calls/s {calls}");
    let server = query
        .operation_metrics(Red::Calls, "api", "server", minute, minute)
        .await
        .unwrap();
    assert_eq!(server.keys().collect::<Vec<_>>(), ["create_order"]);
    // 20 spans against process_order's 40, over the same window.
    let ratio = server["create_order"] / calls;
    assert!(
        (ratio - 0.5).abs() < 0.05,
        "create_order / process_order calls: {ratio}"
    );

    // Tail sampling kept the two failed traces only; the metrics counted all 82 spans.
    let kept = query
        .find("processing", Duration::from_secs(300))
        .await
        .unwrap();
    let kept = kept.iter().filter(|s| s.name == "process_order").count();
    assert_eq!(kept, 2, "traces tail sampling kept");
}
