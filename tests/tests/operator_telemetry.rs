//! The operator observes itself: run as its binary with `OTEL_EXPORTER_OTLP_ENDPOINT` set, it
//! exports a span per reconcile to a real OTLP receiver, its JSON log lines carry the trace id of
//! that span, `/metrics` counts the reconciles, and SIGTERM stops it cleanly.

use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use std::time::Duration;
use tracing_lab_operator::TracingLab;
use tracing_lab_tests::process::project_command;
use tracing_lab_tests::{ChildProcess, OtlpReceiver, TestCluster, ports};

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_are_traced_logged_with_trace_ids_and_counted() {
    let cluster = TestCluster::start().await.unwrap();
    cluster.install_lab_crd().await.unwrap();
    cluster.create_namespace("observed").await.unwrap();
    let otlp = OtlpReceiver::start().await.unwrap();

    let listen = format!("127.0.0.1:{}", ports::free_port());
    let mut command = project_command("tracing-lab-operator").unwrap();
    command
        .args(["run", "--listen-addr", &listen])
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("RUST_LOG", "info")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.grpc_endpoint())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200");
    let mut operator = ChildProcess::spawn("operator", command).unwrap();
    operator
        .wait_http_ok(&format!("http://{listen}/readyz"), TIMEOUT)
        .await
        .unwrap();

    let labs: Api<TracingLab> = Api::namespaced(cluster.client(), "observed");
    let lab: TracingLab = serde_json::from_value(json!({
        "apiVersion": "tracinglab.dev/v1alpha1", "kind": "TracingLab",
        "metadata": {"name": "watched"}, "spec": {},
    }))
    .unwrap();
    labs.create(&PostParams::default(), &lab).await.unwrap();

    let spans = otlp
        .wait_for(
            |spans| {
                spans
                    .iter()
                    .any(|s| s.name == "reconcile" && s.service_name == "tracing-lab-operator")
            },
            TIMEOUT,
        )
        .await
        .unwrap();
    let reconcile = spans.iter().find(|s| s.name == "reconcile").unwrap();
    assert_eq!(
        reconcile.attr("lab").and_then(|v| v.as_str()),
        Some("watched")
    );
    assert_eq!(
        reconcile.attr("namespace").and_then(|v| v.as_str()),
        Some("observed")
    );

    // The log line of that reconcile carries its trace id.
    let log = std::fs::read_to_string(operator.log_path()).unwrap();
    let reconciled: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "reconciled")
        .collect();
    assert!(
        reconciled
            .iter()
            .any(|l| l["trace_id"] == reconcile.trace_id.as_str()),
        "no `reconciled` log line with trace id {}: {reconciled:?}",
        reconcile.trace_id
    );

    let metrics = reqwest::get(format!("http://{listen}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reconciles: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tracinglab_reconciles_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no reconcile counter in {metrics}"));
    assert!(reconciles >= 1.0, "{metrics}");

    let status = operator.terminate(Duration::from_secs(20)).await.unwrap();
    assert!(
        status.success(),
        "SIGTERM exit: {status}\n{}",
        operator.log_tail(20)
    );
}
