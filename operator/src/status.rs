//! The lab's status as a pure function of what was applied (or why nothing was).

use crate::apply::Applied;
use crate::conditions::Observation;
use crate::crd::{ComponentStatus, LabUrls, TracingLab, TracingLabStatus};
use crate::render::LabRef;
use crate::render::common::child_name;
use crate::render::{collector, jaeger, kafka, services};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;
use tracing_lab_config::Role;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// What the reconcile achieved.
pub enum Outcome<'a> {
    /// Everything was applied; these are its workloads by component, with why those not
    /// available are not.
    Applied(&'a BTreeMap<String, ComponentStatus>),
    /// The spec has problems the services would refuse; nothing was applied.
    Invalid(&'a [String]),
    /// Applying failed (message from the API server).
    Failed(&'a str),
}

/// The blocked components as `kafka: OOMKilled (exit 137), 3 restarts; ...`, with the first one's
/// reason; `None` when nothing is known to block.
pub fn blocked(components: &BTreeMap<String, ComponentStatus>) -> Option<(String, String)> {
    let mut blocked = components
        .iter()
        .filter(|(_, c)| !c.available)
        .filter_map(|(name, c)| {
            Some((
                c.reason.as_ref()?,
                format!("{name}: {}", c.message.as_deref()?),
            ))
        })
        .peekable();
    let reason = blocked.peek()?.0.clone();
    let messages: Vec<String> = blocked.map(|(_, m)| m).collect();
    Some((reason, messages.join("; ")))
}

/// Consumer Deployments with more replicas than their topic has partitions: each replica is one
/// member of the consumer group and each partition goes to one member, so the extra replicas get
/// nothing. (Concurrency runs inside a replica, over messages of its own partitions, and is not
/// limited by the partition count.)
pub fn idle_consumers(applied: &Applied, lab: &str, partitions: i32) -> Vec<String> {
    Role::CONSUMERS
        .iter()
        .filter_map(|role| {
            let name = child_name(lab, role.name());
            let d = applied.deployments.iter().find(|d| d.metadata.name.as_deref() == Some(&name))?;
            let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            (replicas > partitions).then(|| {
                format!(
                    "{role}: {replicas} replicas for {partitions} partitions of {}; {} replicas stay idle",
                    role.input_topic().unwrap_or_default(),
                    replicas - partitions
                )
            })
        })
        .collect()
}

/// Condition types the reconciler owns; the lag monitor owns `KafkaReachable` and `kafka`. Each
/// writer server-side applies only its own fields under its own field manager, and the API server
/// merges `conditions` by type (`listType: map`).
pub const RECONCILER_CONDITIONS: [&str; 3] = [READY, PROGRESSING, DEGRADED];

/// The part of a status the reconciler writes.
pub fn reconciler_part(status: &TracingLabStatus) -> TracingLabStatus {
    TracingLabStatus {
        kafka: None,
        conditions: status
            .conditions
            .iter()
            .filter(|c| RECONCILER_CONDITIONS.contains(&c.type_.as_str()))
            .cloned()
            .collect(),
        ..status.clone()
    }
}

/// The node ports `kind-config.yaml` maps to the host, and the host port each appears on.
pub const KIND_MAPPED_PORTS: [(i32, u16); 2] = [(30080, 8080), (30686, 16686)];
/// Local ports of the port-forwards for a lab without node ports: ports kind's mappings leave
/// free, as the chart's NOTES use.
const FORWARDED_API: u16 = 18080;
const FORWARDED_JAEGER_UI: u16 = 26686;

/// Where a student reaches a Service of the lab from their machine.
fn local(node_port: Option<i32>, service: &str, port: i32, forwarded: u16) -> String {
    match node_port {
        Some(node_port) => match KIND_MAPPED_PORTS.iter().find(|(n, _)| *n == node_port) {
            Some((_, host)) => format!("http://localhost:{host}"),
            None => format!("http://<node-address>:{node_port}"),
        },
        None => format!("port-forward svc/{service} {forwarded}:{port}"),
    }
}

pub fn urls(lab: &LabRef, node_ports: Option<&crate::crd::NodePorts>) -> LabUrls {
    LabUrls {
        api_local: local(
            node_ports.map(|p| p.api),
            &lab.child(Role::Api.name()),
            services::PORT,
            FORWARDED_API,
        ),
        jaeger_ui_local: local(
            node_ports.map(|p| p.jaeger_ui),
            &lab.child(jaeger::JAEGER.suffix),
            jaeger::UI_PORT,
            FORWARDED_JAEGER_UI,
        ),
        api: format!("http://{}:{}", lab.host(Role::Api.name()), services::PORT),
        jaeger_ui: format!(
            "http://{}:{}",
            lab.host(jaeger::JAEGER.suffix),
            jaeger::UI_PORT
        ),
        otlp: format!(
            "http://{}:{}",
            lab.host(collector::COLLECTOR.suffix),
            collector::OTLP_GRPC_PORT
        ),
        kafka: kafka::bootstrap(&lab.name, &lab.namespace),
        api_node_port: node_ports.map(|p| format!("http://<node-address>:{}", p.api)),
        jaeger_ui_node_port: node_ports.map(|p| format!("http://<node-address>:{}", p.jaeger_ui)),
    }
}

/// The full status. `warnings` are problems that do not block applying (idle consumers).
pub fn compute(
    lab: &TracingLab,
    lab_ref: &LabRef,
    outcome: Outcome,
    warnings: &[String],
    now: Time,
) -> TracingLabStatus {
    let previous = lab.status.clone().unwrap_or_default();
    let generation = lab.metadata.generation;
    let components = match outcome {
        Outcome::Applied(components) => components.clone(),
        _ => previous.components.clone(),
    };
    let waiting: Vec<String> = components
        .iter()
        .filter(|(_, c)| !c.available)
        .map(|(name, c)| format!("{name} {}/{}", c.ready, c.desired))
        .collect();
    let blocked = blocked(&components);
    let all_available = !components.is_empty() && waiting.is_empty();

    let (ready, ready_reason, ready_message) = if all_available {
        (
            true,
            "AllComponentsAvailable",
            "every component is available".to_string(),
        )
    } else if components.is_empty() {
        (
            false,
            "NotApplied",
            "nothing has been applied yet".to_string(),
        )
    } else if let Some((reason, message)) = &blocked {
        // What blocks comes first: it is what `kubectl get tlab` shows of a long message.
        let others: Vec<String> = components
            .iter()
            .filter(|(_, c)| !c.available && c.reason.is_none())
            .map(|(name, c)| format!("{name} {}/{}", c.ready, c.desired))
            .collect();
        let message = match others.is_empty() {
            true => message.clone(),
            false => format!("{message}; waiting for {}", others.join(", ")),
        };
        (false, reason.as_str(), message)
    } else {
        (
            false,
            "ComponentsNotReady",
            format!("waiting for {}", waiting.join(", ")),
        )
    };
    let (progressing, progressing_reason, progressing_message) = match outcome {
        Outcome::Invalid(_) => (
            false,
            "InvalidSpec",
            "blocked until the spec is fixed".to_string(),
        ),
        Outcome::Failed(_) => (
            false,
            "ApplyFailed",
            "blocked until applying succeeds".to_string(),
        ),
        Outcome::Applied(..) if all_available => (
            false,
            "RolloutComplete",
            "every component is rolled out".to_string(),
        ),
        Outcome::Applied(..) => (
            true,
            "RollingOut",
            format!("waiting for {}", waiting.join(", ")),
        ),
    };
    let (degraded, degraded_reason, degraded_message) = match outcome {
        Outcome::Invalid(problems) => (true, "InvalidSpec", problems.join("; ")),
        Outcome::Failed(message) => (true, "ApplyFailed", message.to_string()),
        Outcome::Applied(..) if !warnings.is_empty() => {
            (true, "IdleConsumers", warnings.join("; "))
        }
        Outcome::Applied(..) => (false, "AsExpected", "the lab matches its spec".to_string()),
    };
    let observed = Observation {
        previous: &previous.conditions,
        generation,
        now,
    };
    let services_available = Role::ALL
        .iter()
        .filter(|r| components.get(r.name()).is_some_and(|c| c.available))
        .count();
    let conditions = vec![
        observed.condition(READY, ready, ready_reason, ready_message),
        observed.condition(
            PROGRESSING,
            progressing,
            progressing_reason,
            progressing_message,
        ),
        observed.condition(DEGRADED, degraded, degraded_reason, degraded_message),
    ];
    TracingLabStatus {
        observed_generation: generation,
        conditions,
        services_ready: Some(format!("{services_available}/{}", Role::ALL.len())),
        urls: Some(urls(lab_ref, lab.spec.access.node_ports.as_ref())),
        components,
        kafka: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::common::tests::lab;
    use crate::render::render;
    use k8s_openapi::api::apps::v1::{DeploymentStatus, StatefulSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use k8s_openapi::jiff::Timestamp;

    fn applied(available: bool) -> (TracingLab, Applied) {
        let lab = lab(Default::default());
        let c = render(
            &LabRef::new(&lab).unwrap(),
            &crate::validate::validated(&lab.spec).unwrap(),
        );
        let n = i32::from(available);
        let deployments = c
            .deployments
            .into_iter()
            .map(|mut d| {
                d.metadata.generation = Some(1);
                d.status = Some(DeploymentStatus {
                    observed_generation: Some(1),
                    available_replicas: Some(n),
                    ready_replicas: Some(n),
                    updated_replicas: Some(n),
                    replicas: Some(n),
                    ..Default::default()
                });
                d
            })
            .collect();
        let stateful_sets = c
            .stateful_sets
            .into_iter()
            .map(|mut s| {
                s.metadata.generation = Some(1);
                s.status = Some(StatefulSetStatus {
                    observed_generation: Some(1),
                    ready_replicas: Some(n),
                    updated_replicas: Some(n),
                    replicas: n,
                    ..Default::default()
                });
                s
            })
            .collect();
        (
            lab,
            Applied {
                deployments,
                stateful_sets,
            },
        )
    }

    fn cond<'a>(s: &'a TracingLabStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    /// The status of `lab` once `applied` is, nothing blocking its pods, at second `secs`.
    fn status_when_applied(
        lab: &TracingLab,
        applied: &Applied,
        warnings: &[String],
        secs: i64,
    ) -> TracingLabStatus {
        let r = LabRef::new(lab).unwrap();
        let components = crate::readiness::components(&r.name, applied);
        let outcome = Outcome::Applied(&components);
        compute(lab, &r, outcome, warnings, at(secs))
    }

    #[test]
    fn all_available_is_ready() {
        let (lab, a) = applied(true);
        let s = status_when_applied(&lab, &a, &[], 10);
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(cond(&s, PROGRESSING).status, "False");
        assert_eq!(cond(&s, DEGRADED).status, "False");
        assert_eq!(s.services_ready.as_deref(), Some("4/4"));
        assert_eq!(s.components.len(), 9);
        assert!(s.components["kafka"].available);
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(cond(&s, READY).observed_generation, Some(1));
        assert_eq!(
            s.urls.as_ref().unwrap().api,
            "http://demo-api.students.svc:8080"
        );
    }

    #[test]
    fn the_local_urls_are_what_a_student_opens() {
        let r = LabRef::new(&lab(Default::default())).unwrap();
        let with = |api, jaeger_ui| urls(&r, Some(&crate::crd::NodePorts { api, jaeger_ui }));
        let kind = with(30080, 30686);
        assert_eq!(kind.api_local, "http://localhost:8080");
        assert_eq!(kind.jaeger_ui_local, "http://localhost:16686");
        let other = with(30123, 30686);
        assert_eq!(other.api_local, "http://<node-address>:30123");
        let none = urls(&r, None);
        assert_eq!(none.api_local, "port-forward svc/demo-api 18080:8080");
        assert_eq!(
            none.jaeger_ui_local,
            "port-forward svc/demo-jaeger 26686:16686"
        );
    }

    /// The mapping the URLs promise is the one kind-config.yaml makes.
    #[test]
    fn kind_config_maps_the_node_ports_the_urls_name() {
        let config: serde_json::Value =
            serde_saphyr::from_str(include_str!("../../kind-config.yaml")).unwrap();
        let mappings = config["nodes"][0]["extraPortMappings"].as_array().unwrap();
        let mapped: Vec<(i32, u16)> = mappings
            .iter()
            .map(|m| {
                (
                    m["containerPort"].as_i64().unwrap() as i32,
                    m["hostPort"].as_u64().unwrap() as u16,
                )
            })
            .collect();
        assert_eq!(mapped, KIND_MAPPED_PORTS);
    }

    #[test]
    fn unavailable_components_are_named() {
        let (lab, a) = applied(false);
        let s = status_when_applied(&lab, &a, &[], 10);
        assert_eq!(cond(&s, READY).status, "False");
        assert_eq!(cond(&s, PROGRESSING).status, "True");
        assert!(
            cond(&s, READY).message.contains("kafka 0/1"),
            "{}",
            cond(&s, READY).message
        );
        assert_eq!(s.services_ready.as_deref(), Some("0/4"));
    }

    #[test]
    fn a_stale_generation_is_not_available() {
        let (_, mut a) = applied(true);
        a.deployments[0].metadata.generation = Some(2);
        assert!(!crate::readiness::deployment_status(&a.deployments[0]).available);
    }

    #[test]
    fn transition_time_moves_only_on_change() {
        let (mut lab, a) = applied(true);
        lab.status = Some(status_when_applied(&lab, &a, &[], 10));
        let again = status_when_applied(&lab, &a, &[], 20);
        assert_eq!(
            Some(&again),
            lab.status.as_ref(),
            "an unchanged lab gives an identical status"
        );
        let problems = vec!["spec.services.api.workload: bad".to_string()];
        let invalid = compute(
            &lab,
            &LabRef::new(&lab).unwrap(),
            Outcome::Invalid(&problems),
            &[],
            at(30),
        );
        assert_eq!(cond(&invalid, DEGRADED).status, "True");
        assert_eq!(cond(&invalid, DEGRADED).reason, "InvalidSpec");
        assert_eq!(cond(&invalid, DEGRADED).last_transition_time, at(30));
        assert_eq!(cond(&invalid, READY).last_transition_time, at(10));
        assert_eq!(
            invalid.components,
            lab.status.unwrap().components,
            "components keep their last known state"
        );
    }

    #[test]
    fn more_consumers_than_partitions_is_reported() {
        let (lab, mut a) = applied(true);
        let p = a
            .deployments
            .iter_mut()
            .find(|d| d.metadata.name.as_deref() == Some("demo-processing"))
            .unwrap();
        p.spec.as_mut().unwrap().replicas = Some(8);
        let st = p.status.as_mut().unwrap();
        (
            st.available_replicas,
            st.ready_replicas,
            st.updated_replicas,
        ) = (Some(8), Some(8), Some(8));
        let w = idle_consumers(&a, "demo", 6);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains(
                "processing: 8 replicas for 6 partitions of orders; 2 replicas stay idle"
            ),
            "{}",
            w[0]
        );
        let s = status_when_applied(&lab, &a, &w, 1);
        assert_eq!(cond(&s, DEGRADED).reason, "IdleConsumers");
        assert_eq!(
            cond(&s, READY).status,
            "True",
            "idle consumers do not stop the lab working"
        );
    }

    #[test]
    fn the_reconciler_writes_only_its_own_conditions() {
        let (lab, a) = applied(true);
        let mut before = status_when_applied(&lab, &a, &[], 1);
        before.conditions.push(Condition {
            type_: "KafkaReachable".into(),
            status: "False".into(),
            reason: "BrokerUnreachable".into(),
            message: "down".into(),
            last_transition_time: at(1),
            observed_generation: None,
        });
        let mut lab = lab;
        lab.status = Some(before.clone());
        let after = status_when_applied(&lab, &a, &[], 2);
        let types: Vec<&str> = after.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, RECONCILER_CONDITIONS);
        assert_eq!(
            reconciler_part(&before),
            after,
            "nothing of its own changed"
        );
    }
}
