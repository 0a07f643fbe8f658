//! The lab configuration document: workload mix, faults and consumer concurrency of each service,
//! and the [`quote`] hop between two of them; and the [`contract`]: every other name and number
//! the operator renders and the services read.
//!
//! The operator resolves a `TracingLab` spec into a [`LabConfig`] and mounts it into every service
//! (path in `LAB_CONFIG`); the services read it back with [`LabConfig::from_path`]. The CRD embeds
//! [`WorkloadMix`], [`Faults`], [`RoleOverrides`] and [`QuoteSettings`], so the schema a user
//! meets in `kubectl apply` and the document a service parses come from the same types.

pub mod contract;
pub mod quote;
mod role;
mod workload;

pub use quote::QuoteSettings;
pub use role::{Role, RoleOverrides, RoleSettings};
pub use workload::{
    Faults, Intensity, TARGET_SPREAD, Target, WorkloadKind, WorkloadMix, targets_markdown,
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// File name of the document inside the ConfigMap the operator renders (its path is in
/// [`contract::env::LAB_CONFIG`]).
pub const FILE_NAME: &str = "lab-config.json";

/// Settings of every role of one lab. A missing section means that role's original-lab defaults.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabConfig {
    #[serde(default = "role::api_defaults")]
    pub api: RoleSettings,
    #[serde(default = "role::processing_defaults")]
    pub processing: RoleSettings,
    #[serde(default = "role::notification_defaults")]
    pub notification: RoleSettings,
    #[serde(default = "role::analytics_defaults")]
    pub analytics: RoleSettings,
    #[serde(default)]
    pub resource_sampling: ResourceSampling,
    #[serde(default)]
    pub loadgen: LoadgenSettings,
    #[serde(default)]
    pub quote: QuoteSettings,
}

impl Default for LabConfig {
    fn default() -> Self {
        Self {
            api: Role::Api.defaults(),
            processing: Role::Processing.defaults(),
            notification: Role::Notification.defaults(),
            analytics: Role::Analytics.defaults(),
            resource_sampling: ResourceSampling::default(),
            loadgen: LoadgenSettings::default(),
            quote: QuoteSettings::default(),
        }
    }
}

impl LabConfig {
    pub fn role(&self, role: Role) -> &RoleSettings {
        match role {
            Role::Api => &self.api,
            Role::Processing => &self.processing,
            Role::Notification => &self.notification,
            Role::Analytics => &self.analytics,
        }
    }

    pub fn role_mut(&mut self, role: Role) -> &mut RoleSettings {
        match role {
            Role::Api => &mut self.api,
            Role::Processing => &mut self.processing,
            Role::Notification => &mut self.notification,
            Role::Analytics => &mut self.analytics,
        }
    }

    /// Parses a JSON or YAML document (JSON is YAML) and checks what the types cannot express.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems.join("; ")))
        }
    }

    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read(path.display().to_string(), e.to_string()))?;
        Self::parse(&text)
    }

    /// Problems a schema cannot express, each naming the setting at fault.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = Role::ALL
            .iter()
            .flat_map(|role| {
                self.role(*role)
                    .problems()
                    .into_iter()
                    .map(move |p| format!("{}.{p}", role.name()))
            })
            .collect();
        problems.extend(self.resource_sampling.problems());
        problems.extend(self.loadgen.problems());
        problems.extend(self.quote.problems());
        problems
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("LabConfig always serialises")
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("cannot read lab configuration {0}: {1}")]
    Read(String, String),
    #[error("lab configuration is not valid JSON/YAML of the expected shape: {0}")]
    Syntax(String),
    #[error("lab configuration is invalid: {0}")]
    Invalid(String),
}

/// How the services sample their own CPU and memory for resource correlation on spans.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceSampling {
    /// Sampling period in milliseconds.
    #[serde(default = "default_interval_ms")]
    #[schemars(range(min = 10, max = 10000))]
    pub interval_ms: u64,
    /// CPU percent (100 = one core) above which a span is marked `resource.cpu_bound`.
    #[serde(default = "default_cpu_bound_percent")]
    #[schemars(range(min = 1.0, max = 6400.0))]
    pub cpu_bound_percent: f64,
    /// Resident memory in MiB above which a span is marked `resource.memory_threshold_exceeded`.
    #[serde(default = "default_memory_threshold_mb")]
    #[schemars(range(min = 1.0))]
    pub memory_threshold_mb: f64,
}

fn default_interval_ms() -> u64 {
    100
}
fn default_cpu_bound_percent() -> f64 {
    80.0
}
fn default_memory_threshold_mb() -> f64 {
    200.0
}

impl Default for ResourceSampling {
    fn default() -> Self {
        Self {
            interval_ms: default_interval_ms(),
            cpu_bound_percent: default_cpu_bound_percent(),
            memory_threshold_mb: default_memory_threshold_mb(),
        }
    }
}

impl ResourceSampling {
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(10..=10_000).contains(&self.interval_ms) {
            p.push(format!(
                "resourceSampling.intervalMs must be 10..=10000, got {}",
                self.interval_ms
            ));
        }
        if !(self.cpu_bound_percent > 0.0 && self.cpu_bound_percent.is_finite()) {
            p.push(format!(
                "resourceSampling.cpuBoundPercent must be > 0, got {}",
                self.cpu_bound_percent
            ));
        }
        if !(self.memory_threshold_mb > 0.0 && self.memory_threshold_mb.is_finite()) {
            p.push(format!(
                "resourceSampling.memoryThresholdMb must be > 0, got {}",
                self.memory_threshold_mb
            ));
        }
        p
    }
}

/// The load generator's target rate.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadgenSettings {
    /// Orders per second sent to the api service.
    #[serde(default = "default_orders_per_second")]
    #[schemars(range(min = 0.01, max = 10000.0))]
    pub orders_per_second: f64,
}

fn default_orders_per_second() -> f64 {
    2.0
}

impl Default for LoadgenSettings {
    fn default() -> Self {
        Self {
            orders_per_second: default_orders_per_second(),
        }
    }
}

impl LoadgenSettings {
    fn problems(&self) -> Vec<String> {
        if self.orders_per_second > 0.0 && self.orders_per_second <= 10_000.0 {
            Vec::new()
        } else {
            vec![format!(
                "loadgen.ordersPerSecond must be in (0, 10000], got {}",
                self.orders_per_second
            )]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_gives_the_original_lab_table() {
        let config = LabConfig::parse("{}").unwrap();
        assert_eq!(config, LabConfig::default());
        assert_eq!(config.api.workload.cpu_weight, 40);
        assert_eq!(config.api.workload.io_weight, 60);
        assert_eq!(
            config.api.workload.intensities,
            vec![Intensity::Light, Intensity::Medium]
        );
        assert_eq!(config.processing.workload.cpu_weight, 70);
        assert_eq!(
            config.processing.workload.intensities,
            vec![Intensity::Medium, Intensity::Heavy, Intensity::Severe]
        );
        assert_eq!(config.notification.workload.io_weight, 70);
        assert_eq!(config.analytics.workload.cpu_weight, 50);
        assert!(Role::ALL.iter().all(|r| config.role(*r).concurrency == 1));
        assert_eq!(config.resource_sampling.interval_ms, 100);
    }

    #[test]
    fn round_trips_through_json() {
        let mut config = LabConfig::default();
        config.processing.concurrency = 4;
        config.analytics.faults.error_rate = 0.25;
        assert_eq!(LabConfig::parse(&config.to_json()).unwrap(), config);
    }

    #[test]
    fn unknown_fields_and_intensities_are_rejected_with_their_name() {
        let err = LabConfig::parse(r#"{"api": {"concurrency": 1, "wrkload": {}}}"#).unwrap_err();
        assert!(err.to_string().contains("wrkload"), "{err}");
        let err = LabConfig::parse(
            r#"{"api": {"workload": {"cpuWeight": 1, "ioWeight": 1, "intensities": ["extreme"]}}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("extreme"), "{err}");
    }

    #[test]
    fn semantic_problems_name_the_setting() {
        let mut config = LabConfig::default();
        config.processing.workload.cpu_weight = 0;
        config.processing.workload.io_weight = 0;
        config.notification.concurrency = 0;
        config.api.faults.error_rate = 1.5;
        let err = LabConfig::parse(&config.to_json()).unwrap_err().to_string();
        assert!(err.contains("processing.workload"), "{err}");
        assert!(err.contains("notification.concurrency"), "{err}");
        assert!(err.contains("api.faults.errorRate"), "{err}");
    }

    #[test]
    fn yaml_is_accepted() {
        let config = LabConfig::parse("processing:\n  concurrency: 3\n  workload:\n    cpuWeight: 1\n    ioWeight: 0\n    intensities: [light]\n").unwrap();
        assert_eq!(config.processing.concurrency, 3);
        assert_eq!(
            config.processing.workload.intensities,
            vec![Intensity::Light]
        );
        assert_eq!(config.processing.faults, Faults::default());
    }
}
