//! Pods and events as a kubelet and a scheduler would write them, for a control plane that has
//! neither: a pod of a lab's component carries the selector labels its ReplicaSet or StatefulSet
//! stamps from the pod template, and its status the container states and conditions the kubelet
//! reports.

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Event, Pod, ServiceAccount};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// Creates the pod `name` of `component` of `lab` and writes `status` as the kubelet would.
pub async fn create(
    client: &Client,
    namespace: &str,
    lab: &str,
    component: &str,
    name: &str,
    status: Value,
) -> Result<Pod> {
    // The ServiceAccount admission plugin wants the namespace's `default` account, which the
    // controller-manager would have created.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    if accounts.get_opt("default").await?.is_none() {
        let account = serde_json::from_value(json!({"metadata": {"name": "default"}}))?;
        match accounts.create(&PostParams::default(), &account).await {
            // Pods created at once race to create it.
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "app.kubernetes.io/instance": lab,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/name": component,
            "app.kubernetes.io/part-of": "tracing-lab",
            "app.kubernetes.io/managed-by": "tracing-lab-operator",
        }},
        "spec": {"containers": [{"name": component, "image": "example.invalid/lab:1"}],
                 "automountServiceAccountToken": false},
    }))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("creating pod {name}"))?;
    set_status(client, namespace, name, status).await
}

/// Writes the pod's status (lists replaced whole), as the kubelet does.
pub async fn set_status(
    client: &Client,
    namespace: &str,
    name: &str,
    status: Value,
) -> Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .with_context(|| format!("writing the status of pod {name}"))
}

/// One container's status: `state` is `{"waiting": ...}`, `{"running": ...}` or `{"terminated": ...}`.
pub fn container(name: &str, image: &str, ready: bool, restarts: i32, state: Value) -> Value {
    json!({"name": name, "image": image, "imageID": "", "ready": ready,
           "restartCount": restarts, "started": ready, "state": state})
}

/// A pod's status with its conditions (`PodScheduled`, `Ready`, ...) and container statuses.
pub fn status(phase: &str, ready: bool, containers: Vec<Value>) -> Value {
    let ready = if ready { "True" } else { "False" };
    json!({"phase": phase,
           "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": ready}],
           "containerStatuses": containers})
}

/// A running, ready pod of one container.
pub fn ready(container_name: &str, restarts: i32) -> Value {
    status(
        "Running",
        true,
        vec![container(
            container_name,
            "example.invalid/lab:1",
            true,
            restarts,
            json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}),
        )],
    )
}

/// A Warning event about an object, as the kubelet or a controller records it.
pub async fn warn(
    client: &Client,
    namespace: &str,
    (kind, name): (&str, &str),
    reason: &str,
    message: &str,
) -> Result<Event> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let event: Event = serde_json::from_value(json!({
        "metadata": {"generateName": format!("{name}.")},
        "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
        "reason": reason, "message": message, "type": "Warning",
        "source": {"component": "kubelet"},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }))?;
    Api::<Event>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &event)
        .await
        .with_context(|| format!("recording {reason} on {kind} {name}"))
}
