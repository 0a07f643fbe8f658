//! End to end: the four services as processes against Apache Kafka, Redis, the Collector and
//! Jaeger; traces are read through Jaeger's query API. Needs `cargo build -p tracing-lab-service`
//! and `tests/env/setup.sh`.

use tracing_lab_tests::services_lab as lab;

use lab::{Lab, light_config, post_order, post_order_with};
use std::collections::BTreeSet;
use std::time::Duration;
use tracing_lab_config::{Intensity, Role, WorkloadMix};
use tracing_lab_telemetry::baggage::CUSTOMER_TIERS;
use tracing_lab_tests::otlp::{ReceivedSpan, SpanKind, StatusCode, by_trace};

const PIPELINE_TIMEOUT: Duration = Duration::from_secs(90);
/// How far back Jaeger is searched: longer than any test.
const LOOKBACK: Duration = Duration::from_secs(600);

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

fn one<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.service_name == service && s.name == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {service}/{name} span, got {}",
        found.len()
    );
    found[0]
}

fn child_of(parent: &ReceivedSpan, child: &ReceivedSpan) {
    assert_eq!(
        child.parent_span_id.as_deref(),
        Some(parent.span_id.as_str()),
        "{}/{} must be a child of {}/{}",
        child.service_name,
        child.name,
        parent.service_name,
        parent.name
    );
}

fn assert_workload_attributes(span: &ReceivedSpan) {
    let name = format!("{}/{}", span.service_name, span.name);
    let kind = span
        .attr("workload.type")
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("{name}: workload.type"));
    assert!(["cpu_heavy", "io_heavy"].contains(&kind), "{name}: {kind}");
    let intensity = span
        .attr("workload.intensity")
        .and_then(|v| v.as_str())
        .expect("intensity");
    assert!(
        ["light", "medium"].contains(&intensity),
        "{name}: {intensity}"
    );
    let operation = span
        .attr("workload.operation")
        .and_then(|v| v.as_str())
        .expect("operation");
    let expected = match (kind, intensity) {
        ("cpu_heavy", "light") => "json_processing",
        ("cpu_heavy", _) => "hash_computation",
        ("io_heavy", "light") => "redis_basic",
        _ => "file_and_redis",
    };
    assert_eq!(operation, expected, "{name}");
    let duration = span
        .attr("workload.duration_ms")
        .and_then(|v| v.as_f64())
        .expect("duration");
    assert!(
        duration > 0.0 && duration <= span.duration().as_secs_f64() * 1000.0 + 1.0,
        "{name}: {duration}"
    );
    assert!(
        span.attr("workload.items_processed")
            .and_then(|v| v.as_i64())
            .expect("items")
            > 0,
        "{name}"
    );

    let samples = span
        .attr("resource.samples")
        .and_then(|v| v.as_i64())
        .expect("samples");
    assert!(samples >= 0);
    for key in [
        "resource.cpu.avg",
        "resource.cpu.max",
        "resource.cpu.min",
        "resource.span.cpu_percent",
    ] {
        let cpu = span
            .attr(key)
            .and_then(|v| v.as_f64())
            .unwrap_or_else(|| panic!("{name}: {key}"));
        assert!((0.0..=1000.0).contains(&cpu), "{name}: {key}={cpu}");
    }
    let (min, avg, max) = (
        span.attr("resource.memory.min_mb")
            .and_then(|v| v.as_f64())
            .expect("min"),
        span.attr("resource.memory.avg_mb")
            .and_then(|v| v.as_f64())
            .expect("avg"),
        span.attr("resource.memory.max_mb")
            .and_then(|v| v.as_f64())
            .expect("max"),
    );
    assert!(
        1.0 < min && min <= avg && avg <= max && max < 1024.0,
        "{name}: memory {min} {avg} {max}"
    );
    assert!(
        span.attr("resource.cpu_bound")
            .and_then(|v| v.as_bool())
            .is_some(),
        "{name}"
    );
    assert_eq!(
        span.attr("resource.memory_threshold_exceeded")
            .and_then(|v| v.as_bool()),
        Some(false),
        "{name}"
    );
    assert!(
        span.attr("resource.cpu.limit_cores")
            .and_then(|v| v.as_f64())
            .expect("limit")
            > 0.0
    );
}

fn assert_consumer(span: &ReceivedSpan, topic: &str, group: &str) {
    assert_eq!(span.kind, SpanKind::Consumer, "{}", span.name);
    assert_eq!(
        span.attr("messaging.system").and_then(|v| v.as_str()),
        Some("kafka")
    );
    assert_eq!(
        span.attr("messaging.destination.name")
            .and_then(|v| v.as_str()),
        Some(topic)
    );
    assert_eq!(
        span.attr("messaging.consumer.group.name")
            .and_then(|v| v.as_str()),
        Some(group)
    );
    assert!(
        span.attr("messaging.destination.partition.id")
            .and_then(|v| v.as_str())
            .is_some()
    );
    assert!(
        span.attr("messaging.kafka.offset")
            .and_then(|v| v.as_i64())
            .is_some_and(|o| o >= 0)
    );
    let wait = span
        .attr("messaging.queue_wait_ms")
        .and_then(|v| v.as_i64())
        .expect("queue wait");
    assert!((0..60_000).contains(&wait), "{wait}");
}

/// A span names the server it called, as the `server.*` conventions say.
fn assert_server(span: &ReceivedSpan) {
    assert!(
        span.attr("server.address")
            .and_then(|v| v.as_str())
            .is_some_and(|a| !a.is_empty()),
        "{span:?}"
    );
    assert!(
        span.attr("server.port")
            .and_then(|v| v.as_i64())
            .is_some_and(|p| p > 0),
        "{span:?}"
    );
}

/// A Redis call as the database conventions describe it: a client span whose name is its
/// `db.query.summary`, starting with the command (`db.operation.name`).
fn assert_redis_client(span: &ReceivedSpan) {
    assert_eq!(span.kind, SpanKind::Client, "{}", span.name);
    assert_eq!(
        span.attr("db.system.name").and_then(|v| v.as_str()),
        Some("redis")
    );
    assert_eq!(
        span.attr("db.query.summary").and_then(|v| v.as_str()),
        Some(span.name.as_str())
    );
    let operation = span
        .attr("db.operation.name")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    assert!(
        !operation.is_empty() && span.name.starts_with(operation),
        "{span:?}"
    );
    assert_eq!(
        span.attr("db.namespace").and_then(|v| v.as_str()),
        Some("0")
    );
    assert_server(span);
}

/// The whole story of one order in one trace: spans of all four services, linked across both
/// Kafka hops, with the workload and resource figures on the steps.
/// The trace reached analytics, and every span's parent (but the api's, which may be the client's)
/// is in it.
fn whole_to_analytics(trace: &[ReceivedSpan]) -> bool {
    let ids: BTreeSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    trace.iter().any(|s| s.name == "analyze_order")
        && trace.iter().all(|s| {
            s.name == "create_order"
                || s.parent_span_id
                    .as_deref()
                    .is_none_or(|parent| ids.contains(parent))
        })
}

fn assert_order_trace(spans: &[ReceivedSpan], secret_item: &str) {
    let create = one(spans, "api", "create_order");
    assert_eq!(create.kind, SpanKind::Server);
    assert_eq!(
        create
            .attr("http.response.status_code")
            .and_then(|v| v.as_i64()),
        Some(202)
    );
    assert_eq!(
        create.attr("http.request.method").and_then(|v| v.as_str()),
        Some("POST")
    );
    assert_eq!(
        create.attr("http.route").and_then(|v| v.as_str()),
        Some("/order")
    );
    assert_eq!(
        create
            .resource
            .get("service.namespace")
            .and_then(|v| v.as_str()),
        Some("e2e")
    );

    let hops = [
        (
            "api",
            "create_order",
            &["input_validation", "audit_logging"][..],
            "PIPELINE HSET EXPIRE",
            "orders",
        ),
        (
            "processing",
            "process_order",
            &["data_transformation", "business_logic"][..],
            "EVALSHA record_progress",
            "processed-orders",
        ),
        (
            "notification",
            "notify_order",
            &["message_formatting"][..],
            "EVALSHA record_progress",
            "notified-orders",
        ),
        (
            "analytics",
            "analyze_order",
            &["data_analysis"][..],
            "EVALSHA record_progress",
            "",
        ),
    ];
    let mut previous_send: Option<&ReceivedSpan> = None;
    for (service, main, steps, redis_call, output) in hops {
        let span = one(spans, service, main);
        if let Some(send) = previous_send {
            child_of(send, span);
            assert_consumer(
                span,
                send.attr("messaging.destination.name")
                    .and_then(|v| v.as_str())
                    .unwrap_or(""),
                service,
            );
            assert!(span.start_unix_nanos >= send.start_unix_nanos);
            // Why Jaeger's critical path mostly stops at the api (workshop): a consumer span
            // starts at the earliest a moment before its parent, the publish, ends (the broker
            // hands the message on about when it acknowledges it).
            let overlap = send.end_unix_nanos.saturating_sub(span.start_unix_nanos);
            assert!(
                overlap < 50_000_000,
                "{main}: started {overlap} ns before its parent {send:?} ended"
            );
        }
        for step in steps {
            let step_span = one(spans, service, step);
            child_of(span, step_span);
            assert_workload_attributes(step_span);
        }
        let redis = one(spans, service, redis_call);
        child_of(span, redis);
        assert_redis_client(redis);
        if !output.is_empty() {
            let send = one(spans, service, &format!("send {output}"));
            child_of(span, send);
            assert_eq!(send.kind, SpanKind::Producer);
            assert_server(send);
            assert_eq!(
                send.attr("messaging.destination.name")
                    .and_then(|v| v.as_str()),
                Some(output)
            );
            assert!(
                send.attr("messaging.kafka.offset")
                    .and_then(|v| v.as_i64())
                    .is_some()
            );
            previous_send = Some(send);
        }
    }
    for span in spans {
        assert_ne!(
            span.status,
            StatusCode::Error,
            "{}/{} failed",
            span.service_name,
            span.name
        );
        for (key, value) in &span.attributes {
            if let Some(text) = value.as_str() {
                assert!(
                    !text.contains(secret_item),
                    "the item name leaked into {}/{} {key}",
                    span.service_name,
                    span.name
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_order_is_one_trace_through_all_four_services_and_bad_requests_create_nothing() {
    let lab = Lab::start(&light_config(), &[]).await.expect("lab starts");
    let http = http();

    // Bad requests: 400/413/415 with a JSON error, and nothing stored or published.
    let bad: [(&str, String, u16); 5] = [
        (
            "application/json",
            r#"{"item": "", "quantity": 1}"#.into(),
            400,
        ),
        (
            "application/json",
            r#"{"item": "x", "quantity": 0}"#.into(),
            400,
        ),
        ("application/json", "{not json".into(), 400),
        ("text/plain", r#"{"item": "x", "quantity": 1}"#.into(), 415),
        (
            "application/json",
            format!(r#"{{"item": "{}", "quantity": 1}}"#, "x".repeat(40_000)),
            413,
        ),
    ];
    for (content_type, body, status) in bad {
        let response = http
            .post(format!("{}/order", lab.api_url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("api answers");
        assert_eq!(response.status().as_u16(), status);
        let error: serde_json::Value = response.json().await.expect("JSON error body");
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{error}"
        );
    }

    const N: usize = 12;
    let secret = "secret-widget-7f3a";
    let mut order_ids = BTreeSet::new();
    // Half the orders name a customer tier in their baggage, beside an entry no span may show;
    // the others a tier outside the vocabulary, which no span may show either.
    let mut premium = BTreeSet::new();
    for i in 0..N {
        let baggage = if i % 2 == 0 {
            "customer.tier=premium,user.email=alice%40example.com"
        } else {
            "customer.tier=alice"
        };
        let (status, body) = post_order_with(
            &http,
            &lab.api_url,
            &format!("{secret} no.{i}"),
            i as i64 + 1,
            &[("baggage", baggage)],
        )
        .await
        .expect("post");
        assert_eq!(status, 202, "{body}");
        let id = body["order_id"].as_str().expect("order id").to_owned();
        if i % 2 == 0 {
            premium.insert(id.clone());
        }
        order_ids.insert(id);
    }
    assert_eq!(order_ids.len(), N);
    lab.wait_analyzed(N as i64, PIPELINE_TIMEOUT)
        .await
        .expect("all orders analysed");

    // Exactly N orders exist: nothing from the bad requests.
    let published: i64 = lab
        .broker
        .end_offsets("orders")
        .await
        .expect("offsets")
        .iter()
        .sum();
    assert_eq!(published, N as i64);
    let mut redis = lab.redis().await.expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("order:*")
        .query_async(&mut redis)
        .await
        .expect("keys");
    assert_eq!(keys.len(), N);
    for id in &order_ids {
        let status: Option<String> = redis::cmd("HGET")
            .arg(format!("order:{id}"))
            .arg("status")
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(status.as_deref(), Some("analytics"));
    }

    // Each trace is whole once it reaches analytics with every parent present: a service exports
    // its spans in the order they end, and a step ends before the span it belongs to.
    let spans = lab
        .traces
        .query()
        .wait_for(
            |spans| {
                by_trace(spans)
                    .values()
                    .filter(|trace| whole_to_analytics(trace))
                    .count()
                    >= N
            },
            PIPELINE_TIMEOUT,
        )
        .await
        .expect("spans arrive");
    let traces = by_trace(&spans);
    let mut seen = BTreeSet::new();
    for spans in traces.values().filter(|spans| {
        spans
            .iter()
            .any(|s| s.name == "create_order" && s.attr("order.id").is_some())
    }) {
        let id = one(spans, "api", "create_order")
            .attr("order.id")
            .and_then(|v| v.as_str())
            .unwrap()
            .to_owned();
        assert!(order_ids.contains(&id));
        assert_order_trace(spans, secret);
        let tier = premium.contains(&id).then_some("premium");
        for span in spans {
            let named = span.attr("customer.tier").and_then(|v| v.as_str());
            assert_eq!(named, tier, "{}: customer.tier", span.name);
            assert!(span.attr("user.email").is_none(), "{}", span.name);
        }
        assert!(seen.insert(id), "an order spans two traces");
    }
    assert_eq!(seen, order_ids, "every order has its trace");
    let rejected = traces
        .values()
        .flatten()
        .filter(|s| {
            s.name == "create_order"
                && s.attr("http.response.status_code")
                    .and_then(|v| v.as_i64())
                    .is_some_and(|c| (400..500).contains(&c))
        })
        .count();
    assert_eq!(rejected, 5, "bad requests are traced too");
    drop(spans);

    // Log lines carry the ids of the span they were written in, and nothing of the order's content.
    for (role, process) in &lab.services {
        let log = std::fs::read_to_string(process.log_path()).expect("service log");
        assert!(!log.contains(secret), "{role} logged an order's item");
        let message = match role {
            Role::Api => "order accepted",
            _ => "order handled",
        };
        let lines: Vec<serde_json::Value> = log
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .filter(|line: &serde_json::Value| line["message"] == message)
            .collect();
        assert_eq!(lines.len(), N, "{role}: lines {message:?}");
        for line in lines {
            let span = traces
                .get(line["trace_id"].as_str().expect("trace_id"))
                .and_then(|trace| {
                    trace
                        .iter()
                        .find(|s| Some(s.span_id.as_str()) == line["span_id"].as_str())
                });
            let span = span.unwrap_or_else(|| panic!("{role}: no span for {line}"));
            assert_eq!(span.service_name, role.name(), "{line}");
            assert_eq!(
                span.kind,
                if *role == Role::Api {
                    SpanKind::Server
                } else {
                    SpanKind::Consumer
                }
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_show_as_error_spans_and_latency_spans() {
    let mut config = light_config();
    config.notification.faults.error_rate = 1.0;
    config.processing.faults.extra_latency_ms = 50;
    let lab = Lab::start(&config, &[]).await.expect("lab starts");
    let http = http();
    let (status, _) = post_order(&http, &lab.api_url, "lamp", 1).await.unwrap();
    assert_eq!(status, 202);
    let spans = lab
        .traces
        .query()
        .wait_for(
            |spans| {
                ["notify_order", "EVALSHA mark_failed"]
                    .iter()
                    .all(|name| spans.iter().any(|s| s.name == *name))
            },
            PIPELINE_TIMEOUT,
        )
        .await
        .unwrap();
    let notify = spans.iter().find(|s| s.name == "notify_order").unwrap();
    assert!(notify.is_error());
    // The failed order is marked so in Redis, in a client span of its own, which succeeded.
    let marked = spans
        .iter()
        .find(|s| s.name == "EVALSHA mark_failed")
        .unwrap();
    assert_redis_client(marked);
    assert_eq!(
        marked.parent_span_id.as_deref(),
        Some(notify.span_id.as_str())
    );
    assert!(!marked.is_error(), "{marked:?}");
    assert!(
        !spans
            .iter()
            .any(|s| s.service_name == "notification" && s.name == "EVALSHA record_progress"),
        "notification recorded progress on an order it failed"
    );
    let exception = notify
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("exception event");
    assert_eq!(
        exception
            .attributes
            .get("exception.type")
            .and_then(|v| v.as_str()),
        Some("InjectedFault")
    );
    let spans = lab
        .traces
        .query()
        .wait_for(
            |spans| {
                ["injected_latency", "process_order"]
                    .iter()
                    .all(|name| spans.iter().any(|s| s.name == *name))
            },
            PIPELINE_TIMEOUT,
        )
        .await
        .unwrap();
    let latency = spans.iter().find(|s| s.name == "injected_latency").unwrap();
    let process = spans.iter().find(|s| s.name == "process_order").unwrap();
    assert_eq!(
        latency.parent_span_id.as_deref(),
        Some(process.span_id.as_str())
    );
    assert!(latency.duration() >= Duration::from_millis(50));
    // The failed order stops at notification: its span, seen above, ended after notification
    // decided, and nothing reached analytics' topic.
    let published = lab.broker.end_offsets("notified-orders").await.unwrap();
    assert!(published.iter().all(|&end| end == 0), "{published:?}");
    assert_eq!(lab.analyzed().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_sends_orders_whose_traces_start_at_the_client() {
    const ORDERS: usize = 10;
    // Light work only and a modest rate: the test binaries are unoptimised, and medium work at a
    // high rate saturates a small machine, which would test the machine rather than the traces.
    let mut config = light_config();
    for role in Role::ALL {
        config.role_mut(role).workload = WorkloadMix::new(50, 50, &[Intensity::Light]);
    }
    config.loadgen.orders_per_second = 10.0;
    let lab = Lab::start(&config, &[]).await.expect("lab starts");
    let port = tracing_lab_tests::ports::free_port();
    let mut loadgen =
        tracing_lab_tests::ChildProcess::spawn("loadgen", lab.loadgen_command(port).unwrap())
            .unwrap();
    loadgen
        .wait_http_ok(
            &format!("http://127.0.0.1:{port}/health"),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    lab.wait_analyzed(ORDERS as i64, PIPELINE_TIMEOUT)
        .await
        .unwrap_or_else(|err| panic!("{err:#}; loadgen log:\n{}", loadgen.log_tail(20)));
    let status = loadgen.terminate(Duration::from_secs(20)).await.unwrap();
    assert!(status.success(), "loadgen exit: {status}");
    // Every analysed order's trace: its root is the loadgen's client span, answered 202, and the
    // api's server span is that span's child.
    lab.traces
        .query()
        .wait_for(
            |spans| {
                let traces_with = |matches: fn(&ReceivedSpan) -> bool| -> BTreeSet<&str> {
                    spans
                        .iter()
                        .filter(|s| matches(s))
                        .map(|s| s.trace_id.as_str())
                        .collect()
                };
                let analysed = traces_with(|s| s.name == "analyze_order");
                let sent = traces_with(|s| s.service_name == "loadgen");
                analysed.intersection(&sent).count() >= ORDERS
            },
            PIPELINE_TIMEOUT,
        )
        .await
        .unwrap();
    for trace in by_trace(&lab.traces.query().spans(LOOKBACK).await.unwrap()).values() {
        if !trace.iter().any(|s| s.name == "analyze_order") {
            continue;
        }
        let client = one(trace, "loadgen", "POST");
        assert_eq!(client.kind, SpanKind::Client);
        assert_eq!(
            client.parent_span_id, None,
            "the trace starts at the client"
        );
        assert_eq!(
            client
                .attr("http.response.status_code")
                .and_then(|v| v.as_i64()),
            Some(202)
        );
        child_of(client, one(trace, "api", "create_order"));
        // The client's customer tier is on every span of the order, in every service.
        let tier = client.attr("customer.tier").and_then(|v| v.as_str());
        assert!(
            tier.is_some_and(|t| CUSTOMER_TIERS.contains(&t)),
            "{tier:?}"
        );
        for span in trace {
            assert_eq!(
                span.attr("customer.tier").and_then(|v| v.as_str()),
                tier,
                "{}",
                span.name
            );
        }
    }
}

#[test]
fn invalid_settings_stop_the_service_naming_the_setting() {
    for (var, value) in [
        ("LISTEN_ADDR", "nonsense"),
        ("KAFKA_BOOTSTRAP_SERVERS", "no-port"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("LAB_CONFIG", "/no/such/file.json"),
    ] {
        let mut command =
            tracing_lab_tests::process::project_command(lab::BINARY).expect("binary built");
        let output = command
            .arg("processing")
            .env_clear()
            .env(var, value)
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(var), "{var}={value}: {stderr}");
    }
}
