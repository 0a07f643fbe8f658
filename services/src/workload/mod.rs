//! Workload simulation: per call, a kind (CPU or IO, by the role's weights) and an intensity
//! (uniformly among the allowed ones) are drawn, and the matching operation runs:
//!
//! | intensity | CPU operation                 | IO operation              |
//! |-----------|-------------------------------|---------------------------|
//! | light     | `json_processing`             | `redis_basic`             |
//! | medium    | `hash_computation`            | `file_and_redis`          |
//! | heavy     | `intensive_prime_computation` | `intensive_io_operations` |
//! | severe    | `extreme_cpu_computation`     | `extreme_io_operations`   |
//!
//! CPU work runs on the blocking thread pool (never on the async workers); severe CPU work spreads
//! over every core the process may use. Measured costs are in `services/README.md`.

mod cpu;
mod io;

use crate::resources::{WorkUsage, measure};
use io::IoTarget;
use rand::Rng;
use redis::aio::ConnectionManager;
use std::path::PathBuf;
use std::time::Instant;
use tracing_lab_config::{Intensity, WorkloadKind, WorkloadMix};

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

/// Item counts per call (ranges as in the original lab), drawn uniformly.
fn items_range(kind: WorkloadKind, intensity: Intensity) -> (u64, u64) {
    match (kind, intensity) {
        (WorkloadKind::CpuHeavy, Intensity::Light) => (100, 100),
        (WorkloadKind::CpuHeavy, Intensity::Medium) => (1_000, 5_000),
        (WorkloadKind::CpuHeavy, Intensity::Heavy) => (50_000, 100_000),
        (WorkloadKind::CpuHeavy, Intensity::Severe) => (100_000, 200_000),
        (WorkloadKind::IoHeavy, Intensity::Light) => (5, 15),
        (WorkloadKind::IoHeavy, Intensity::Medium) => (100, 500),
        (WorkloadKind::IoHeavy, Intensity::Heavy) => (5_000, 15_000),
        (WorkloadKind::IoHeavy, Intensity::Severe) => (30_000, 60_000),
    }
}

/// First number tested by the prime computations: large enough that trial division costs.
const PRIME_BASE: u64 = 1_000_000_000;
/// Memory written by a severe CPU call (memory stress), MiB.
const SEVERE_MEMORY_MB: usize = 64;

/// Runs simulated work for one role.
#[derive(Clone)]
pub struct Simulator {
    mix: WorkloadMix,
    redis: ConnectionManager,
    dir: PathBuf,
    role: &'static str,
}

impl Simulator {
    pub fn new(
        mix: WorkloadMix,
        redis: ConnectionManager,
        dir: PathBuf,
        role: &'static str,
    ) -> Self {
        Self {
            mix,
            redis,
            dir,
            role,
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

    pub async fn run(&self, kind: WorkloadKind, intensity: Intensity) -> anyhow::Result<Outcome> {
        let (low, high) = items_range(kind, intensity);
        let size = rand::rng().random_range(low..=high);
        let started = Instant::now();
        let (items, cpu_time) = match kind {
            WorkloadKind::CpuHeavy => {
                let (items, usage) =
                    tokio::task::spawn_blocking(move || measure(|| run_cpu(intensity, size)))
                        .await?;
                (items.0, usage.cpu_time + items.1)
            }
            WorkloadKind::IoHeavy => {
                let mut target = IoTarget {
                    redis: self.redis.clone(),
                    dir: self.dir.clone(),
                    prefix: format!("{}:{}", self.role, uuid::Uuid::new_v4().simple()),
                };
                match intensity {
                    Intensity::Light => (
                        io::redis_basic(&mut target, size).await?,
                        std::time::Duration::ZERO,
                    ),
                    Intensity::Medium => io::file_and_redis(&mut target, size, 1).await?,
                    Intensity::Heavy => io::file_and_redis(&mut target, size, 2).await?,
                    // "Massive": four passes over twice the lines.
                    Intensity::Severe => io::file_and_redis(&mut target, size * 2, 4).await?,
                }
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

/// Items processed and the CPU time of helper threads (severe only).
fn run_cpu(intensity: Intensity, size: u64) -> (u64, std::time::Duration) {
    let none = std::time::Duration::ZERO;
    match intensity {
        Intensity::Light => {
            cpu::json_processing(size, 4);
            (size, none)
        }
        Intensity::Medium => {
            cpu::hash_computation(size, 16);
            (size, none)
        }
        Intensity::Heavy => {
            cpu::intensive_prime_computation(PRIME_BASE, size);
            (size, none)
        }
        Intensity::Severe => {
            let threads = std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .max(2);
            // "Double heavy": twice the numbers, spread over the cores.
            let (_, helpers) =
                cpu::extreme_cpu_computation(PRIME_BASE, size * 2, threads, SEVERE_MEMORY_MB);
            (size * 2, helpers)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_and_intensity_has_its_operation() {
        let mut names: Vec<&str> = [WorkloadKind::CpuHeavy, WorkloadKind::IoHeavy]
            .into_iter()
            .flat_map(|k| Intensity::ALL.into_iter().map(move |i| operation(k, i)))
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 8);
    }

    #[test]
    fn severe_cpu_spreads_over_helper_threads() {
        let ((items, helpers), usage) = measure(|| run_cpu(Intensity::Severe, 20_000));
        assert_eq!(items, 40_000);
        // The calling thread only allocates; the prime work runs on two or more helper threads.
        assert!(
            helpers > usage.cpu_time,
            "helpers {helpers:?} caller {:?}",
            usage.cpu_time
        );
    }
}
