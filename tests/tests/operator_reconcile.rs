//! The operator against a real kube-apiserver + etcd: the CRD installs, a lab becomes its children
//! (right spec, labels, owner references), manual scaling holds, spec replicas are enforced, drift is
//! corrected, the lab turns Ready when its workloads are available, the load generator can be turned
//! off, invalid labs are rejected by the API server, and semantic problems degrade without deleting.
//! No pods ever run here: workload readiness is simulated by patching `/status`, and pods and
//! events are written as the kubelet and scheduler would, one test per reason a lab is not ready.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use std::time::Duration;
use tracing_lab_operator::TracingLab;
use tracing_lab_operator::render::kafka;
use tracing_lab_tests::operator_env::{OperatorEnv, condition, lab_selector};
use tracing_lab_tests::pods;
use tracing_lab_tests::poll::eventually;

const NS: &str = "students";
const TIMEOUT: Duration = Duration::from_secs(30);

async fn start() -> OperatorEnv {
    start_with(Default::default()).await
}

async fn start_with(config: tracing_lab_operator::Config) -> OperatorEnv {
    OperatorEnv::start(NS, config).await
}

fn config_hash(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("tracinglab.dev/config-hash")
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_becomes_every_child_with_labels_owner_and_contract() {
    let env = start().await;
    let lab = env
        .create_lab("demo", json!({"loadGenerator": {"enabled": true}}))
        .await;
    env.wait_children("demo").await;

    let uid = lab.uid().expect("stored lab has a uid");
    let cms = env
        .api::<ConfigMap>()
        .list(&lab_selector("demo"))
        .await
        .unwrap()
        .items;
    let svcs = env
        .api::<Service>()
        .list(&lab_selector("demo"))
        .await
        .unwrap()
        .items;
    let deps = env
        .api::<Deployment>()
        .list(&lab_selector("demo"))
        .await
        .unwrap()
        .items;
    let sets = env
        .api::<StatefulSet>()
        .list(&lab_selector("demo"))
        .await
        .unwrap()
        .items;
    let metas = cms
        .iter()
        .map(|o| &o.metadata)
        .chain(svcs.iter().map(|o| &o.metadata));
    let metas = metas
        .chain(deps.iter().map(|o| &o.metadata))
        .chain(sets.iter().map(|o| &o.metadata));
    for m in metas {
        let owner = &m.owner_references.as_ref().expect("owner reference")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("TracingLab", uid.as_str(), Some(true))
        );
        let labels = m.labels.as_ref().expect("labels");
        assert_eq!(labels["app.kubernetes.io/part-of"], "tracing-lab");
        assert_eq!(labels["app.kubernetes.io/instance"], "demo");
        assert!(
            labels.contains_key("app.kubernetes.io/name")
                && labels.contains_key("app.kubernetes.io/component")
        );
    }

    // The lab configuration document is the resolved LabConfig the services parse.
    let doc = &env
        .api::<ConfigMap>()
        .get("demo-config")
        .await
        .unwrap()
        .data
        .unwrap()["lab-config.json"];
    assert_eq!(
        tracing_lab_config::LabConfig::parse(doc).unwrap(),
        tracing_lab_config::LabConfig::default()
    );

    // The env contract, as stored by the API server.
    let processing = env.deployment("demo-processing").await;
    let pod = processing.spec.unwrap().template.spec.unwrap();
    let env_of = |name: &str| {
        pod.containers[0]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        env_of("OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
        Some("http://demo-collector:4317")
    );
    assert_eq!(
        env_of("KAFKA_BOOTSTRAP_SERVERS").as_deref(),
        Some("demo-kafka:9092")
    );
    assert_eq!(
        env_of("REDIS_URL").as_deref(),
        Some("redis://demo-redis:6379")
    );
    assert_eq!(
        pod.containers[0]
            .security_context
            .as_ref()
            .unwrap()
            .read_only_root_filesystem,
        Some(true)
    );

    let api_svc = env
        .api::<Service>()
        .get("demo-api")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(api_svc.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(api_svc.ports.unwrap()[0].port, 8080);

    let status = eventually("status written", TIMEOUT, || async {
        env.lab("demo")
            .await
            .status
            .filter(|s| s.observed_generation == Some(1))
            .ok_or("no status".to_string())
    })
    .await;
    assert_eq!(status.services_ready.as_deref(), Some("0/4"));
    assert_eq!(
        status.urls.unwrap().api,
        "http://demo-api.students.svc:8080"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_scale_holds_spec_replicas_are_enforced_and_drift_is_corrected() {
    let env = start().await;
    env.create_lab(
        "demo",
        json!({"services": {"notification": {"replicas": 2}}}),
    )
    .await;
    env.wait_children("demo").await;

    let out = env.kubectl(&["scale", "deployment/demo-processing", "--replicas=3"]);
    assert!(
        out.status.success(),
        "kubectl scale: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = config_hash(&env.deployment("demo-processing").await);

    // A spec change that touches processing's pods forces a reconcile that re-applies it.
    env.patch_spec(
        "demo",
        json!({"services": {"processing": {"concurrency": 2}}}),
    )
    .await;
    let processing = eventually(
        "processing re-applied with the new config hash",
        TIMEOUT,
        || async {
            let d = env.deployment("demo-processing").await;
            let hash = config_hash(&d);
            (hash != before).then_some(d).ok_or(format!("{hash:?}"))
        },
    )
    .await;
    assert_eq!(
        processing.spec.unwrap().replicas,
        Some(3),
        "kubectl scale survives the reconcile"
    );

    // Replicas set in the spec are enforced, even against kubectl scale.
    assert_eq!(
        env.deployment("demo-notification")
            .await
            .spec
            .unwrap()
            .replicas,
        Some(2)
    );
    let out = env.kubectl(&["scale", "deployment/demo-notification", "--replicas=5"]);
    assert!(
        out.status.success(),
        "kubectl scale: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("notification back at 2 replicas", TIMEOUT, || async {
        let r = env
            .deployment("demo-notification")
            .await
            .spec
            .unwrap()
            .replicas;
        (r == Some(2)).then_some(()).ok_or(format!("{r:?}"))
    })
    .await;

    // Drift in an owned field (the configuration document) is put back.
    let cms = env.api::<ConfigMap>();
    cms.patch(
        "demo-config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"lab-config.json": "{}"}})),
    )
    .await
    .unwrap();
    eventually("configuration document restored", TIMEOUT, || async {
        let doc = cms.get("demo-config").await.unwrap().data.unwrap()["lab-config.json"].clone();
        (doc != "{}").then_some(()).ok_or(doc)
    })
    .await;
    let doc = &cms.get("demo-config").await.unwrap().data.unwrap()["lab-config.json"];
    assert_eq!(
        tracing_lab_config::LabConfig::parse(doc)
            .unwrap()
            .processing
            .concurrency,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_turns_ready_when_its_workloads_are_available() {
    let env = start().await;
    env.create_lab("demo", json!({})).await;
    env.wait_children("demo").await;
    eventually("Ready=False while nothing runs", TIMEOUT, || async {
        let c = condition(&env.lab("demo").await, "Ready");
        c.as_ref()
            .filter(|c| c.0 == "False" && c.2.contains("kafka 0/1"))
            .map(|_| ())
            .ok_or(format!("{c:?}"))
    })
    .await;

    env.mark_available("demo").await;
    let out = env.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "tlab/demo",
        "--timeout=30s",
    ]);
    assert!(
        out.status.success(),
        "kubectl wait: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let lab = env.lab("demo").await;
    let status = lab.status.as_ref().unwrap();
    assert_eq!(status.services_ready.as_deref(), Some("4/4"));
    assert!(
        status.components.values().all(|c| c.available),
        "{:?}",
        status.components
    );
    assert_eq!(condition(&lab, "Progressing").unwrap().0, "False");
    assert_eq!(condition(&lab, "Degraded").unwrap().0, "False");

    let out = env.kubectl(&["get", "tlab", "demo"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("READY") && table.contains("True") && table.contains("4/4"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_the_load_generator_off_removes_it() {
    let env = start().await;
    env.create_lab(
        "demo",
        json!({"loadGenerator": {"enabled": true, "ordersPerSecond": 5}}),
    )
    .await;
    env.wait_children("demo").await;
    let loadgen = || async {
        env.names::<Deployment>("demo")
            .await
            .contains(&"demo-loadgen".into())
    };
    assert!(loadgen().await);

    env.patch_spec("demo", json!({"loadGenerator": {"enabled": false}}))
        .await;
    env.wait_children("demo").await;
    assert!(!loadgen().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_rejects_an_invalid_lab_with_the_schema_message() {
    let env = start().await;
    let manifest = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        manifest.path(),
        "apiVersion: tracinglab.dev/v1alpha1\nkind: TracingLab\nmetadata: {name: bad}\nspec:\n  \
         sampling: {head: {ratio: 1.5}}\n  kafka: {partitions: 0, resources: {requests: {memory: -1Gi}, limits: {cpu: -1}}, storage: {size: -1Gi}}\n  \
         services: {processing: {replicas: -1, workload: {cpuWeight: 1, ioWeight: 1, intensities: [extreme]}}}\n",
    )
    .unwrap();
    let out = env.kubectl(&["apply", "-f", manifest.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "spec.sampling.head.ratio",
        "less than or equal to 1",
        "spec.kafka.partitions",
        "spec.kafka.resources.requests.memory: Invalid value: \"-1Gi\"",
        "spec.kafka.resources.limits.cpu: Invalid value: -1",
        "spec.kafka.storage.size: Invalid value: \"-1Gi\"",
        "spec.services.processing.replicas",
        "Unsupported value: \"extreme\"",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in: {stderr}"
        );
    }
    assert!(
        env.api::<TracingLab>()
            .get_opt("bad")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semantic_problem_degrades_the_lab_and_deletes_nothing() {
    let env = start().await;
    env.create_lab("demo", json!({})).await;
    env.wait_children("demo").await;
    let before = env.deployment("demo-processing").await;
    let children = async || {
        (
            env.names::<ConfigMap>("demo").await,
            env.names::<Service>("demo").await,
            env.names::<StatefulSet>("demo").await,
            env.names::<Deployment>("demo").await,
        )
    };
    let children_before = children().await;

    env.patch_spec(
        "demo",
        json!({"services": {"processing": {"workload": {"cpuWeight": 0, "ioWeight": 0, "intensities": ["light"]}}}}),
    )
    .await;
    let (_, _, message) = eventually("Degraded=True", TIMEOUT, || async {
        let lab = env.lab("demo").await;
        let c = condition(&lab, "Degraded");
        c.clone()
            .filter(|c| {
                c.0 == "True"
                    && c.1 == "InvalidSpec"
                    && lab.status.as_ref().unwrap().observed_generation == Some(2)
            })
            .ok_or(format!("{c:?}"))
    })
    .await;
    assert!(
        message.contains("spec.services.processing.workload"),
        "{message}"
    );

    assert_eq!(children().await, children_before, "nothing deleted");
    let after = env.deployment("demo-processing").await;
    assert_eq!(
        config_hash(&after),
        config_hash(&before),
        "the refused spec was not applied"
    );

    let out = env.kubectl(&[
        "get",
        "events.events.k8s.io",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("InvalidSpec"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Fixing the spec clears the condition.
    env.patch_spec(
        "demo",
        json!({"services": {"processing": {"workload": null}}}),
    )
    .await;
    eventually("Degraded=False", TIMEOUT, || async {
        let c = condition(&env.lab("demo").await, "Degraded");
        c.as_ref()
            .filter(|c| c.0 == "False")
            .map(|_| ())
            .ok_or(format!("{c:?}"))
    })
    .await;
}

/// A child the API server refuses (a node port another lab holds) degrades the lab with the
/// server's message. Sending it again unchanged would be refused again, so the operator does not
/// retry it on a backoff of seconds: it waits for a change, and reconciles at once on one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_the_api_server_refuses_waits_for_a_change_of_the_lab() {
    let shared = std::sync::Arc::new(tracing_lab_operator::metrics::Shared::default());
    let env = start_with(tracing_lab_operator::Config {
        shared: shared.clone(),
        ..Default::default()
    })
    .await;
    let ports = json!({"access": {"nodePorts": {"api": 30080, "jaegerUi": 30686}}});
    env.create_lab("first", ports.clone()).await;
    env.wait_children("first").await;
    env.create_lab("second", ports).await;
    let message = eventually("second Degraded=True", TIMEOUT, || async {
        match condition(&env.lab("second").await, "Degraded") {
            Some((status, reason, message)) if status == "True" && reason == "ApplyFailed" => {
                Ok(message)
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        message.contains("Service second-api") && message.contains("already allocated"),
        "{message}"
    );
    // The children created by the first attempt trigger a second one at once; after it, a
    // backoff (2 s, 4 s, 8 s) would try again within the next 8 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failed = shared.errors.get();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        shared.errors.get(),
        failed,
        "the refused apply was sent again"
    );

    // The first lab moves to other ports, and the second's next change applies it at once.
    env.patch_spec(
        "first",
        json!({"access": {"nodePorts": {"api": 30081, "jaegerUi": 30687}}}),
    )
    .await;
    eventually("first's node ports moved", TIMEOUT, || async {
        let services = env
            .api::<Service>()
            .list(&ListParams::default().labels("app.kubernetes.io/instance=first"))
            .await
            .unwrap();
        let ports: Vec<i32> = services
            .iter()
            .flat_map(|s| s.spec.iter().flat_map(|s| s.ports.iter().flatten()))
            .filter_map(|p| p.node_port)
            .collect();
        let mut ports_sorted = ports.clone();
        ports_sorted.sort();
        (ports_sorted == [30081, 30687])
            .then_some(())
            .ok_or(format!("{ports:?}"))
    })
    .await;
    env.patch_spec("second", json!({"loadGenerator": {"ordersPerSecond": 5}}))
        .await;
    eventually("second not Degraded", TIMEOUT, || async {
        let lab = env.lab("second").await;
        match condition(&lab, "Degraded") {
            Some((status, ..)) if status == "False" => Ok(()),
            other => Err(format!(
                "{other:?} at generation {:?}",
                lab.status.and_then(|s| s.observed_generation)
            )),
        }
    })
    .await;
    env.wait_children("second").await;
}

/// Waits until the lab's Ready condition is False with `reason` and its message starts with
/// `message`; returns the lab.
async fn wait_blocked(env: &OperatorEnv, reason: &str, message: &str) -> TracingLab {
    eventually(&format!("Ready=False {reason}"), TIMEOUT, || async {
        let lab = env.lab("demo").await;
        match condition(&lab, "Ready") {
            Some((s, r, m)) if s == "False" && r == reason && m.starts_with(message) => Ok(lab),
            c => Err(format!("{c:?}")),
        }
    })
    .await
}

/// Events the operator published about the lab with `reason`.
async fn lab_events(env: &OperatorEnv, reason: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
    env.api::<k8s_openapi::api::events::v1::Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("demo")
                && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

/// The lab reports `component: message` with `reason` in its Ready condition, its component
/// status, `kubectl get` (column MESSAGE) and one event (`kubectl describe`), however often it is
/// reconciled; `clear` then makes the component's pod ready and the reason goes away.
async fn reports_then_clears(
    env: &OperatorEnv,
    component: &str,
    reason: &str,
    message: &str,
    clear: impl AsyncFnOnce(),
) {
    let expected = format!("{component}: {message}");
    let lab = wait_blocked(env, reason, &expected).await;
    let c = &lab.status.as_ref().unwrap().components[component];
    assert_eq!(c.reason.as_deref(), Some(reason));
    assert!(
        c.message
            .as_deref()
            .unwrap_or_default()
            .starts_with(message),
        "{c:?}"
    );
    let table = String::from_utf8_lossy(&env.kubectl(&["get", "tlab", "demo"]).stdout).into_owned();
    assert!(
        table
            .lines()
            .next()
            .unwrap_or_default()
            .ends_with("MESSAGE")
            && table.contains(&expected),
        "{table}"
    );

    // More reconciles (a spec change, a pod change) publish nothing new: the reason is unchanged.
    env.patch_spec("demo", json!({"kafka": {"partitions": 7}}))
        .await;
    eventually("generation 2 reconciled", TIMEOUT, || async {
        let lab = env.lab("demo").await;
        let seen = lab.status.as_ref().and_then(|s| s.observed_generation);
        (seen == Some(2)).then_some(()).ok_or(format!("{seen:?}"))
    })
    .await;
    wait_blocked(env, reason, &expected).await;
    let events = eventually("one event", TIMEOUT, || async {
        let events = lab_events(env, reason).await;
        (!events.is_empty())
            .then_some(events)
            .ok_or("none".to_string())
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event
            .note
            .as_deref()
            .unwrap_or_default()
            .starts_with(&expected),
        "{event:?}"
    );
    assert_eq!(
        event.series.as_ref().map(|s| s.count),
        None,
        "published once, not once per reconcile"
    );
    let describe =
        String::from_utf8_lossy(&env.kubectl(&["describe", "tlab", "demo"]).stdout).into_owned();
    assert!(
        describe.contains(reason) && describe.contains(component),
        "{describe}"
    );

    clear().await;
    eventually("the reason clears", TIMEOUT, || async {
        let lab = env.lab("demo").await;
        let c = condition(&lab, "Ready");
        let gone = c
            .as_ref()
            .is_some_and(|c| !c.2.contains(message) && c.1 != reason)
            && lab.status.as_ref().unwrap().components[component]
                .reason
                .is_none();
        gone.then_some(()).ok_or(format!("{c:?}"))
    })
    .await;
}

async fn lab_with_children(env: &OperatorEnv) {
    env.create_lab("demo", json!({})).await;
    env.wait_children("demo").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_is_named() {
    let env = start().await;
    lab_with_children(&env).await;
    let image = "tracing-lab-service:typo";
    let waiting = json!({"waiting": {"reason": "ImagePullBackOff",
        "message": format!("Back-off pulling image \"{image}\"")}});
    let status = pods::status(
        "Pending",
        false,
        vec![pods::container("api", image, false, 0, waiting)],
    );
    pods::create(&env.client(), NS, "demo", "api", "demo-api-7d9f-x1", status)
        .await
        .unwrap();
    reports_then_clears(
        &env,
        "api",
        "ImagePullBackOff",
        &format!("ImagePullBackOff: image {image} cannot be pulled"),
        async || {
            pods::set_status(&env.client(), NS, "demo-api-7d9f-x1", pods::ready("api", 0))
                .await
                .unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_gives_the_last_exit_and_restarts() {
    let env = start().await;
    lab_with_children(&env).await;
    let crashing = pods::container(
        "kafka",
        kafka::IMAGE,
        false,
        3,
        json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}}),
    );
    let mut status = pods::status("Running", false, vec![crashing]);
    status["containerStatuses"][0]["lastState"] =
        json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}});
    pods::create(&env.client(), NS, "demo", "kafka", "demo-kafka-0", status)
        .await
        .unwrap();
    reports_then_clears(
        &env,
        "kafka",
        "OOMKilled",
        "OOMKilled (exit 137), 3 restarts",
        async || {
            pods::set_status(&env.client(), NS, "demo-kafka-0", pods::ready("kafka", 4))
                .await
                .unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_pod_carries_the_schedulers_message() {
    let env = start().await;
    lab_with_children(&env).await;
    let scheduler = "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";
    let status = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": scheduler}]});
    pods::create(&env.client(), NS, "demo", "kafka", "demo-kafka-0", status)
        .await
        .unwrap();
    reports_then_clears(
        &env,
        "kafka",
        "Unschedulable",
        &format!("Unschedulable: {scheduler}"),
        async || {
            pods::set_status(&env.client(), NS, "demo-kafka-0", pods::ready("kafka", 0))
                .await
                .unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_whose_pods_are_refused_gives_the_api_servers_message() {
    let env = start().await;
    lab_with_children(&env).await;
    let refused = "pods \"demo-redis-5c8d9-\" is forbidden: exceeded quota: students, requested: memory=256Mi, used: memory=1Gi, limited: memory=1Gi";
    // The Deployment controller copies its ReplicaSet's condition to the Deployment.
    let failure = |status: &str| {
        json!({"status": {"observedGeneration": 1, "conditions": [{"type": "ReplicaFailure",
            "status": status, "reason": "FailedCreate", "message": refused}]}})
    };
    let deployments = env.api::<Deployment>();
    deployments
        .patch_status(
            "demo-redis",
            &PatchParams::default(),
            &Patch::Merge(failure("True")),
        )
        .await
        .unwrap();
    reports_then_clears(
        &env,
        "redis",
        "FailedCreate",
        &format!("FailedCreate: {refused}"),
        async || {
            deployments
                .patch_status(
                    "demo-redis",
                    &PatchParams::default(),
                    &Patch::Merge(failure("False")),
                )
                .await
                .unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_set_whose_pod_is_refused_gives_the_api_servers_message() {
    let env = start().await;
    lab_with_children(&env).await;
    let refused = "create Pod demo-kafka-0 in StatefulSet demo-kafka failed error: pods \"demo-kafka-0\" is forbidden: exceeded quota: students, requested: memory=1Gi, used: memory=0, limited: memory=512Mi";
    // The StatefulSet controller reports it only as an event: the event itself brings the reconcile.
    pods::warn(
        &env.client(),
        NS,
        ("StatefulSet", "demo-kafka"),
        "FailedCreate",
        refused,
    )
    .await
    .unwrap();
    reports_then_clears(
        &env,
        "kafka",
        "FailedCreate",
        &format!("FailedCreate: {refused}"),
        async || {
            pods::create(
                &env.client(),
                NS,
                "demo",
                "kafka",
                "demo-kafka-0",
                pods::ready("kafka", 0),
            )
            .await
            .unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_readiness_probe_is_reported() {
    let env = start().await;
    lab_with_children(&env).await;
    let running = pods::container(
        "api",
        "tracing-lab-service:0.1.0",
        false,
        0,
        json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}),
    );
    pods::create(
        &env.client(),
        NS,
        "demo",
        "api",
        "demo-api-7d9f-x1",
        pods::status("Running", false, vec![running]),
    )
    .await
    .unwrap();
    // The kubelet reports the failing probe after the container started, as an event only.
    let probe = "Readiness probe failed: HTTP probe failed with statuscode: 503";
    pods::warn(
        &env.client(),
        NS,
        ("Pod", "demo-api-7d9f-x1"),
        "Unhealthy",
        probe,
    )
    .await
    .unwrap();
    reports_then_clears(
        &env,
        "api",
        "ReadinessProbeFailed",
        &format!("ReadinessProbeFailed: container api: {probe}"),
        async || {
            pods::set_status(&env.client(), NS, "demo-api-7d9f-x1", pods::ready("api", 0))
                .await
                .unwrap();
        },
    )
    .await;
}
