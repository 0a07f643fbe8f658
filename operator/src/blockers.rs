//! Why a component is not ready, as a pure function of what the cluster reports about it: the
//! workloads' conditions, the pods' statuses (written by the kubelet and the scheduler) and the
//! Warning events on them. Each reason is worded so a student knows what to change.

use crate::apply::Applied;
use crate::crd::ComponentStatus;
use crate::readiness::component_name;
use crate::render::common::COMPONENT;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use std::collections::BTreeMap;

/// The first reason a component is not ready: a condition reason (`OOMKilled`, ...) and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    pub reason: String,
    pub message: String,
}

impl Blocker {
    fn new(reason: &str, message: String) -> Self {
        Self {
            reason: reason.to_string(),
            message,
        }
    }

    fn explains(self, component: &mut ComponentStatus) {
        component.reason = Some(self.reason);
        component.message = Some(self.message);
    }
}

/// Says why each component of `components` that is not available is not (its `reason` and
/// `message`), where the lab's pods and the Warning events of its namespace tell. `applied` are
/// the lab's workloads as the API server returned them.
pub fn explain(
    lab: &str,
    components: &mut BTreeMap<String, ComponentStatus>,
    applied: &Applied,
    pods: &[&Pod],
    events: &[Event],
) {
    for d in &applied.deployments {
        let name = d.metadata.name.clone().unwrap_or_default();
        let component = component_name(lab, &name);
        let Some(status) = components.get_mut(&component).filter(|c| !c.available) else {
            continue;
        };
        // The Deployment controller copies its ReplicaSet's `ReplicaFailure` condition here.
        let failed_create = d
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
            .map(|c| c.message.clone().unwrap_or_default());
        let blocker = failed_create
            .map(|m| Blocker::new("FailedCreate", format!("FailedCreate: {m}")))
            .or_else(|| first_pod_blocker(&component, pods, events));
        if let Some(b) = blocker {
            b.explains(status);
        }
    }
    for s in &applied.stateful_sets {
        let name = s.metadata.name.clone().unwrap_or_default();
        let component = component_name(lab, &name);
        let Some(status) = components.get_mut(&component).filter(|c| !c.available) else {
            continue;
        };
        let existing = pods.iter().filter(|p| is_of(p, &component)).count();
        // The StatefulSet controller reports a refused pod only as an event on the StatefulSet;
        // once every pod exists, an old such event no longer explains anything.
        let failed_create = (existing < status.desired as usize)
            .then(|| latest(events, "StatefulSet", &name, "FailedCreate"))
            .flatten()
            .map(|e| {
                Blocker::new(
                    "FailedCreate",
                    format!("FailedCreate: {}", e.message.clone().unwrap_or_default()),
                )
            });
        if let Some(b) = failed_create.or_else(|| first_pod_blocker(&component, pods, events)) {
            b.explains(status);
        }
    }
}

fn is_of(pod: &Pod, component: &str) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(COMPONENT))
            .is_some_and(|c| c == component)
}

fn first_pod_blocker(component: &str, pods: &[&Pod], events: &[Event]) -> Option<Blocker> {
    pods.iter()
        .filter(|p| is_of(p, component))
        .find_map(|p| pod_blocker(p, events))
}

/// The most recent Warning event with `reason` about one object.
fn latest<'a>(events: &'a [Event], kind: &str, name: &str, reason: &str) -> Option<&'a Event> {
    events
        .iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.involved_object.kind.as_deref() == Some(kind)
                && e.involved_object.name.as_deref() == Some(name)
        })
        .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0))
}

/// Why one pod is not ready: scheduling first, then each container in start order.
pub fn pod_blocker(pod: &Pod, events: &[Event]) -> Option<Blocker> {
    let status = pod.status.as_ref()?;
    let conditions = status.conditions.as_deref().unwrap_or_default();
    if conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
    {
        return None;
    }
    if let Some(c) = conditions.iter().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    }) {
        return Some(Blocker::new(
            "Unschedulable",
            format!(
                "Unschedulable: {}",
                c.message.as_deref().unwrap_or("no node can run the pod")
            ),
        ));
    }
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    containers
        .filter(|c| !c.ready)
        .find_map(|c| container_blocker(c, pod_name, events))
}

fn container_blocker(c: &ContainerStatus, pod: &str, events: &[Event]) -> Option<Blocker> {
    let state = c.state.as_ref();
    let waiting = state.and_then(|s| s.waiting.as_ref());
    let waiting_reason = waiting
        .and_then(|w| w.reason.as_deref())
        .unwrap_or_default();
    match waiting_reason {
        "ErrImagePull" | "ImagePullBackOff" => {
            return Some(Blocker::new(
                waiting_reason,
                format!(
                    "{waiting_reason}: image {} cannot be pulled; check its name and tag, and that the cluster can reach its registry (or load it with `kind load docker-image`)",
                    c.image
                ),
            ));
        }
        // The kubelet is just creating or starting the container: nothing is wrong yet.
        "" | "ContainerCreating" | "PodInitializing" => {}
        "CrashLoopBackOff" => {}
        other => {
            let detail = waiting.and_then(|w| w.message.as_deref());
            return Some(Blocker::new(
                other,
                match detail {
                    Some(m) => format!("{other}: {m}"),
                    None => other.to_string(),
                },
            ));
        }
    }
    // A container that exited and restarted, whether now backing off or running again.
    if let Some(t) = c.last_state.as_ref().and_then(|s| s.terminated.as_ref())
        && (c.restart_count > 0 || waiting_reason == "CrashLoopBackOff")
    {
        let how = t.reason.as_deref().unwrap_or("Error");
        let restarts = match c.restart_count {
            1 => "1 restart".to_string(),
            n => format!("{n} restarts"),
        };
        let (reason, message) = if how == "OOMKilled" {
            (
                "OOMKilled",
                format!("OOMKilled (exit {}), {restarts}", t.exit_code),
            )
        } else {
            (
                "CrashLoopBackOff",
                format!("CrashLoopBackOff: {how} (exit {}), {restarts}", t.exit_code),
            )
        };
        return Some(Blocker::new(reason, message));
    }
    // Running, not ready, and the kubelet reported the readiness probe failing.
    if state.and_then(|s| s.running.as_ref()).is_some() {
        let failed = latest(events, "Pod", pod, "Unhealthy").and_then(|e| e.message.as_deref())?;
        if failed.starts_with("Readiness probe failed") {
            return Some(Blocker::new(
                "ReadinessProbeFailed",
                format!("ReadinessProbeFailed: container {}: {failed}", c.name),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "demo-kafka-0", "labels": {COMPONENT: "kafka"}},
            "status": status,
        }))
        .unwrap()
    }

    fn container(state: serde_json::Value) -> serde_json::Value {
        let mut c = json!({"name": "kafka", "image": "apache/kafka:9", "imageID": "",
            "ready": false, "restartCount": 0});
        c.as_object_mut()
            .unwrap()
            .extend(state.as_object().unwrap().clone());
        json!({"containerStatuses": [c]})
    }

    fn event(kind: &str, name: &str, reason: &str, message: &str) -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{name}.1")},
            "involvedObject": {"kind": kind, "name": name},
            "reason": reason, "message": message, "type": "Warning",
        }))
        .unwrap()
    }

    fn message(status: serde_json::Value, events: &[Event]) -> Option<String> {
        pod_blocker(&pod(status), events).map(|b| format!("{}|{}", b.reason, b.message))
    }

    #[test]
    fn image_pull_failures_name_the_image() {
        let m = message(
            container(json!({"state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}})),
            &[],
        )
        .unwrap();
        assert!(
            m.starts_with(
                "ImagePullBackOff|ImagePullBackOff: image apache/kafka:9 cannot be pulled"
            ),
            "{m}"
        );
        let m = message(
            container(json!({"state": {"waiting": {"reason": "ErrImagePull"}}})),
            &[],
        );
        assert!(m.unwrap().starts_with("ErrImagePull|"));
    }

    #[test]
    fn crash_loops_give_the_last_exit_and_restarts() {
        let oom = container(json!({"restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}));
        assert_eq!(
            message(oom, &[]).unwrap(),
            "OOMKilled|OOMKilled (exit 137), 3 restarts"
        );
        let error = container(json!({"restartCount": 1,
            "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}));
        assert_eq!(
            message(error, &[]).unwrap(),
            "CrashLoopBackOff|CrashLoopBackOff: Error (exit 1), 1 restart"
        );
    }

    #[test]
    fn unschedulable_pods_carry_the_schedulers_message() {
        let m = message(
            json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient memory."}]}),
            &[],
        );
        assert_eq!(
            m.unwrap(),
            "Unschedulable|Unschedulable: 0/1 nodes are available: 1 Insufficient memory."
        );
    }

    #[test]
    fn a_failing_readiness_probe_is_read_from_the_kubelets_event() {
        let running = container(json!({"state": {"running": {}}}));
        assert_eq!(message(running.clone(), &[]), None, "no evidence, no blame");
        let events = [
            event(
                "Pod",
                "other-0",
                "Unhealthy",
                "Readiness probe failed: other",
            ),
            event(
                "Pod",
                "demo-kafka-0",
                "Unhealthy",
                "Readiness probe failed: dial tcp 10.0.0.1:9092: connect: connection refused",
            ),
        ];
        assert_eq!(
            message(running, &events).unwrap(),
            "ReadinessProbeFailed|ReadinessProbeFailed: container kafka: Readiness probe failed: dial tcp 10.0.0.1:9092: connect: connection refused"
        );
    }

    #[test]
    fn starting_and_ready_pods_block_nothing() {
        let creating = container(json!({"state": {"waiting": {"reason": "ContainerCreating"}}}));
        assert_eq!(message(creating, &[]), None);
        let mut ready = container(json!({"state": {"running": {}}, "ready": true}));
        ready["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(message(ready, &[]), None);
        let config = container(
            json!({"state": {"waiting": {"reason": "CreateContainerConfigError",
            "message": "configmap \"x\" not found"}}}),
        );
        assert_eq!(
            message(config, &[]).unwrap(),
            "CreateContainerConfigError|CreateContainerConfigError: configmap \"x\" not found"
        );
    }
}
