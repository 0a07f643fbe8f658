//! Whether each workload is available, from what the API server returned for it: read once per
//! reconcile, then explained (blockers) and reported (status).

use crate::apply::Applied;
use crate::crd::ComponentStatus;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// Every workload of the lab by component name (`api`, `kafka`, ...), as the API server returned
/// them after the apply: the one place availability is decided.
pub fn components(lab: &str, applied: &Applied) -> BTreeMap<String, ComponentStatus> {
    let deployments = applied.deployments.iter().map(deployment_status);
    let sets = applied.stateful_sets.iter().map(stateful_set_status);
    deployments
        .chain(sets)
        .map(|c| (component_name(lab, &c.name), c))
        .collect()
}

/// Readiness of a Deployment: rolled out at its current generation with every replica available.
pub fn deployment_status(d: &Deployment) -> ComponentStatus {
    let st = d.status.clone().unwrap_or_default();
    let replicas = d.spec.as_ref().and_then(|s| s.replicas);
    let counts = [
        st.ready_replicas,
        st.available_replicas,
        st.updated_replicas,
    ];
    rolled_out(
        "Deployment",
        &d.metadata,
        replicas,
        st.observed_generation,
        counts,
    )
}

/// Readiness of a StatefulSet: rolled out at its current generation with every replica ready.
pub fn stateful_set_status(s: &StatefulSet) -> ComponentStatus {
    let st = s.status.clone().unwrap_or_default();
    let replicas = s.spec.as_ref().and_then(|s| s.replicas);
    // A StatefulSet's pods serve once ready: it counts no separate "available".
    let counts = [st.ready_replicas, st.ready_replicas, st.updated_replicas];
    rolled_out(
        "StatefulSet",
        &s.metadata,
        replicas,
        st.observed_generation,
        counts,
    )
}

/// `[ready, serving, updated]` replicas against the wanted ones, at the object's generation.
fn rolled_out(
    kind: &str,
    meta: &ObjectMeta,
    replicas: Option<i32>,
    observed_generation: Option<i64>,
    [ready, serving, updated]: [Option<i32>; 3],
) -> ComponentStatus {
    let desired = replicas.unwrap_or(1);
    let current = observed_generation.unwrap_or(0) >= meta.generation.unwrap_or(0);
    ComponentStatus {
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        desired,
        ready: ready.unwrap_or(0),
        available: current && serving.unwrap_or(0) >= desired && updated.unwrap_or(0) >= desired,
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
