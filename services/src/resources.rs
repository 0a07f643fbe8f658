//! Resource correlation: a background sampler of the process's CPU and resident memory, and the
//! statistics of the samples taken while one span ran (`resource.*` span attributes).
//!
//! Two weaknesses of a plain sampler are covered: a span shorter than one sampling interval has no
//! sample, so every span also carries the CPU time its own work consumed (thread CPU clocks, summed
//! over the threads the work used); and "100 %" means one core, so the CPU limit of the container
//! (cgroup v2 `cpu.max`) is reported next to it, with the average as a share of that limit.

use opentelemetry::KeyValue;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tracing_lab_config::ResourceSampling;

/// Samples older than this are dropped.
const HISTORY: Duration = Duration::from_secs(300);
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub at: Instant,
    /// CPU used by the process since the previous sample, 100 = one core.
    pub cpu_percent: f64,
    pub rss_mb: f64,
}

/// Min/avg/max of the samples in one window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub samples: usize,
    pub cpu_avg: f64,
    pub cpu_max: f64,
    pub cpu_min: f64,
    pub mem_avg_mb: f64,
    pub mem_max_mb: f64,
    pub mem_min_mb: f64,
}

impl Stats {
    /// Statistics of the samples taken in `[start, end]`; `None` when there is none.
    pub fn of(samples: &[Sample], start: Instant, end: Instant) -> Option<Self> {
        let inside: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at >= start && s.at <= end)
            .collect();
        let n = inside.len();
        if n == 0 {
            return None;
        }
        let fold = |f: fn(&Sample) -> f64| {
            let values = inside.iter().map(|s| f(s));
            let (sum, max, min) = values.fold((0.0, f64::MIN, f64::MAX), |(sum, max, min), v| {
                (sum + v, max.max(v), min.min(v))
            });
            (sum / n as f64, max, min)
        };
        let (cpu_avg, cpu_max, cpu_min) = fold(|s| s.cpu_percent);
        let (mem_avg_mb, mem_max_mb, mem_min_mb) = fold(|s| s.rss_mb);
        Some(Self {
            samples: n,
            cpu_avg,
            cpu_max,
            cpu_min,
            mem_avg_mb,
            mem_max_mb,
            mem_min_mb,
        })
    }
}

/// What one span's own work consumed, measured by the work itself.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WorkUsage {
    pub wall: Duration,
    /// CPU time of the threads that did the work.
    pub cpu_time: Duration,
}

impl WorkUsage {
    /// CPU of the work relative to its wall time, 100 = one core busy all along.
    pub fn cpu_percent(&self) -> f64 {
        if self.wall.is_zero() {
            return 0.0;
        }
        self.cpu_time.as_secs_f64() / self.wall.as_secs_f64() * 100.0
    }
}

/// CPU time consumed so far by the calling thread.
pub fn thread_cpu_time() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time consumed so far by the whole process (all threads), nanosecond precision.
pub fn process_cpu_time() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clock ids exist on every Linux kernel.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Runs `work` and measures the calling thread's CPU time and the wall time it took.
pub fn measure<T>(work: impl FnOnce() -> T) -> (T, WorkUsage) {
    let (wall_start, cpu_start) = (Instant::now(), thread_cpu_time());
    let value = work();
    let usage = WorkUsage {
        wall: wall_start.elapsed(),
        cpu_time: thread_cpu_time().saturating_sub(cpu_start),
    };
    (value, usage)
}

/// The CPU the container may use, in cores: cgroup v2 `cpu.max` quota/period, else the cores
/// this process may run on.
pub fn cpu_limit_cores() -> f64 {
    std::fs::read_to_string("/sys/fs/cgroup/cpu.max")
        .ok()
        .and_then(|text| parse_cpu_max(&text))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as f64)
}

/// `"max 100000"` → `None`; `"150000 100000"` → `Some(1.5)`.
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota: f64 = fields.next()?.parse().ok()?;
    let period: f64 = fields.next()?.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// The background sampler and the thresholds spans are judged by.
pub struct ResourceMonitor {
    samples: Mutex<VecDeque<Sample>>,
    settings: ResourceSampling,
    cpu_limit_cores: f64,
    stop: AtomicBool,
}

impl ResourceMonitor {
    /// Starts sampling every `settings.interval_ms` on its own thread (until the monitor is dropped
    /// by everyone or [`stop`](Self::stop) is called).
    pub fn start(settings: &ResourceSampling) -> anyhow::Result<Arc<Self>> {
        let monitor = Arc::new(Self {
            samples: Mutex::new(VecDeque::new()),
            settings: settings.clone(),
            cpu_limit_cores: cpu_limit_cores(),
            stop: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&monitor);
        let interval = Duration::from_millis(settings.interval_ms);
        std::thread::Builder::new()
            .name("res-sampler".into())
            .spawn(move || {
                let mut probe = MemoryProbe::new();
                let (mut last_at, mut last_cpu) = (Instant::now(), process_cpu_time());
                loop {
                    std::thread::sleep(interval);
                    let Some(monitor) = weak.upgrade() else {
                        return;
                    };
                    if monitor.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let (at, cpu) = (Instant::now(), process_cpu_time());
                    let wall = at.duration_since(last_at).as_secs_f64();
                    let cpu_percent = if wall > 0.0 {
                        (cpu - last_cpu).as_secs_f64() / wall * 100.0
                    } else {
                        0.0
                    };
                    (last_at, last_cpu) = (at, cpu);
                    monitor.record(Sample {
                        at,
                        cpu_percent,
                        rss_mb: probe.rss_mb(),
                    });
                }
            })?;
        Ok(monitor)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn record(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        while samples
            .front()
            .is_some_and(|s| sample.at.duration_since(s.at) > HISTORY)
        {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// The most recent sample (for the metrics endpoint).
    pub fn latest(&self) -> Option<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .back()
            .copied()
    }

    pub fn stats(&self, start: Instant, end: Instant) -> Option<Stats> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        // Samples are in time order: only the tail can fall inside the window.
        let from = samples.partition_point(|s| s.at < start);
        let window: Vec<Sample> = samples.range(from..).copied().collect();
        Stats::of(&window, start, end)
    }

    /// The `resource.*` attributes of a span that ran from `start` to `end`, whose own work used `work`.
    pub fn span_attributes(&self, start: Instant, end: Instant, work: WorkUsage) -> Vec<KeyValue> {
        let span_cpu = work.cpu_percent();
        let (stats, source) = match self.stats(start, end) {
            Some(stats) => (stats, "sampler"),
            None => {
                // Shorter than one interval: the span's own CPU share and the memory right now.
                let rss = MemoryProbe::new().rss_mb();
                let stats = Stats {
                    samples: 0,
                    cpu_avg: span_cpu,
                    cpu_max: span_cpu,
                    cpu_min: span_cpu,
                    mem_avg_mb: rss,
                    mem_max_mb: rss,
                    mem_min_mb: rss,
                };
                (stats, "span")
            }
        };
        let round = |v: f64| (v * 100.0).round() / 100.0;
        vec![
            KeyValue::new("resource.cpu.avg", round(stats.cpu_avg)),
            KeyValue::new("resource.cpu.max", round(stats.cpu_max)),
            KeyValue::new("resource.cpu.min", round(stats.cpu_min)),
            KeyValue::new("resource.cpu.source", source),
            KeyValue::new("resource.cpu.limit_cores", round(self.cpu_limit_cores)),
            KeyValue::new(
                "resource.cpu.avg_of_limit",
                round(stats.cpu_avg / self.cpu_limit_cores),
            ),
            KeyValue::new(
                "resource.span.cpu_time_ms",
                round(work.cpu_time.as_secs_f64() * 1000.0),
            ),
            KeyValue::new("resource.span.cpu_percent", round(span_cpu)),
            KeyValue::new("resource.memory.avg_mb", round(stats.mem_avg_mb)),
            KeyValue::new("resource.memory.max_mb", round(stats.mem_max_mb)),
            KeyValue::new("resource.memory.min_mb", round(stats.mem_min_mb)),
            KeyValue::new("resource.samples", stats.samples as i64),
            // Judged by the span's own work, not by whatever else the process did meanwhile.
            KeyValue::new(
                "resource.cpu_bound",
                span_cpu >= self.settings.cpu_bound_percent,
            ),
            KeyValue::new(
                "resource.memory_threshold_exceeded",
                stats.mem_max_mb > self.settings.memory_threshold_mb,
            ),
        ]
    }
}

/// Resident memory of this process through sysinfo (memory only: one small /proc read).
struct MemoryProbe {
    system: Option<System>,
    pid: Option<Pid>,
}

impl MemoryProbe {
    fn new() -> Self {
        Self {
            system: System::new().ok(),
            pid: sysinfo::get_current_pid().ok(),
        }
    }

    fn rss_mb(&mut self) -> f64 {
        let (Some(system), Some(pid)) = (&mut self.system, self.pid) else {
            return 0.0;
        };
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            false,
            ProcessRefreshKind::nothing().with_memory(),
        );
        system.process(pid).map_or(0.0, |p| p.memory() as f64 / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(base: Instant, ms: u64, cpu: f64, mem: f64) -> Sample {
        Sample {
            at: base + Duration::from_millis(ms),
            cpu_percent: cpu,
            rss_mb: mem,
        }
    }

    #[test]
    fn stats_cover_only_the_window() {
        let t0 = Instant::now();
        let samples = [
            sample(t0, 0, 500.0, 1.0),
            sample(t0, 100, 150.0, 60.0),
            sample(t0, 200, 50.0, 70.0),
            sample(t0, 300, 100.0, 65.0),
            sample(t0, 400, 900.0, 900.0),
        ];
        let s = Stats::of(
            &samples,
            t0 + Duration::from_millis(50),
            t0 + Duration::from_millis(300),
        )
        .unwrap();
        assert_eq!(s.samples, 3);
        assert_eq!((s.cpu_avg, s.cpu_max, s.cpu_min), (100.0, 150.0, 50.0));
        assert_eq!(
            (s.mem_avg_mb, s.mem_max_mb, s.mem_min_mb),
            (65.0, 70.0, 60.0)
        );
        assert_eq!(
            Stats::of(
                &samples,
                t0 + Duration::from_millis(10),
                t0 + Duration::from_millis(90)
            ),
            None
        );
    }

    #[test]
    fn cpu_max_parses_quota_and_unlimited() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max("garbage"), None);
    }

    #[test]
    fn thread_cpu_time_counts_work_not_sleep() {
        // Spin until the thread's own clock says 30 ms, however busy the machine is.
        let (_, busy) = measure(|| {
            let start = thread_cpu_time();
            let mut x = 0u64;
            while thread_cpu_time() - start < Duration::from_millis(30) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        });
        assert!(
            busy.cpu_time >= Duration::from_millis(30) && busy.cpu_time <= busy.wall,
            "{busy:?}"
        );
        let (_, idle) = measure(|| std::thread::sleep(Duration::from_millis(30)));
        assert!(idle.cpu_time < Duration::from_millis(5), "{idle:?}");
        assert!(idle.wall >= Duration::from_millis(30));
    }

    #[test]
    fn short_spans_get_their_own_figure_and_long_ones_the_samples() {
        let settings = ResourceSampling {
            interval_ms: 20,
            cpu_bound_percent: 50.0,
            memory_threshold_mb: 100_000.0,
        };
        let monitor = ResourceMonitor::start(&settings).unwrap();
        let get = |attrs: &[KeyValue], key: &str| {
            attrs
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.clone())
        };

        let start = Instant::now();
        let usage = WorkUsage {
            wall: Duration::from_millis(2),
            cpu_time: Duration::from_millis(2),
        };
        let attrs = monitor.span_attributes(start, start + usage.wall, usage);
        assert_eq!(get(&attrs, "resource.samples"), Some(0i64.into()));
        assert_eq!(get(&attrs, "resource.cpu.source"), Some("span".into()));
        assert_eq!(get(&attrs, "resource.cpu.avg"), Some(100.0.into()));
        assert_eq!(get(&attrs, "resource.cpu_bound"), Some(true.into()));
        let Some(opentelemetry::Value::F64(rss)) = get(&attrs, "resource.memory.max_mb") else {
            panic!("no memory")
        };
        assert!(rss > 1.0 && rss < 1000.0, "{rss}");

        std::thread::sleep(Duration::from_millis(150));
        let attrs = monitor.span_attributes(start, Instant::now(), WorkUsage::default());
        let Some(opentelemetry::Value::I64(n)) = get(&attrs, "resource.samples") else {
            panic!("no samples")
        };
        assert!(n >= 3, "{n}");
        assert_eq!(get(&attrs, "resource.cpu.source"), Some("sampler".into()));
        assert_eq!(
            get(&attrs, "resource.memory_threshold_exceeded"),
            Some(false.into())
        );
        monitor.stop();
    }
}
