//! Workload benchmark (prints figures, asserts nothing): every kind and intensity run through the
//! services' `Simulator` against a real Redis, measured against its target (`Intensity::target`):
//! wall time, CPU time of the threads that did the work, and peak resident memory.
//!
//! Twice: at full speed, then on an emulated slower CPU: the benchmark runs itself again under
//! `taskset -c 0` beside a thread that spins on the same core, so the work (and its start-up
//! calibration) gets half a core. Each call sits on its target (the ±20 % spread left out), so
//! "off" is the sizing error alone.
//!
//! `cargo bench -p tracing-lab-tests --bench workload`

use anyhow::{Context, Result};
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tracing_lab_config::{Intensity, WorkloadKind, WorkloadMix};
use tracing_lab_service::workload::{Kernel, Simulator};
use tracing_lab_tests::procfs;
use tracing_lab_tests::redis::RedisServer;

/// Set in the slowed-down run.
const SLOW_ENV: &str = "TRACING_LAB_WORKLOAD_BENCH_SLOW";

fn calls(intensity: Intensity) -> usize {
    match intensity {
        Intensity::Light | Intensity::Medium => 21,
        Intensity::Heavy => 5,
        Intensity::Severe => 3,
    }
}

/// Highest resident memory of this process since the last `take`, sampled every 5 ms.
struct PeakRss {
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl PeakRss {
    fn start() -> Self {
        let (peak_kib, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (peak, done) = (peak_kib.clone(), stop.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok(kib) = procfs::status_kib(std::process::id(), "VmRSS:") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Self { peak_kib, stop }
    }

    fn take_mib(&self) -> f64 {
        let now = procfs::status_kib(std::process::id(), "VmRSS:").unwrap_or(0);
        self.peak_kib.swap(now, Ordering::Relaxed).max(now) as f64 / 1024.0
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn off(measured: f64, target: f64) -> f64 {
    (measured / target - 1.0) * 100.0
}

async fn run(label: &str) -> Result<()> {
    let redis_server = RedisServer::start().await?;
    let redis = ConnectionManager::new(redis::Client::open(redis_server.url())?).await?;
    let dir = tempfile::tempdir()?;
    let load = std::fs::read_to_string("/proc/loadavg")?;
    let mix = WorkloadMix::new(50, 50, &Intensity::ALL);
    let simulator = Simulator::new(mix, redis, dir.path().to_owned(), "bench");
    let calibration = simulator
        .calibration()
        .await
        .context("a mix with CPU work calibrates")?;
    println!(
        "{label}: calibration {} ms (ns per unit: {}); load average {}",
        calibration.took.as_millis(),
        Kernel::ALL
            .map(|k| format!("{} {:.0}", k.name(), calibration.ns_per_unit(k)))
            .join(", "),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  {:<8} {:<9} {:>3} | {:>7} {:>7} {:>6} | {:>7} {:>7} {:>6} {:>13} | {:>7} {:>7}",
        "",
        "kind",
        "n",
        "cpu tgt",
        "cpu ms",
        "off %",
        "wall tg",
        "wall ms",
        "off %",
        "range off %",
        "MiB tgt",
        "RSS max"
    );
    let rss = PeakRss::start();
    let baseline = rss.take_mib();
    for intensity in Intensity::ALL {
        for kind in WorkloadKind::ALL {
            let target = intensity.target(kind);
            let mut rows = Vec::new();
            for _ in 0..calls(intensity) {
                rss.take_mib();
                let outcome = simulator.run_at(kind, intensity, 0.5).await?;
                rows.push((
                    outcome.usage.cpu_time.as_secs_f64() * 1e3,
                    outcome.usage.wall.as_secs_f64() * 1e3,
                    rss.take_mib(),
                ));
            }
            // The figure a target sets: CPU time for CPU work, wall time for IO work.
            let held: Vec<f64> = match kind {
                WorkloadKind::CpuHeavy => rows
                    .iter()
                    .map(|r| off(r.0, target.cpu_ms.into()))
                    .collect(),
                WorkloadKind::IoHeavy => {
                    rows.iter().map(|r| off(r.1, target.io_ms.into())).collect()
                }
            };
            let cpu = median(rows.iter().map(|r| r.0).collect());
            let wall = median(rows.iter().map(|r| r.1).collect());
            let cpu_off = match kind {
                WorkloadKind::CpuHeavy => format!("{:>+6.1}", off(cpu, target.cpu_ms.into())),
                WorkloadKind::IoHeavy => format!("{:>6}", "-"),
            };
            println!(
                "  {:<8} {:<9} {:>3} | {:>7} {:>7.1} {cpu_off} | {:>7} {:>7.1} {:>+6.1} {:>6.1}..{:<+6.1} | {:>7} {:>7.1}",
                intensity.name(),
                kind.name(),
                rows.len(),
                target.cpu_ms,
                cpu,
                target.wall_ms(),
                wall,
                off(wall, target.wall_ms()),
                held.iter().copied().fold(f64::MAX, f64::min),
                held.iter().copied().fold(f64::MIN, f64::max),
                target.held_mib,
                rows.iter().map(|r| r.2).fold(0.0, f64::max),
            );
        }
    }
    println!("  (RSS before the calls: {baseline:.1} MiB; range: the target's figure, per call)");
    Ok(())
}

fn main() -> Result<()> {
    let slow = std::env::var_os(SLOW_ENV).is_some();
    if slow {
        // Shares the single core the process is pinned to with the work.
        std::thread::spawn(|| {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if slow {
        return runtime.block_on(run("slowed (taskset -c 0 beside a spinning thread)"));
    }
    runtime.block_on(run("full speed"))?;
    let status = std::process::Command::new("taskset")
        .arg("-c")
        .arg("0")
        .arg(std::env::current_exe()?)
        .args(std::env::args().skip(1))
        .env(SLOW_ENV, "1")
        .status()
        .context("taskset")?;
    anyhow::ensure!(status.success(), "the slowed run failed: {status}");
    Ok(())
}
