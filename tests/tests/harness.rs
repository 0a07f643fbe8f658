//! Smoke tests of the harness itself: every server starts, is usable, and stops.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};

use opentelemetry::trace::{
    Span as _, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use tracing_lab_tests::lab::{rendered, stored};
use tracing_lab_tests::otlp::{ReceivedSpan, SpanKind, StatusCode, Value};
use tracing_lab_tests::poll::eventually;
use tracing_lab_tests::{
    KafkaBroker, OtlpReceiver, RedisServer, TestCluster, TraceBackend, assets,
};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn redis_server_stores_and_returns_values() {
    let server = RedisServer::start().await.unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("order:1")
        .arg("pending")
        .query_async(&mut connection)
        .await
        .unwrap();
    let value: String = redis::cmd("GET")
        .arg("order:1")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(value, "pending");
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_broker_serves_topics_groups_and_survives_a_restart() {
    let mut broker = KafkaBroker::start().await.unwrap();
    broker.create_topic("orders", 3).await.unwrap();
    broker.produce("orders", 30).await.unwrap();
    let ends = broker.end_offsets("orders").await.unwrap();
    assert_eq!(ends.len(), 3);
    assert_eq!(ends.iter().sum::<i64>(), 30);
    assert!(
        ends.iter().filter(|&&end| end > 0).count() > 1,
        "keys spread messages: {ends:?}"
    );

    // A real group member reads everything and commits.
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "processing")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["orders"]).unwrap();
    let consumer = tokio::task::spawn_blocking(move || {
        let mut payloads = Vec::new();
        let started = std::time::Instant::now();
        while payloads.len() < 30 && started.elapsed() < WAIT {
            if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                payloads.push(message.unwrap().payload().unwrap().to_vec());
            }
        }
        assert_eq!(payloads.len(), 30);
        assert!(payloads.contains(&b"message-29".to_vec()));
        consumer.commit_consumer_state(CommitMode::Sync).unwrap();
        consumer
    })
    .await
    .unwrap();
    drop(consumer);
    let committed = broker
        .committed_offsets("processing", "orders")
        .await
        .unwrap();
    assert_eq!(
        committed,
        ends.iter().map(|&end| Some(end)).collect::<Vec<_>>()
    );

    // Commits on behalf of a group that is behind.
    broker
        .commit_offsets("notification", "orders", &[(0, 1)])
        .await
        .unwrap();
    let committed = broker
        .committed_offsets("notification", "orders")
        .await
        .unwrap();
    assert_eq!(committed, vec![Some(1), None, None]);

    broker.stop().unwrap();
    assert!(
        std::net::TcpStream::connect(broker.bootstrap()).is_err(),
        "stopped broker refuses connections"
    );

    // A container restart keeps the pod's volumes: topics, messages and commits are all there.
    broker.restart().await.unwrap();
    assert_eq!(broker.end_offsets("orders").await.unwrap(), ends);
    let committed = broker
        .committed_offsets("processing", "orders")
        .await
        .unwrap();
    assert_eq!(
        committed,
        ends.iter().map(|&end| Some(end)).collect::<Vec<_>>()
    );
    broker.produce("orders", 5).await.unwrap();
    let after_restart = broker.end_offsets("orders").await.unwrap();
    assert_eq!(after_restart.iter().sum::<i64>(), 35);
}

fn export_two_spans(exporter: SpanExporter, service: &str) {
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer("harness");
    let mut parent = tracer.start("create_order");
    parent.set_attribute(KeyValue::new("order.quantity", 3_i64));
    parent.set_attribute(KeyValue::new("workload.duration_ms", 1.5_f64));
    parent.set_attribute(KeyValue::new("resource.cpu_bound", true));
    parent.set_attribute(KeyValue::new("workload.type", "cpu"));
    let cx = Context::current_with_span(parent);
    let mut child = tracer.start_with_context("input_validation", &cx);
    child.add_event("retry", vec![KeyValue::new("attempt", 2_i64)]);
    child.set_status(Status::error("bad quantity"));
    child.end();
    cx.span().end();
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();
}

async fn assert_receives_two_spans(receiver: &OtlpReceiver, service: &'static str) {
    let spans = receiver
        .wait_for(|spans| of(spans, service) == 2, WAIT)
        .await
        .unwrap();
    let trace_id = assert_two_spans(&spans, service);
    let traces = receiver.traces();
    assert_eq!(traces[&trace_id].len(), 2);
}

fn of(spans: &[ReceivedSpan], service: &str) -> usize {
    spans.iter().filter(|s| s.service_name == service).count()
}

/// The two spans of [`export_two_spans`], exactly as exported; returns their trace id.
fn assert_two_spans(spans: &[ReceivedSpan], service: &str) -> String {
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.service_name == service && s.name == name)
            .unwrap_or_else(|| panic!("{name} of {service} missing"))
    };
    let (parent, child) = (find("create_order"), find("input_validation"));
    assert_eq!(parent.trace_id, child.trace_id);
    assert_eq!(parent.trace_id.len(), 32);
    assert_eq!(
        child.parent_span_id.as_deref(),
        Some(parent.span_id.as_str())
    );
    assert_eq!(parent.parent_span_id, None);
    assert_eq!(parent.kind, SpanKind::Internal);
    assert_eq!(parent.attr("order.quantity"), Some(&Value::Int(3)));
    assert_eq!(
        parent.attr("workload.duration_ms").and_then(Value::as_f64),
        Some(1.5)
    );
    assert_eq!(
        parent.attr("resource.cpu_bound").and_then(Value::as_bool),
        Some(true)
    );
    assert_eq!(
        parent.attr("workload.type").and_then(Value::as_str),
        Some("cpu")
    );
    assert!(child.is_error() && !parent.is_error());
    assert_eq!(child.status, StatusCode::Error);
    assert_eq!(child.status_message, "bad quantity");
    assert_eq!(child.events.len(), 1);
    assert_eq!(child.events[0].name, "retry");
    assert_eq!(
        child.events[0].attributes.get("attempt"),
        Some(&Value::Int(2))
    );
    parent.trace_id.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rendered_collector_and_jaeger_store_spans_that_the_query_api_returns() {
    let lab = stored("lab", "harness", serde_json::json!({})).unwrap();
    let (children, loopback) = rendered(&lab).unwrap();
    let backend = TraceBackend::start_rendered(&children, &loopback)
        .await
        .unwrap();
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(backend.otlp_endpoint())
        .build()
        .unwrap();
    tokio::task::spawn_blocking(move || export_two_spans(exporter, "through-jaeger"))
        .await
        .unwrap();
    let spans = backend
        .query()
        .wait_for(|spans| of(spans, "through-jaeger") == 2, WAIT)
        .await
        .unwrap();
    let trace_id = assert_two_spans(&spans, "through-jaeger");
    assert_eq!(backend.query().trace(&trace_id).await.unwrap().len(), 2);
    assert!(
        backend
            .query()
            .trace("0123456789abcdef0123456789abcdef")
            .await
            .unwrap()
            .is_empty(),
        "an unknown trace is empty"
    );
    assert!(
        backend
            .query()
            .services()
            .await
            .unwrap()
            .contains(&"through-jaeger".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_receiver_gets_spans_over_grpc_and_http() {
    let receiver = OtlpReceiver::start().await.unwrap();

    let grpc = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(receiver.grpc_endpoint())
        .build()
        .unwrap();
    tokio::task::spawn_blocking(move || export_two_spans(grpc, "over-grpc"))
        .await
        .unwrap();
    assert_receives_two_spans(&receiver, "over-grpc").await;

    let http = SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(receiver.http_traces_url())
        .build()
        .unwrap();
    tokio::task::spawn_blocking(move || export_two_spans(http, "over-http"))
        .await
        .unwrap();
    assert_receives_two_spans(&receiver, "over-http").await;

    assert_eq!(receiver.spans().len(), 4);
    receiver.clear();
    assert!(receiver.spans().is_empty());
    let err = receiver
        .wait_for(|spans| !spans.is_empty(), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("0 spans"), "{err}");
}

fn run(program: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let binary = assets::find(program).unwrap();
    let output = std::process::Command::new(binary)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {stderr}"
    );
    String::from_utf8(output.stdout).unwrap()
}

fn config_map(name: &str, key: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some([(key.to_owned(), value.to_owned())].into()),
        ..ConfigMap::default()
    }
}

#[tokio::test]
async fn api_server_serves_kube_clients_kubectl_and_helm() {
    let cluster = TestCluster::start().await.unwrap();
    assert!(cluster.server_url().starts_with("https://127.0.0.1:"));
    cluster.create_namespace("lab").await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client(), "lab");
    config_maps
        .create(&PostParams::default(), &config_map("from-client", "a", "1"))
        .await
        .unwrap();

    let kubeconfig = cluster.kubeconfig().to_str().unwrap();
    let kubectl = |args: &[&str]| {
        run(
            "kubectl",
            &[&["--kubeconfig", kubeconfig, "-n", "lab"], args].concat(),
            &[],
        )
    };
    kubectl(&["create", "configmap", "from-kubectl", "--from-literal=b=2"]);
    assert_eq!(
        kubectl(&[
            "get",
            "configmap",
            "from-client",
            "-o",
            "jsonpath={.data.a}"
        ]),
        "1"
    );
    let from_kubectl = config_maps.get("from-kubectl").await.unwrap();
    assert_eq!(from_kubectl.data.unwrap()["b"], "2");

    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.dev}
spec:
  group: example.dev
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer, minimum: 1}}}
"#;
    cluster.install_crd(crd).await.unwrap();
    let widget = r#"{"apiVersion":"example.dev/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"size":0}}"#;
    let rejected = std::process::Command::new(assets::find("kubectl").unwrap())
        .args(["--kubeconfig", kubeconfig, "-n", "lab", "create", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(widget.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(!rejected.status.success());
    assert!(
        String::from_utf8_lossy(&rejected.stderr).contains("spec.size"),
        "schema validation applies"
    );

    let helm_home = tempfile::tempdir().unwrap();
    let helm_env = [
        ("HELM_CACHE_HOME", helm_home.path()),
        ("HELM_CONFIG_HOME", helm_home.path()),
        ("HELM_DATA_HOME", helm_home.path()),
    ];
    assert!(run("helm", &["version", "--short"], &helm_env).starts_with("v4."));
    let releases = run(
        "helm",
        &["list", "-A", "--kubeconfig", kubeconfig],
        &helm_env,
    );
    assert!(releases.starts_with("NAME"), "{releases}");
}

#[tokio::test]
async fn service_account_tokens_authenticate_and_rbac_authorizes_them() {
    let cluster = TestCluster::start().await.unwrap();
    cluster.create_namespace("lab").await.unwrap();
    let admin = cluster.client();
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("reader".into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    Api::<ServiceAccount>::namespaced(admin.clone(), "lab")
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let token = cluster
        .mint_service_account_token("lab", "reader")
        .await
        .unwrap();

    let as_reader: Api<ConfigMap> =
        Api::namespaced(cluster.client_for_token(&token).await.unwrap(), "lab");
    match as_reader.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status.message.contains("system:serviceaccount:lab:reader"),
                "{status:?}"
            );
        }
        other => panic!("expected 403 before any RoleBinding, got {other:?}"),
    }
    let stranger = cluster.client_for_token("not-a-token").await.unwrap();
    match Api::<ConfigMap>::namespaced(stranger, "lab")
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 401, "{status:?}"),
        other => panic!("expected 401 for an unknown token, got {other:?}"),
    }

    let role: Role = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "read-config-maps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }))
    .unwrap();
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "reader-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-config-maps"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "lab"}],
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), "lab")
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), "lab")
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    Api::<ConfigMap>::namespaced(admin, "lab")
        .create(&PostParams::default(), &config_map("visible", "k", "v"))
        .await
        .unwrap();

    let listed = eventually("the RoleBinding to take effect", WAIT, || async {
        as_reader
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    assert!(
        listed
            .items
            .iter()
            .any(|cm| cm.metadata.name.as_deref() == Some("visible"))
    );

    let reader_kubeconfig = cluster.kubeconfig_for_token(&token).unwrap();
    let kubeconfig = reader_kubeconfig.to_str().unwrap();
    let names = run(
        "kubectl",
        &[
            "--kubeconfig",
            kubeconfig,
            "-n",
            "lab",
            "get",
            "configmaps",
            "-o",
            "name",
        ],
        &[],
    );
    assert!(names.contains("configmap/visible"), "{names}");
}
