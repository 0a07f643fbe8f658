//! What the schema cannot express: checks that block applying a spec (the services would refuse
//! the configuration), each naming the field at fault as the user wrote it.

use crate::crd::TracingLabSpec;
use tracing_lab_config::{LabConfig, Role};

/// The lab configuration document the services read, fully resolved from the spec.
pub fn lab_config(spec: &TracingLabSpec) -> LabConfig {
    let mut config = LabConfig::default();
    for role in Role::ALL {
        *config.role_mut(role) = spec.services.get(role).overrides.resolve(role);
    }
    config.resource_sampling = spec.resource_sampling.clone().unwrap_or_default();
    config.loadgen.orders_per_second = spec.load_generator.orders_per_second;
    config
}

/// Problems that make the spec unusable; empty when the lab can be applied.
pub fn problems(spec: &TracingLabSpec) -> Vec<String> {
    let mut problems: Vec<String> = lab_config(spec)
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

    #[test]
    fn empty_spec_resolves_to_the_original_lab() {
        let spec = TracingLabSpec::default();
        assert_eq!(lab_config(&spec), LabConfig::default());
        assert!(problems(&spec).is_empty());
    }

    #[test]
    fn spec_overrides_reach_the_document() {
        let spec: TracingLabSpec = serde_json::from_str(
            r#"{"services": {"processing": {"concurrency": 4, "faults": {"errorRate": 0.2}}},
                "loadGenerator": {"ordersPerSecond": 7.5},
                "resourceSampling": {"intervalMs": 50}}"#,
        )
        .unwrap();
        let config = lab_config(&spec);
        assert_eq!(config.processing.concurrency, 4);
        assert_eq!(config.processing.faults.error_rate, 0.2);
        assert_eq!(
            config.processing.workload,
            Role::Processing.defaults().workload
        );
        assert_eq!(config.loadgen.orders_per_second, 7.5);
        assert_eq!(config.resource_sampling.interval_ms, 50);
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
}
