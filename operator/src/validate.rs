//! What the schema cannot express: checks that block applying a spec (the services would refuse
//! the configuration), each naming the field at fault as the user wrote it.

use crate::crd::TracingLabSpec;
use crate::quantity;
use crate::render::{jaeger, kafka};
use k8s_openapi::api::core::v1::ResourceRequirements;
use tracing_lab_config::Role;

/// A spec that passed every check: the only input the reconciler renders.
pub struct ValidatedLab<'a>(&'a TracingLabSpec);

impl ValidatedLab<'_> {
    pub fn spec(&self) -> &TracingLabSpec {
        self.0
    }
}

/// The spec, checked; or every problem found, each naming its field.
pub fn validated(spec: &TracingLabSpec) -> Result<ValidatedLab<'_>, Vec<String>> {
    let problems = problems(spec);
    if problems.is_empty() {
        Ok(ValidatedLab(spec))
    } else {
        Err(problems)
    }
}

/// Problems that make the spec unusable; empty when the lab can be applied.
fn problems(spec: &TracingLabSpec) -> Vec<String> {
    let mut problems: Vec<String> = spec
        .lab_config()
        .problems()
        .into_iter()
        .map(|p| spec_path(&p))
        .collect();
    if let Some(ports) = &spec.access.node_ports
        && ports.api == ports.jaeger_ui
    {
        problems.push(format!(
            "spec.access.nodePorts: api and jaegerUi must differ, both are {}",
            ports.api
        ));
    }
    let tail = &spec.sampling.tail;
    if tail.enabled && crate::render::collector::tail_policies(tail).is_empty() {
        problems.push(
            "spec.sampling.tail: enabled but keeps nothing; set keepErrors, latencyThresholdMs > 0 or percentage > 0"
                .into(),
        );
    }
    problems.extend(resource_problems(spec));
    problems.extend(jaeger_memory_problem(spec));
    problems
}

/// `maxTraces` of the lab's traces must fit in Jaeger's memory limit, or Jaeger is OOM-killed
/// hours into a workshop, losing every trace.
fn jaeger_memory_problem(spec: &TracingLabSpec) -> Option<String> {
    let set = spec
        .jaeger
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref()?.get("memory"))
        .map(|q| q.0.as_str());
    let limit = set.unwrap_or(jaeger::MEMORY_LIMIT);
    let bytes = quantity::nanos(limit).ok()? / 1_000_000_000;
    let traces = i128::from(spec.jaeger.max_traces);
    let needed = traces * jaeger::TRACE_KIB * 1024;
    (needed > bytes).then(|| {
        let field = match set {
            Some(_) => "spec.jaeger.resources.limits.memory",
            None => "the default",
        };
        format!(
            "spec.jaeger.maxTraces: {traces} traces take about {} MiB in Jaeger (about {} KiB each), more than its memory limit {limit} ({field}); lower maxTraces to {} or raise the limit",
            needed >> 20,
            jaeger::TRACE_KIB,
            bytes / (jaeger::TRACE_KIB * 1024)
        )
    })
}

/// Requests and limits that cannot work: the API server refuses a pod whose request is above its
/// limit, and Kafka's fixed heap does not fit under a smaller memory limit. (Negative quantities
/// are refused by the schema.)
fn resource_problems(spec: &TracingLabSpec) -> Vec<String> {
    let mut components: Vec<(String, Option<&ResourceRequirements>)> = vec![
        ("spec.kafka".into(), spec.kafka.resources.as_ref()),
        ("spec.redis".into(), spec.redis.resources.as_ref()),
        ("spec.jaeger".into(), spec.jaeger.resources.as_ref()),
        ("spec.collector".into(), spec.collector.resources.as_ref()),
        (
            "spec.loadGenerator".into(),
            spec.load_generator.resources.as_ref(),
        ),
    ];
    for role in Role::ALL {
        let path = format!("spec.services.{}", role.name());
        components.push((path, spec.services.get(role).resources.as_ref()));
    }
    let mut problems = Vec::new();
    for (path, resources) in components {
        let Some(r) = resources else { continue };
        let (requests, limits) = (
            r.requests.clone().unwrap_or_default(),
            r.limits.clone().unwrap_or_default(),
        );
        let parsed = |field: &str, name: &str, q: &str, problems: &mut Vec<String>| {
            quantity::nanos(q)
                .map_err(|e| problems.push(format!("{path}.resources.{field}.{name}: {e}")))
                .ok()
        };
        for (name, limit) in &limits {
            parsed("limits", name, &limit.0, &mut problems);
        }
        for (name, request) in &requests {
            let Some(request_value) = parsed("requests", name, &request.0, &mut problems) else {
                continue;
            };
            let Some(limit) = limits.get(name) else {
                continue;
            };
            if quantity::nanos(&limit.0).is_ok_and(|l| request_value > l) {
                problems.push(format!(
                    "{path}.resources.requests.{name}: {} is above the limit {} ({path}.resources.limits.{name}); a request cannot exceed its limit",
                    request.0, limit.0
                ));
            }
        }
        if path == "spec.kafka"
            && let Some(limit) = limits.get("memory")
            && let Ok(l) = quantity::nanos(&limit.0)
            && l < quantity::nanos(&format!("{}Mi", kafka::HEAP_MIB)).expect("a quantity")
        {
            problems.push(format!(
                "spec.kafka.resources.limits.memory: {} is below Kafka's {}Mi heap, so the broker would be OOM-killed as it starts; give it more (the default limit is 1Gi)",
                limit.0,
                kafka::HEAP_MIB
            ));
        }
    }
    problems
}

/// Maps a lab configuration path (`processing.workload`) to the spec field (`spec.services.processing.workload`).
fn spec_path(problem: &str) -> String {
    if Role::ALL
        .iter()
        .any(|r| problem.starts_with(&format!("{}.", r.name())))
    {
        format!("spec.services.{problem}")
    } else if let Some(rest) = problem.strip_prefix("loadgen.") {
        format!("spec.loadGenerator.{rest}")
    } else {
        format!("spec.{problem}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::NodePorts;
    use tracing_lab_config::LabConfig;

    #[test]
    fn empty_spec_resolves_to_the_original_lab() {
        let spec = TracingLabSpec::default();
        assert_eq!(spec.lab_config(), LabConfig::default());
        assert!(problems(&spec).is_empty());
    }

    #[test]
    fn problems_name_the_spec_field() {
        let spec: TracingLabSpec = serde_json::from_str(
            r#"{"services": {"notification": {"workload": {"cpuWeight": 0, "ioWeight": 0, "intensities": ["light"]}}}}"#,
        )
        .unwrap();
        let p = problems(&spec);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("spec.services.notification.workload"),
            "{p:?}"
        );

        let mut spec = TracingLabSpec::default();
        spec.access.node_ports = Some(NodePorts {
            api: 30080,
            jaeger_ui: 30080,
        });
        assert!(problems(&spec)[0].contains("spec.access.nodePorts"));
    }

    fn resources(spec: serde_json::Value) -> Vec<String> {
        problems(&serde_json::from_value(spec).unwrap())
    }

    #[test]
    fn requests_above_limits_name_both_fields() {
        let p = resources(serde_json::json!({"kafka": {"resources": {
            "requests": {"memory": "4Gi", "cpu": "500m"}, "limits": {"memory": "1Gi", "cpu": "1"}}}}));
        assert_eq!(
            p,
            [
                "spec.kafka.resources.requests.memory: 4Gi is above the limit 1Gi (spec.kafka.resources.limits.memory); a request cannot exceed its limit"
            ]
        );
        let p = resources(serde_json::json!({"services": {"api": {"resources": {
            "requests": {"cpu": "1500m"}, "limits": {"cpu": "1"}}}}}));
        assert!(
            p[0].starts_with(
                "spec.services.api.resources.requests.cpu: 1500m is above the limit 1"
            ),
            "{p:?}"
        );
        // Equal, or a request without a limit, is fine; so are units that differ but agree.
        assert!(
            resources(serde_json::json!({"redis": {"resources": {
            "requests": {"memory": "1024Mi", "cpu": "2"}, "limits": {"memory": "1Gi"}}}}))
            .is_empty()
        );
    }

    #[test]
    fn a_kafka_memory_limit_below_its_heap_is_a_problem() {
        let p =
            resources(serde_json::json!({"kafka": {"resources": {"limits": {"memory": "256Mi"}}}}));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(
                "spec.kafka.resources.limits.memory: 256Mi is below Kafka's 512Mi heap"
            ),
            "{p:?}"
        );
        assert!(
            resources(serde_json::json!({"kafka": {"resources": {"limits": {"memory": "512Mi"}}}}))
                .is_empty()
        );
        // Other components have no fixed heap.
        assert!(
            resources(
                serde_json::json!({"collector": {"resources": {"limits": {"memory": "64Mi"}}}})
            )
            .is_empty()
        );
    }

    #[test]
    fn jaeger_must_hold_max_traces_under_its_memory_limit() {
        let problems =
            |jaeger: serde_json::Value| resources(serde_json::json!({ "jaeger": jaeger }));
        assert_eq!(problems(serde_json::json!({})), Vec::<String>::new());
        assert_eq!(
            problems(serde_json::json!({"maxTraces": 50000})),
            [
                "spec.jaeger.maxTraces: 50000 traces take about 1953 MiB in Jaeger (about 40 KiB each), more than its memory limit 1Gi (the default); lower maxTraces to 26214 or raise the limit"
            ]
        );
        assert_eq!(
            problems(
                serde_json::json!({"maxTraces": 50000, "resources": {"limits": {"memory": "512Mi"}}})
            ),
            [
                "spec.jaeger.maxTraces: 50000 traces take about 1953 MiB in Jaeger (about 40 KiB each), more than its memory limit 512Mi (spec.jaeger.resources.limits.memory); lower maxTraces to 13107 or raise the limit"
            ]
        );
        assert!(
            problems(
                serde_json::json!({"maxTraces": 50000, "resources": {"limits": {"memory": "2Gi"}}})
            )
            .is_empty()
        );
    }

    #[test]
    fn malformed_quantities_name_the_field() {
        let p = resources(
            serde_json::json!({"collector": {"resources": {"limits": {"memory": "lots"}}}}),
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("spec.collector.resources.limits.memory: \"lots\" is not a quantity"),
            "{p:?}"
        );
    }
}
