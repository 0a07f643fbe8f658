use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How hard one simulated piece of work is.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Intensity {
    Light,
    Medium,
    Heavy,
    Severe,
}

impl Intensity {
    pub const ALL: [Intensity; 4] = [Self::Light, Self::Medium, Self::Heavy, Self::Severe];

    pub fn name(self) -> &'static str {
        match self {
            Self::Light => "light",
            Self::Medium => "medium",
            Self::Heavy => "heavy",
            Self::Severe => "severe",
        }
    }
}

/// Whether a piece of work burns CPU or waits on IO (files and Redis).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    CpuHeavy,
    IoHeavy,
}

impl WorkloadKind {
    /// The `workload.type` span attribute value, as in the original lab.
    pub fn name(self) -> &'static str {
        match self {
            Self::CpuHeavy => "cpu_heavy",
            Self::IoHeavy => "io_heavy",
        }
    }
}

/// Which work a service simulates per call: CPU vs IO by relative weight, intensity uniformly
/// among the allowed ones.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadMix {
    /// Run simulated work at all; `false` leaves only the messaging path (throughput benchmarks).
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Relative weight of CPU-heavy work (0..=100). Required, with `ioWeight` and `intensities`,
    /// while `enabled`.
    #[serde(default)]
    #[schemars(range(max = 100))]
    pub cpu_weight: u32,
    /// Relative weight of IO-heavy work (0..=100).
    #[serde(default)]
    #[schemars(range(max = 100))]
    pub io_weight: u32,
    /// Intensities to choose from (light, medium, heavy, severe).
    #[serde(default)]
    #[schemars(length(max = 4))]
    pub intensities: Vec<Intensity>,
}

fn enabled_default() -> bool {
    true
}

impl WorkloadMix {
    pub fn new(cpu_weight: u32, io_weight: u32, intensities: &[Intensity]) -> Self {
        Self {
            enabled: true,
            cpu_weight,
            io_weight,
            intensities: intensities.to_vec(),
        }
    }

    /// Picks the kind for a uniform draw `u` in `[0, 1)`.
    pub fn kind_for(&self, u: f64) -> WorkloadKind {
        let total = f64::from(self.cpu_weight + self.io_weight);
        if total > 0.0 && u * total < f64::from(self.cpu_weight) {
            WorkloadKind::CpuHeavy
        } else {
            WorkloadKind::IoHeavy
        }
    }

    pub(crate) fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.cpu_weight > 100 || self.io_weight > 100 {
            p.push(format!(
                "workload weights must be 0..=100, got cpuWeight {} ioWeight {}",
                self.cpu_weight, self.io_weight
            ));
        }
        if self.enabled && self.cpu_weight == 0 && self.io_weight == 0 {
            p.push("workload: cpuWeight and ioWeight are both 0; set one above 0 or set enabled: false".into());
        }
        if self.enabled && self.intensities.is_empty() {
            p.push("workload.intensities must name at least one intensity".into());
        }
        p
    }
}

/// Faults injected on purpose so students can find them in traces.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// Fraction of calls that fail (0..=1).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub error_rate: f64,
    /// Extra latency added to every call, in milliseconds.
    #[serde(default)]
    #[schemars(range(max = 60000))]
    pub extra_latency_ms: u64,
}

impl Faults {
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(0.0..=1.0).contains(&self.error_rate) {
            p.push(format!(
                "faults.errorRate must be 0..=1, got {}",
                self.error_rate
            ));
        }
        if self.extra_latency_ms > 60_000 {
            p.push(format!(
                "faults.extraLatencyMs must be at most 60000, got {}",
                self.extra_latency_ms
            ));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_work_needs_no_mix_but_enabled_work_does() {
        let off: WorkloadMix = serde_json::from_str(r#"{"enabled": false}"#).unwrap();
        assert!(off.problems().is_empty(), "{:?}", off.problems());
        let half: WorkloadMix = serde_json::from_str(r#"{"cpuWeight": 10}"#).unwrap();
        let problems = half.problems().join("; ");
        assert!(problems.contains("intensities"), "{problems}");
    }

    #[test]
    fn kind_follows_the_weights() {
        let mix = WorkloadMix::new(70, 30, &[Intensity::Medium]);
        assert_eq!(mix.kind_for(0.0), WorkloadKind::CpuHeavy);
        assert_eq!(mix.kind_for(0.69), WorkloadKind::CpuHeavy);
        assert_eq!(mix.kind_for(0.7), WorkloadKind::IoHeavy);
        let io_only = WorkloadMix::new(0, 5, &[Intensity::Light]);
        assert_eq!(io_only.kind_for(0.0), WorkloadKind::IoHeavy);
        let cpu_only = WorkloadMix::new(5, 0, &[Intensity::Light]);
        assert_eq!(cpu_only.kind_for(0.999), WorkloadKind::CpuHeavy);
    }
}
