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

/// What one call of a kind at an intensity costs: the figure the services size their work to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Target {
    /// CPU time, summed over the threads that do the work.
    pub cpu_ms: u32,
    /// Threads the CPU work is spread over.
    pub threads: u32,
    /// Wall time of file and Redis work.
    pub io_ms: u32,
    /// Memory allocated, written and held for the whole call.
    pub held_mib: u32,
}

impl Target {
    /// Expected wall time of one call on an otherwise idle machine with `threads` free cores.
    pub fn wall_ms(self) -> f64 {
        f64::from(self.cpu_ms) / f64::from(self.threads) + f64::from(self.io_ms)
    }
}

/// Calls are sized uniformly within ±20 % of their target (median on target), as the original lab
/// drew its item counts from a range.
pub const TARGET_SPREAD: f64 = 0.2;

impl Intensity {
    /// The cost of one call. Heavy and severe are on the original lab's scale (seconds; severe on
    /// two cores with 256 MiB held); light and medium stay in milliseconds.
    pub const fn target(self, kind: WorkloadKind) -> Target {
        let (cpu_ms, threads, io_ms, held_mib) = match (kind, self) {
            (WorkloadKind::CpuHeavy, Self::Light) => (1, 1, 0, 0),
            (WorkloadKind::CpuHeavy, Self::Medium) => (20, 1, 0, 0),
            (WorkloadKind::CpuHeavy, Self::Heavy) => (2_000, 1, 0, 64),
            (WorkloadKind::CpuHeavy, Self::Severe) => (6_000, 2, 0, 256),
            (WorkloadKind::IoHeavy, Self::Light) => (0, 1, 2, 0),
            (WorkloadKind::IoHeavy, Self::Medium) => (0, 1, 20, 0),
            (WorkloadKind::IoHeavy, Self::Heavy) => (0, 1, 1_000, 64),
            (WorkloadKind::IoHeavy, Self::Severe) => (0, 1, 3_000, 256),
        };
        Target {
            cpu_ms,
            threads,
            io_ms,
            held_mib,
        }
    }
}

/// The target table in Markdown with what it means, a section of `docs/reference.md`.
pub fn targets_markdown() -> String {
    let mut out = format!(
        "## Workload targets\n\n\
         What one workload call costs, by intensity and kind (`Intensity::target` in `lab-config`). \
         Each service measures its CPU kernels once at start-up (thread CPU time, so a busy machine \
         skews it little) and sizes every CPU call to its target; IO calls write, sync and read \
         files and talk to Redis in 50 ms rounds, waiting out the rest of each round, until their \
         budget is spent. Calls are spread uniformly within ±{spread:.0} % of the target, the \
         median on it. Heavy and severe calls write and hold their memory for the whole call: a \
         service running n calls at once (`concurrency`) holds up to n times as much, so severe \
         work at concurrency 2 or more needs a memory limit above the default 512Mi. Wall ms is \
         CPU ms ÷ threads + IO ms, with that many cores free. Measured figures: \
         `services/README.md`.\n\n\
         | intensity | kind | CPU ms | threads | IO ms | MiB held | wall ms |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
        spread = TARGET_SPREAD * 100.0
    );
    for intensity in Intensity::ALL {
        for kind in WorkloadKind::ALL {
            let t = intensity.target(kind);
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                intensity.name(),
                kind.name(),
                t.cpu_ms,
                t.threads,
                t.io_ms,
                t.held_mib,
                t.wall_ms()
            ));
        }
    }
    out
}

/// Whether a piece of work burns CPU or waits on IO (files and Redis).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    CpuHeavy,
    IoHeavy,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 2] = [Self::CpuHeavy, Self::IoHeavy];

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

    /// Expected wall time of one call drawn from this mix, from the targets (0 when disabled).
    pub fn expected_wall_ms(&self) -> f64 {
        let total = f64::from(self.cpu_weight + self.io_weight);
        if !self.enabled || total == 0.0 || self.intensities.is_empty() {
            return 0.0;
        }
        let per_kind = |kind: WorkloadKind| {
            let sum: f64 = self
                .intensities
                .iter()
                .map(|i| i.target(kind).wall_ms())
                .sum();
            sum / self.intensities.len() as f64
        };
        (f64::from(self.cpu_weight) * per_kind(WorkloadKind::CpuHeavy)
            + f64::from(self.io_weight) * per_kind(WorkloadKind::IoHeavy))
            / total
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
    /// Ignore the trace context that arrives with each call (HTTP headers into the api, Kafka
    /// headers into a stage), as a hop whose instrumentation forgot to extract it: every order
    /// then becomes two traces, split at this service.
    #[serde(default)]
    pub drop_trace_context: bool,
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
    fn targets_hold_the_original_scale_within_a_pod() {
        use WorkloadKind::*;
        // Heavy takes seconds; severe uses two cores and holds at least 256 MiB.
        assert!(Intensity::Heavy.target(CpuHeavy).cpu_ms >= 1_000);
        let severe = Intensity::Severe.target(CpuHeavy);
        assert!(severe.threads >= 2 && severe.held_mib >= 256);
        // One severe call at a time fits the services' default 512Mi limit with room for the
        // process itself (about 20 MiB).
        for kind in WorkloadKind::ALL {
            assert!(Intensity::Severe.target(kind).held_mib + 64 <= 512);
            assert!(Intensity::Light.target(kind).wall_ms() <= 5.0);
            assert!(Intensity::Medium.target(kind).wall_ms() <= 50.0);
        }
    }

    #[test]
    fn expected_wall_time_weighs_kinds_and_averages_intensities() {
        let mix = WorkloadMix::new(30, 70, &[Intensity::Heavy]);
        assert_eq!(mix.expected_wall_ms(), 0.3 * 2_000.0 + 0.7 * 1_000.0);
        let mix = WorkloadMix::new(1, 0, &[Intensity::Heavy, Intensity::Severe]);
        assert_eq!(mix.expected_wall_ms(), (2_000.0 + 3_000.0) / 2.0);
        let off = WorkloadMix {
            enabled: false,
            ..mix
        };
        assert_eq!(off.expected_wall_ms(), 0.0);
        assert!(targets_markdown().contains("| severe | cpu_heavy | 6000 | 2 | 0 | 256 | 3000 |"));
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
