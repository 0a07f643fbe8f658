//! The workshop's exercises, run as a student runs them: `kubectl apply --server-side` of an
//! example onto a real API server, the operator binary reconciling it, every rendered container
//! running on the real programs (see `tracing_lab_tests::runner`), and each outcome read the way
//! the workshop reads it: `kubectl get tlab`, the lab's status, `kubectl scale` and Jaeger's query
//! API. The figures each test prints are the sample outputs in `docs/workshop.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracing_lab_tests::otlp::{ReceivedSpan, by_trace};
use tracing_lab_tests::poll::eventually;
use tracing_lab_tests::runner::LabRunner;

const READY_TIMEOUT: Duration = Duration::from_secs(180);

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(format!("{name}.yaml"))
}

/// The lab of `example`, started and `Ready` in `kubectl get tlab`.
async fn ready_lab(namespace: &str, name: &str) -> LabRunner {
    let lab = LabRunner::start(namespace, &example(name))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    wait_ready(&lab).await;
    lab
}

async fn wait_ready(lab: &LabRunner) {
    let started = Instant::now();
    eventually("kubectl get tlab: READY True", READY_TIMEOUT, || async {
        let row = lab.row().map_err(|e| e.to_string())?;
        if row.get("READY").map(String::as_str) == Some("True") {
            Ok(())
        } else {
            Err(format!("{row:?}\noperator log:\n{}", lab.operator_log()))
        }
    })
    .await;
    eprintln!(
        "lab Ready {:.1} s after its programs started",
        started.elapsed().as_secs_f64()
    );
}

/// `POST /order` as the workshop's curl loop does it; the order id.
async fn post_order(lab: &LabRunner, item: &str, quantity: u32) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/order", lab.api_url().unwrap()))
        .json(&json!({"item": item, "quantity": quantity}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    body["order_id"].as_str().unwrap().to_owned()
}

fn str_attr<'a>(span: &'a ReceivedSpan, key: &str) -> Option<&'a str> {
    span.attr(key).and_then(|v| v.as_str())
}

fn num_attr(span: &ReceivedSpan, key: &str) -> Option<f64> {
    span.attr(key)
        .and_then(|v| v.as_f64().or_else(|| v.as_i64().map(|i| i as f64)))
}

fn median(mut values: Vec<f64>) -> f64 {
    assert!(!values.is_empty(), "no values");
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The trace of the order `order_id` in Jaeger, once it holds `spans` spans.
async fn order_trace(
    lab: &LabRunner,
    order_id: &str,
    spans: usize,
    timeout: Duration,
) -> Vec<ReceivedSpan> {
    let id = order_id.to_owned();
    let all = lab
        .traces
        .wait_for(
            |all| {
                by_trace(all).values().any(|trace| {
                    trace.len() >= spans
                        && trace
                            .iter()
                            .any(|s| str_attr(s, "order.id") == Some(id.as_str()))
                })
            },
            timeout,
        )
        .await
        .unwrap();
    by_trace(&all)
        .into_values()
        .find(|trace| {
            trace
                .iter()
                .any(|s| str_attr(s, "order.id") == Some(order_id))
        })
        .unwrap()
}

/// Exercise 1: a posted order is one trace across the four services, with the tree the workshop
/// draws, and at the baseline's pace no message waits in Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workshop_baseline_one_order_is_one_trace_and_nothing_waits() {
    let lab = ready_lab("baseline", "baseline").await;
    let row = lab.row().unwrap();
    assert_eq!(row["SERVICES"], "4/4", "{row:?}");

    let posted = Instant::now();
    let order = post_order(&lab, "product-1", 1).await;
    let trace = order_trace(&lab, &order, 13, Duration::from_secs(10)).await;
    eprintln!(
        "order {order}: 13 spans in Jaeger {:.1} s after the POST",
        posted.elapsed().as_secs_f64()
    );
    let by_id: BTreeMap<&str, &ReceivedSpan> =
        trace.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let tree: Vec<(String, String, String)> = {
        let mut t: Vec<_> = trace
            .iter()
            .map(|s| {
                let parent = s
                    .parent_span_id
                    .as_deref()
                    .and_then(|p| by_id.get(p))
                    .map_or(String::new(), |p| p.name.clone());
                (s.service_name.clone(), s.name.clone(), parent)
            })
            .collect();
        t.sort();
        t
    };
    let expected: Vec<(String, String, String)> = {
        let mut e: Vec<_> = [
            ("analytics", "analyze_order", "send notified-orders"),
            ("analytics", "data_analysis", "analyze_order"),
            ("api", "audit_logging", "create_order"),
            ("api", "create_order", ""),
            ("api", "input_validation", "create_order"),
            ("api", "send orders", "create_order"),
            ("notification", "message_formatting", "notify_order"),
            ("notification", "notify_order", "send processed-orders"),
            ("notification", "send notified-orders", "notify_order"),
            ("processing", "business_logic", "process_order"),
            ("processing", "data_transformation", "process_order"),
            ("processing", "process_order", "send orders"),
            ("processing", "send processed-orders", "process_order"),
        ]
        .iter()
        .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
        .collect();
        e.sort();
        e
    };
    assert_eq!(tree, expected, "the order's trace as Jaeger holds it");
    for span in &trace {
        let resource = |key: &str| span.resource.get(key).and_then(|v| v.as_str());
        assert_eq!(resource("service.namespace"), Some("lab"), "{}", span.name);
        assert_eq!(
            resource("k8s.namespace.name"),
            Some("baseline"),
            "{}",
            span.name
        );
        assert!(
            resource("k8s.pod.name")
                .is_some_and(|p| p.starts_with(&format!("lab-{}-", span.service_name))),
            "{}: {:?}",
            span.name,
            span.resource
        );
    }

    // The workshop's pace: one order a second.
    let mut orders = Vec::new();
    for i in 0..20 {
        orders.push(post_order(&lab, &format!("product-{i}"), 1).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let last = orders.last().unwrap().clone();
    order_trace(&lab, &last, 13, Duration::from_secs(30)).await;
    let spans = lab.traces.spans(Duration::from_secs(600)).await.unwrap();
    let mut waits: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for span in spans
        .iter()
        .filter(|s| str_attr(s, "order.id").is_some_and(|id| orders.iter().any(|o| o == id)))
    {
        if let Some(wait) = num_attr(span, "messaging.queue_wait_ms") {
            waits.entry(span.name.as_str()).or_default().push(wait);
        }
    }
    for hop in ["process_order", "notify_order", "analyze_order"] {
        let values = waits.get(hop).cloned().unwrap_or_default();
        assert_eq!(values.len(), orders.len(), "{hop}: {waits:?}");
        let m = median(values);
        eprintln!("{hop}: median messaging.queue_wait_ms {m}");
        assert!(
            m <= 5.0,
            "{hop}: median queue wait {m} ms at one order a second"
        );
    }
}
