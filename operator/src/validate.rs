//! The checks the API server cannot make as a lab is applied: the lab configuration's own, which
//! the services make from the same code. Each names the field at fault as the user wrote it.
//! Everything the API server can check is a rule of the CRD (`crd.rs`), refused at the door.

use crate::crd::TracingLabSpec;
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

/// Problems that make the spec unusable; empty when the lab can be applied. The API server
/// checks the rest as the lab is applied (the CRD's rules); these are the lab configuration's own
/// checks, which the services make too, from the same code.
fn problems(spec: &TracingLabSpec) -> Vec<String> {
    spec.lab_config()
        .problems()
        .into_iter()
        .map(|p| spec_path(&p))
        .collect()
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
    }
}
