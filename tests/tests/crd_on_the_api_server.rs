//! The CRD behaves on the API server as on a real cluster: `kubectl explain` shows the field
//! documentation, and `status.conditions` merges by type, so the reconciler and the lag monitor
//! each server-side apply only their own conditions under their own field manager; Kafka's
//! storage, which a StatefulSet cannot change, cannot change once the lab exists, and a `null`
//! storage size reads as the default size; and what could never run (a request above its limit,
//! Kafka's heap above its memory limit, two node ports alike, tail sampling that keeps nothing,
//! more traces than Jaeger's memory holds) is refused at `kubectl apply`, naming the field.

use std::process::Command;
use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tracing_lab_operator::TracingLab;
use tracing_lab_tests::poll::eventually;
use tracing_lab_tests::{TestCluster, assets};

const NS: &str = "crd";

async fn cluster() -> TestCluster {
    let cluster = TestCluster::start().await.expect("API server starts");
    cluster.install_lab_crd().await.unwrap();
    cluster.create_namespace(NS).await.unwrap();
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explain_shows_the_field_documentation() {
    let cluster = cluster().await;
    // The API server publishes a new CRD's schema to its OpenAPI document shortly after it is
    // Established, as on any cluster.
    let text = eventually("kubectl explain", Duration::from_secs(30), || async {
        let out = Command::new(assets::find("kubectl").unwrap())
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .args(["explain", "tlab.spec.sampling.tail"])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    })
    .await;
    for expected in [
        "KIND:       TracingLab",
        "keepErrors",
        "Keep every trace holding a span with status ERROR.",
        "latencyThresholdMs",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

fn condition(type_: &str, status: &str) -> serde_json::Value {
    json!({"type": type_, "status": status, "reason": "Test", "message": "m",
           "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_field_manager_owns_its_own_conditions() {
    let cluster = cluster().await;
    let labs: Api<TracingLab> = Api::namespaced(cluster.client(), NS);
    let lab: TracingLab = serde_json::from_value(json!({
        "apiVersion": "tracinglab.dev/v1alpha1", "kind": "TracingLab",
        "metadata": {"name": "lab"}, "spec": {},
    }))
    .unwrap();
    labs.create(&PostParams::default(), &lab).await.unwrap();
    let apply = |manager: &'static str, conditions: Vec<serde_json::Value>| {
        let labs = labs.clone();
        async move {
            let patch = json!({
                "apiVersion": "tracinglab.dev/v1alpha1", "kind": "TracingLab",
                "status": {"conditions": conditions},
            });
            labs.patch_status(
                "lab",
                &PatchParams::apply(manager).force(),
                &Patch::Apply(&patch),
            )
            .await
            .unwrap()
        }
    };
    apply(
        "reconciler",
        vec![condition("Ready", "False"), condition("Degraded", "False")],
    )
    .await;
    apply("lag", vec![condition("KafkaReachable", "True")]).await;
    // Each writer applies again with only its own conditions; the other's stay untouched.
    let lab = apply(
        "reconciler",
        vec![condition("Ready", "True"), condition("Degraded", "False")],
    )
    .await;
    let statuses: Vec<(String, String)> = lab
        .status
        .unwrap()
        .conditions
        .into_iter()
        .map(|c| (c.type_, c.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("Ready", "True"),
            ("Degraded", "False"),
            ("KafkaReachable", "True")
        ]
        .map(|(t, s)| (t.to_owned(), s.to_owned()))
    );
    let lab = apply("lag", vec![condition("KafkaReachable", "False")]).await;
    let kafka = lab.status.unwrap().conditions;
    assert_eq!(kafka.len(), 3);
    assert!(
        kafka
            .iter()
            .any(|c| c.type_ == "KafkaReachable" && c.status == "False")
    );
    assert!(
        kafka
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_storage_is_fixed_once_the_lab_exists() {
    let cluster = cluster().await;
    let labs: Api<TracingLab> = Api::namespaced(cluster.client(), NS);
    let lab: TracingLab = serde_json::from_value(json!({
        "apiVersion": "tracinglab.dev/v1alpha1", "kind": "TracingLab",
        "metadata": {"name": "kept"},
        "spec": {"kafka": {"partitions": 3}}
    }))
    .unwrap();
    let created = labs.create(&PostParams::default(), &lab).await.unwrap();
    assert_eq!(
        serde_json::to_value(&created.spec.kafka.storage).unwrap(),
        json!({"type": "emptyDir", "size": "1Gi"}),
        "the API server fills in the default"
    );
    let patch = |storage: serde_json::Value| {
        Patch::Merge(json!({"spec": {"kafka": {"partitions": 4, "storage": storage}}}))
    };
    let refused = labs
        .patch(
            "kept",
            &PatchParams::default(),
            &patch(json!({"type": "persistentVolumeClaim"})),
        )
        .await
        .expect_err("a StatefulSet cannot switch its data to a claim");
    assert!(
        refused.to_string().contains("kafka.storage cannot change"),
        "{refused}"
    );
    // Other Kafka fields still change.
    let patched = labs
        .patch("kept", &PatchParams::default(), &patch(json!({})))
        .await
        .unwrap();
    assert_eq!(patched.spec.kafka.partitions, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_claim_of_no_size_is_refused() {
    let cluster = cluster().await;
    let labs: Api<TracingLab> = Api::namespaced(cluster.client(), NS);
    let lab = |name: &str, storage: serde_json::Value| -> TracingLab {
        serde_json::from_value(json!({
            "apiVersion": "tracinglab.dev/v1alpha1", "kind": "TracingLab",
            "metadata": {"name": name},
            "spec": {"kafka": {"storage": storage}}
        }))
        .unwrap()
    };
    for size in [json!(0), json!("0"), json!("0Gi"), json!("0.0")] {
        let storage = json!({"type": "persistentVolumeClaim", "size": size});
        let refused = labs
            .create(&PostParams::default(), &lab("no-size", storage))
            .await
            .expect_err("a claim of no size");
        assert!(
            refused.to_string().contains(
                "spec.kafka.storage.size: Invalid value: a persistentVolumeClaim needs a size above 0"
            ),
            "size {size}: {refused}"
        );
    }
    for (name, storage) in [
        (
            "smallest",
            json!({"type": "persistentVolumeClaim", "size": 1}),
        ),
        (
            "claim",
            json!({"type": "persistentVolumeClaim", "size": "500Mi"}),
        ),
        // The size is only the claim's.
        ("empty-dir", json!({"type": "emptyDir", "size": "0"})),
    ] {
        labs.create(&PostParams::default(), &lab(name, storage))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_kafka_storage_size_is_the_default_size() {
    let cluster = cluster().await;
    let labs: Api<TracingLab> = Api::namespaced(cluster.client(), NS);
    for (name, apply) in [
        ("client-side", &["apply"][..]),
        ("server-side", &["apply", "--server-side"][..]),
    ] {
        let manifest = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            manifest.path(),
            format!(
                "apiVersion: tracinglab.dev/v1alpha1\nkind: TracingLab\nmetadata: {{name: {name}}}\n\
                 spec:\n  kafka: {{storage: {{type: persistentVolumeClaim, size: null}}}}\n"
            ),
        )
        .unwrap();
        let out = Command::new(assets::find("kubectl").unwrap())
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .args(["--namespace", NS])
            .args(apply)
            .arg("-f")
            .arg(manifest.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {apply:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Read as the operator reads it.
        let lab = labs.get(name).await.unwrap();
        assert_eq!(
            serde_json::to_value(&lab.spec.kafka.storage).unwrap(),
            json!({"type": "persistentVolumeClaim", "size": "1Gi"}),
            "{name}"
        );
    }
}

/// `kubectl apply --server-side` of a lab with `spec` (YAML flow style), as a student applies one.
fn apply(cluster: &TestCluster, name: &str, spec: &str) -> Result<(), String> {
    let manifest = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        manifest.path(),
        format!(
            "apiVersion: tracinglab.dev/v1alpha1\nkind: TracingLab\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        ),
    )
    .unwrap();
    let out = Command::new(assets::find("kubectl").unwrap())
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(["--namespace", NS, "apply", "--server-side", "-f"])
        .arg(manifest.path())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_could_never_run_is_refused_at_apply_naming_the_field() {
    let cluster = cluster().await;
    for (spec, expected) in [
        (
            "{kafka: {resources: {requests: {memory: 4Gi, cpu: 500m}, limits: {memory: 1Gi, cpu: 1}}}}",
            "spec.kafka.resources.requests: Invalid value: a request cannot exceed its limit",
        ),
        (
            "{services: {api: {resources: {requests: {cpu: 1500m}, limits: {cpu: 1}}}}}",
            "spec.services.api.resources.requests: Invalid value: a request cannot exceed its limit",
        ),
        (
            "{kafka: {resources: {limits: {memory: 256Mi}}}}",
            "spec.kafka.resources.limits[memory]: Invalid value: the memory limit is below Kafka's 512Mi heap",
        ),
        (
            "{access: {nodePorts: {api: 30080, jaegerUi: 30080}}}",
            "spec.access.nodePorts.jaegerUi: Invalid value: api and jaegerUi must differ",
        ),
        (
            "{sampling: {tail: {enabled: true, keepErrors: false, latencyThresholdMs: 0, percentage: 0}}}",
            "spec.sampling.tail: Invalid value: enabled but keeps nothing",
        ),
        (
            "{sampling: {tail: {enabled: true, keepErrors: false, latencyThresholdMs: 0, percentage: 0, keepAttributes: []}}}",
            "spec.sampling.tail: Invalid value: enabled but keeps nothing",
        ),
        (
            "{jaeger: {maxTraces: 50000}}",
            "spec.jaeger.maxTraces: Invalid value: each trace takes about 46 KiB in Jaeger, so maxTraces × 46 KiB must fit in its memory limit",
        ),
        // One trace more than the default 1Gi holds.
        (
            "{jaeger: {maxTraces: 22796}}",
            "spec.jaeger.maxTraces: Invalid value",
        ),
        (
            "{jaeger: {maxTraces: 50000, resources: {limits: {memory: 512Mi}}}}",
            "spec.jaeger.maxTraces: Invalid value",
        ),
        (
            "{quote: {enabled: true, timeoutMs: 20000}}",
            "spec.quote.timeoutMs: Invalid value: 20000",
        ),
        (
            "{sampling: {remote: {services: [{service: api, ratio: 0.5}]}}}",
            "spec.sampling: Invalid value: remote strategies are served only to services whose sampler is jaeger_remote or parentbased_jaeger_remote",
        ),
        // A malformed quantity is named once, by its pattern, not again by a rule.
        (
            "{collector: {resources: {requests: {memory: lots}, limits: {memory: 1Gi}}}}",
            "spec.collector.resources.requests.memory: Invalid value: \"lots\"",
        ),
    ] {
        let refused = apply(&cluster, "refused", spec).expect_err(spec);
        assert!(refused.contains(expected), "{spec}: {refused}");
        assert_eq!(
            refused.matches("Invalid value").count(),
            1,
            "{spec}: {refused}"
        );
    }
    // One rule per attribute (a list keyed by `key`): a second one names its key.
    let spec = "{sampling: {tail: {keepAttributes: [{key: customer.tier, values: [premium]}, {key: customer.tier, values: [free]}]}}}";
    let refused = apply(&cluster, "refused", spec).expect_err(spec);
    assert!(
        refused.contains(
            r#".spec.sampling.tail.keepAttributes: duplicate entries for key [key="customer.tier"]"#
        ),
        "{refused}"
    );
    // A strategy for a service the lab does not run would never be asked for.
    let spec = "{sampling: {head: {sampler: parentbased_jaeger_remote}, remote: {services: [{service: billing, ratio: 0.5}]}}}";
    let refused = apply(&cluster, "refused", spec).expect_err(spec);
    assert!(
        refused.contains(r#"spec.sampling.remote.services[0].service: Unsupported value: "billing": supported values: "api", "processing", "notification", "analytics", "loadgen""#),
        "{refused}"
    );
    // At the bounds, in units that differ but agree, or with nothing to compare, it runs.
    for (name, spec) in [
        (
            "equal",
            "{redis: {resources: {requests: {memory: 1024Mi, cpu: 2}, limits: {memory: 1Gi}}}}",
        ),
        ("heap", "{kafka: {resources: {limits: {memory: 512Mi}}}}"),
        (
            "no-heap",
            "{collector: {resources: {limits: {memory: 64Mi}}}}",
        ),
        (
            "traces",
            "{jaeger: {maxTraces: 40000, resources: {limits: {memory: 2Gi}}}}",
        ),
        ("most-traces", "{jaeger: {maxTraces: 22795}}"),
        (
            "without-resources",
            "{jaeger: {resources: null}, kafka: {resources: null}}",
        ),
        (
            "tail",
            "{sampling: {tail: {enabled: true, keepErrors: false, latencyThresholdMs: 0, percentage: 0.5}}}",
        ),
        (
            "tail-attribute",
            "{sampling: {tail: {enabled: true, keepErrors: false, latencyThresholdMs: 0, percentage: 0, keepAttributes: [{key: customer.tier, values: [premium]}]}}}",
        ),
        (
            "quote",
            "{quote: {enabled: true, calls: Parallel, timeoutMs: 10000, lookupMs: 60000, errorRate: 1}}",
        ),
        (
            "remote-per-operation",
            "{sampling: {head: {sampler: parentbased_jaeger_remote}, remote: {defaultRatio: 0, pollIntervalSeconds: 3600, services: [{service: api, operations: [{operation: get_order, ratio: 0.1}, {operation: create_order, ratio: 1}]}, {service: loadgen, ratio: 0}]}}}",
        ),
        (
            "remote-one-service",
            "{sampling: {perService: {analytics: {sampler: jaeger_remote}}, remote: {}}}",
        ),
        (
            "tail-budget",
            "{sampling: {tail: {enabled: true, keepErrors: false, latencyThresholdMs: 0, percentage: 0, spansPerSecond: 1}}}",
        ),
    ] {
        apply(&cluster, name, spec).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
