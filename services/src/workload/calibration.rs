//! Start-up calibration: how much CPU one unit of each kernel costs on this machine, so that a
//! call can be sized to its CPU target whatever the CPU. Thread CPU clocks, not wall time, so a
//! busy machine skews the figure little.

use super::cpu;
use crate::resources::measure;
use std::time::{Duration, Instant};

/// The CPU kernels: JSON records (light), chained SHA-256 items (medium), numbers tested for
/// primality (heavy and severe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Json,
    Hash,
    Prime,
}

impl Kernel {
    pub const ALL: [Kernel; 3] = [Self::Json, Self::Hash, Self::Prime];

    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Hash => "hash",
            Self::Prime => "prime",
        }
    }

    /// Runs `units` units of work from the first unit on (the same numbers every call, so the
    /// calibrated cost per unit holds for the call).
    pub fn run(self, units: u64) -> u64 {
        match self {
            Self::Json => cpu::json_processing(units),
            Self::Hash => cpu::hash_computation(units),
            Self::Prime => cpu::intensive_prime_computation(cpu::PRIME_BASE, units),
        }
    }

    /// Units of one calibration run: a few milliseconds of CPU on a current laptop core. JSON
    /// gets the size of a light call (its cost per record grows with the batch, as caches
    /// fill); primes get more, because the share of primes (the costly numbers) varies along
    /// the range.
    fn sample_units(self) -> u64 {
        match self {
            Self::Json => 800,
            Self::Hash => 2_000,
            Self::Prime => 20_000,
        }
    }
}

/// Runs per kernel; the median is kept, so one preempted or cold run does not count.
const RUNS: usize = 5;

/// CPU nanoseconds per unit of each kernel, in the order of [`Kernel::ALL`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    ns_per_unit: [f64; 3],
    /// Wall time the calibration took.
    pub took: Duration,
}

impl Calibration {
    /// Measures every kernel on the calling thread.
    pub fn measure() -> Self {
        let started = Instant::now();
        let ns_per_unit = Kernel::ALL.map(|kernel| {
            let units = kernel.sample_units();
            let runs: Vec<f64> = (0..RUNS)
                .map(|_| {
                    let (_, usage) = measure(|| kernel.run(units));
                    usage.cpu_time.as_nanos() as f64 / units as f64
                })
                .collect();
            median(runs)
        });
        Self {
            ns_per_unit,
            took: started.elapsed(),
        }
    }

    pub fn ns_per_unit(&self, kernel: Kernel) -> f64 {
        self.ns_per_unit[kernel as usize]
    }

    /// Units of `kernel` that cost `cpu`.
    pub fn units(&self, kernel: Kernel, cpu: Duration) -> u64 {
        units_for(cpu, self.ns_per_unit(kernel))
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// At least one unit; a kernel too fast for the clock to see counts as 1 ns per unit.
fn units_for(cpu: Duration, ns_per_unit: f64) -> u64 {
    ((cpu.as_nanos() as f64 / ns_per_unit.max(1.0)).round() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_the_cost_per_unit() {
        assert_eq!(units_for(Duration::from_millis(2), 1_000.0), 2_000);
        assert_eq!(units_for(Duration::from_millis(2), 4_000.0), 500);
        assert_eq!(units_for(Duration::ZERO, 1_000.0), 1);
        assert_eq!(units_for(Duration::from_micros(5), 0.0), 5_000);
        assert_eq!(median(vec![9.0, 1.0, 3.0]), 3.0);
    }

    #[test]
    fn a_slower_cpu_gets_fewer_units_for_the_same_target() {
        let fast = Calibration {
            ns_per_unit: [1_000.0, 2_000.0, 1_500.0],
            took: Duration::ZERO,
        };
        let slow = Calibration {
            ns_per_unit: fast.ns_per_unit.map(|ns| ns * 3.0),
            took: Duration::ZERO,
        };
        let target = Duration::from_secs(2);
        let (f, s) = (
            fast.units(Kernel::Prime, target),
            slow.units(Kernel::Prime, target),
        );
        assert_eq!(f, 1_333_333);
        assert_eq!(s, 444_444);
        // Either way the work costs its target on its own CPU.
        assert!((f as f64 * 1_500.0 - 2e9).abs() < 1e3);
        assert!((s as f64 * 4_500.0 - 2e9).abs() < 1e4);
    }

    #[test]
    fn measuring_gives_a_cost_for_every_kernel() {
        let c = Calibration::measure();
        for kernel in Kernel::ALL {
            assert!(c.ns_per_unit(kernel) > 1.0, "{kernel:?}: {c:?}");
        }
        assert!(c.took < Duration::from_secs(5), "{c:?}");
    }
}
