//! Whether a workload is available, from what the API server returned for it: the one reading of
//! readiness that the status and the blockers share.

use crate::crd::ComponentStatus;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};

/// Readiness of a Deployment: rolled out at its current generation with every replica available.
pub fn deployment_status(d: &Deployment) -> ComponentStatus {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    let current = st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    ComponentStatus {
        kind: "Deployment".into(),
        name: d.metadata.name.clone().unwrap_or_default(),
        desired,
        ready: st.ready_replicas.unwrap_or(0),
        available: current && available >= desired && updated >= desired,
        ..Default::default()
    }
}

/// Readiness of a StatefulSet: rolled out at its current generation with every replica ready.
pub fn stateful_set_status(s: &StatefulSet) -> ComponentStatus {
    let desired = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = s.status.clone().unwrap_or_default();
    let current = st.observed_generation.unwrap_or(0) >= s.metadata.generation.unwrap_or(0);
    let ready = st.ready_replicas.unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    ComponentStatus {
        kind: "StatefulSet".into(),
        name: s.metadata.name.clone().unwrap_or_default(),
        desired,
        ready,
        available: current && ready >= desired && updated >= desired,
        ..Default::default()
    }
}

/// Component name (`api`, `kafka`, ...) from a child name `<lab>-<component>`.
pub fn component_name(lab: &str, object: &str) -> String {
    object
        .strip_prefix(&format!("{lab}-"))
        .unwrap_or(object)
        .to_string()
}
