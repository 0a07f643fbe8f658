//! Workload simulation: per call, a kind (CPU or IO, by the role's weights) and an intensity
//! (uniformly among the allowed ones) are drawn, and the matching operation runs, sized to the
//! intensity's target cost (`Intensity::target`, in `docs/reference.md`) within ±20 %:
//!
//! | intensity | CPU operation                 | IO operation              |
//! |-----------|-------------------------------|---------------------------|
//! | light     | `json_processing`             | `redis_basic`             |
//! | medium    | `hash_computation`            | `file_and_redis`          |
//! | heavy     | `intensive_prime_computation` | `intensive_io_operations` |
//! | severe    | `extreme_cpu_computation`     | `extreme_io_operations`   |
//!
//! CPU work is sized from a calibration measured once at start-up, runs on the blocking thread
//! pool (never on the async workers), severe work on two threads of its own. IO work runs until
//! its budget is spent. Heavy and severe calls hold their memory for the whole call. Measured
//! costs are in `services/README.md`.

mod calibration;
mod cpu;
mod io;

pub use calibration::{Calibration, Kernel};

use crate::resources::{WorkUsage, measure};
use io::IoTarget;
use rand::Rng;
use redis::aio::ConnectionManager;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tracing_lab_config::{Intensity, TARGET_SPREAD, Target, WorkloadKind, WorkloadMix};

/// What one call did, for the span attributes.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub kind: WorkloadKind,
    pub intensity: Intensity,
    pub operation: &'static str,
    pub items: u64,
    pub usage: WorkUsage,
}

pub fn operation(kind: WorkloadKind, intensity: Intensity) -> &'static str {
    match (kind, intensity) {
        (WorkloadKind::CpuHeavy, Intensity::Light) => "json_processing",
        (WorkloadKind::CpuHeavy, Intensity::Medium) => "hash_computation",
        (WorkloadKind::CpuHeavy, Intensity::Heavy) => "intensive_prime_computation",
        (WorkloadKind::CpuHeavy, Intensity::Severe) => "extreme_cpu_computation",
        (WorkloadKind::IoHeavy, Intensity::Light) => "redis_basic",
        (WorkloadKind::IoHeavy, Intensity::Medium) => "file_and_redis",
        (WorkloadKind::IoHeavy, Intensity::Heavy) => "intensive_io_operations",
        (WorkloadKind::IoHeavy, Intensity::Severe) => "extreme_io_operations",
    }
}

fn kernel(intensity: Intensity) -> Kernel {
    match intensity {
        Intensity::Light => Kernel::Json,
        Intensity::Medium => Kernel::Hash,
        Intensity::Heavy | Intensity::Severe => Kernel::Prime,
    }
}

/// Lines per file round of the IO operations (the original lab's files grew with intensity).
fn lines_per_round(intensity: Intensity) -> u64 {
    match intensity {
        Intensity::Light => 0,
        Intensity::Medium => 200,
        Intensity::Heavy => 500,
        Intensity::Severe => 1_000,
    }
}

/// Measures the kernels on a blocking thread and logs the result.
async fn calibrate() -> Calibration {
    let c = tokio::task::spawn_blocking(Calibration::measure)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    tracing::info!(
        json_ns_per_record = c.ns_per_unit(Kernel::Json).round(),
        hash_ns_per_item = c.ns_per_unit(Kernel::Hash).round(),
        prime_ns_per_number = c.ns_per_unit(Kernel::Prime).round(),
        took_ms = c.took.as_millis() as u64,
        "workload CPU calibrated"
    );
    c
}

/// `cost` scaled by a uniform draw `u` in `[0, 1]` to within ±[`TARGET_SPREAD`]; `u = 0.5` gives
/// `cost` itself, so the median call costs its target.
fn spread(cost: Duration, u: f64) -> Duration {
    cost.mul_f64(1.0 - TARGET_SPREAD + 2.0 * TARGET_SPREAD * u)
}

/// Runs simulated work for one role.
#[derive(Clone)]
pub struct Simulator {
    mix: WorkloadMix,
    redis: ConnectionManager,
    dir: PathBuf,
    role: &'static str,
    /// Measured in the background from start when the mix has CPU work; a CPU call waits for it.
    calibration: Option<Arc<OnceCell<Calibration>>>,
}

impl Simulator {
    /// Starts calibrating the CPU kernels (a fraction of a second, on a blocking thread) when the
    /// mix runs CPU work, so the service's start-up does not wait for it. Needs a Tokio runtime.
    pub fn new(
        mix: WorkloadMix,
        redis: ConnectionManager,
        dir: PathBuf,
        role: &'static str,
    ) -> Self {
        let calibration =
            (mix.enabled && mix.cpu_weight > 0 && !mix.intensities.is_empty()).then(|| {
                let cell = Arc::new(OnceCell::new());
                let started = cell.clone();
                tokio::spawn(async move {
                    started.get_or_init(calibrate).await;
                });
                cell
            });
        Self {
            mix,
            redis,
            dir,
            role,
            calibration,
        }
    }

    /// The start-up calibration, once measured; `None` when the mix runs no CPU work.
    pub async fn calibration(&self) -> Option<Calibration> {
        match &self.calibration {
            Some(cell) => Some(*cell.get_or_init(calibrate).await),
            None => None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.mix.enabled && !self.mix.intensities.is_empty()
    }

    /// Draws kind and intensity from the mix; `None` when workloads are disabled.
    pub fn choose(&self) -> Option<(WorkloadKind, Intensity)> {
        if !self.enabled() {
            return None;
        }
        let mut rng = rand::rng();
        let kind = self.mix.kind_for(rng.random::<f64>());
        let intensity = self.mix.intensities[rng.random_range(0..self.mix.intensities.len())];
        Some((kind, intensity))
    }

    /// One call, sized at random within the target's spread.
    pub async fn run(&self, kind: WorkloadKind, intensity: Intensity) -> anyhow::Result<Outcome> {
        let u = rand::rng().random_range(0.0..=1.0);
        self.run_at(kind, intensity, u).await
    }

    /// One call sized at `u` in `[0, 1]` along the target's spread (0.5: on target).
    pub async fn run_at(
        &self,
        kind: WorkloadKind,
        intensity: Intensity,
        u: f64,
    ) -> anyhow::Result<Outcome> {
        let target = intensity.target(kind);
        let started = tokio::time::Instant::now();
        let (items, cpu_time) = match kind {
            WorkloadKind::CpuHeavy => {
                let calibration = self
                    .calibration()
                    .await
                    .ok_or_else(|| anyhow::anyhow!("CPU work drawn from a mix without CPU work"))?;
                let cpu = spread(Duration::from_millis(target.cpu_ms.into()), u);
                let units = calibration.units(kernel(intensity), cpu);
                let ((checksum_items, helpers), usage) = tokio::task::spawn_blocking(move || {
                    measure(|| run_cpu(kernel(intensity), units, target))
                })
                .await?;
                (checksum_items, usage.cpu_time + helpers)
            }
            WorkloadKind::IoHeavy => {
                let deadline = started + spread(Duration::from_millis(target.io_ms.into()), u);
                let held_mib = target.held_mib;
                let held =
                    tokio::task::spawn_blocking(move || measure(|| cpu::held_memory(held_mib)))
                        .await?;
                let mut io_target = IoTarget {
                    redis: self.redis.clone(),
                    dir: self.dir.clone(),
                    prefix: format!("{}:{}", self.role, uuid::Uuid::new_v4().simple()),
                };
                let (items, file_cpu) = match intensity {
                    Intensity::Light => (
                        io::redis_basic(&mut io_target, deadline).await?,
                        Duration::ZERO,
                    ),
                    _ => {
                        io::file_and_redis(&mut io_target, lines_per_round(intensity), deadline)
                            .await?
                    }
                };
                let (memory, allocation) = held;
                drop(std::hint::black_box(memory));
                (items, file_cpu + allocation.cpu_time)
            }
        };
        Ok(Outcome {
            kind,
            intensity,
            operation: operation(kind, intensity),
            items,
            usage: WorkUsage {
                wall: started.elapsed(),
                cpu_time,
            },
        })
    }
}

/// Runs `units` of `kernel` over the target's threads while holding its memory. Returns the units
/// and the CPU time of helper threads (severe only; the caller measures its own thread).
fn run_cpu(kernel: Kernel, units: u64, target: Target) -> (u64, Duration) {
    let held = cpu::held_memory(target.held_mib);
    let helpers = if target.threads > 1 {
        cpu::extreme_cpu_computation(cpu::PRIME_BASE, units, target.threads).1
    } else {
        kernel.run(units);
        Duration::ZERO
    };
    drop(std::hint::black_box(held));
    (units, helpers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_and_intensity_has_its_operation() {
        let mut names: Vec<&str> = WorkloadKind::ALL
            .into_iter()
            .flat_map(|k| Intensity::ALL.into_iter().map(move |i| operation(k, i)))
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 8);
    }

    #[test]
    fn calls_spread_evenly_around_their_target() {
        let target = Duration::from_millis(2_000);
        assert_eq!(spread(target, 0.5), target);
        assert_eq!(spread(target, 0.0), Duration::from_millis(1_600));
        assert_eq!(spread(target, 1.0), Duration::from_millis(2_400));
        // The median of evenly spread draws is the target.
        let mut draws: Vec<Duration> = (0..=100)
            .map(|i| spread(target, i as f64 / 100.0))
            .collect();
        draws.sort();
        assert_eq!(draws[50], target);
    }

    #[test]
    fn severe_cpu_spreads_over_helper_threads() {
        let target = Intensity::Severe.target(WorkloadKind::CpuHeavy);
        let small = Target {
            held_mib: 1,
            ..target
        };
        let ((units, helpers), usage) = measure(|| run_cpu(Kernel::Prime, 20_000, small));
        assert_eq!(units, 20_000);
        // The calling thread only allocates; the prime work runs on the helper threads.
        assert!(
            helpers > usage.cpu_time,
            "helpers {helpers:?} caller {:?}",
            usage.cpu_time
        );
    }
}
