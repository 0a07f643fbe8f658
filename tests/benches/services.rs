//! Services benchmark (prints figures): end-to-end orders per second through all four services
//! with workloads off, order latency p50/p99, the throughput cost of tracing, the resource
//! sampler's own CPU cost and each service's idle resident memory, and the cost of tracing on
//! the baseline lab's own workload, and how fast a backlog drains through consumers of the lab's
//! default concurrency 1. Workload costs: the `workload` bench.
//!
//! `cargo build --release -p tracing-lab-service && cargo bench -p tracing-lab-tests --bench services`

use tracing_lab_tests::services_lab as lab;

use anyhow::{Context, Result};
use futures::StreamExt;
use lab::Lab;
use std::time::{Duration, Instant};
use tracing_lab_config::{LabConfig, Role};
use tracing_lab_tests::procfs;

const ORDERS: usize = 30_000;
/// Requests in flight from the benchmark's client.
const CLIENTS: usize = 64;
const CONSUMER_CONCURRENCY: u32 = 32;
const WARMUP_ORDERS: usize = 20;
/// The latency run: a steady rate below saturation.
const PACED_ORDERS: usize = 2000;
const PACED_RATE: f64 = 500.0;

fn throughput_config() -> LabConfig {
    let mut config = LabConfig::default();
    for role in Role::ALL {
        let settings = config.role_mut(role);
        settings.workload.enabled = false;
        settings.concurrency = CONSUMER_CONCURRENCY;
    }
    config
}

struct Run {
    orders_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU time the four services used per order (the broker, Redis, the receiver and this
    /// client excluded).
    service_cpu_us_per_order: f64,
    /// Median time of each hop: api → processing done → notification done → analytics done.
    hop_p50_ms: [f64; 3],
}

/// Sends `orders` orders with up to `CLIENTS` in flight — as fast as possible, or `per_second`
/// evenly spaced — and waits until all are analysed.
async fn pipeline_run(
    orders: usize,
    per_second: Option<f64>,
    extra_env: &[(&str, &str)],
) -> Result<Run> {
    pipeline_run_with(&throughput_config(), orders, per_second, extra_env).await
}

async fn pipeline_run_with(
    config: &LabConfig,
    orders: usize,
    per_second: Option<f64>,
    extra_env: &[(&str, &str)],
) -> Result<Run> {
    let lab = Lab::start(config, extra_env).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    // Warm up: consumer groups joined, connections open, before the clock starts.
    for _ in 0..WARMUP_ORDERS {
        let (status, body) = lab::post_order(&http, &lab.api_url, "warmup", 1).await?;
        anyhow::ensure!(status == 202, "warm-up order: {status} {body}");
    }
    lab.wait_analyzed(WARMUP_ORDERS as i64, Duration::from_secs(60))
        .await?;
    let pids: Vec<u32> = Role::ALL
        .iter()
        .filter_map(|r| lab.services[r].pid())
        .collect();
    let cpu_before = procfs::processes_cpu(&pids)?;
    let started = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..orders)
        .map(|i| {
            let (http, url) = (http.clone(), lab.api_url.clone());
            async move {
                if let Some(rate) = per_second {
                    let slot = tokio::time::Instant::from_std(started)
                        + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(slot).await;
                }
                let (status, body) =
                    lab::post_order(&http, &url, "bench", (i % 9 + 1) as i64).await?;
                anyhow::ensure!(status == 202, "status {status}: {body}");
                body["order_id"]
                    .as_str()
                    .map(str::to_owned)
                    .context("order id")
            }
        })
        .buffer_unordered(CLIENTS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    lab.wait_analyzed((WARMUP_ORDERS + orders) as i64, Duration::from_secs(300))
        .await?;
    let elapsed = started.elapsed();
    let service_cpu = procfs::processes_cpu(&pids)? - cpu_before;

    let mut redis = lab.redis().await?;
    let mut latencies = Vec::with_capacity(ids.len());
    let mut hops: [Vec<f64>; 3] = Default::default();
    for chunk in ids.chunks(500) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("HMGET").arg(format!("order:{id}")).arg(&[
                "created_at_ms",
                "processing_at_ms",
                "notification_at_ms",
                "analytics_at_ms",
            ]);
        }
        let rows: Vec<[Option<i64>; 4]> = pipe.query_async(&mut redis).await?;
        for row in rows {
            let [
                Some(created),
                Some(processed),
                Some(notified),
                Some(analysed),
            ] = row
            else {
                continue;
            };
            latencies.push((analysed - created) as f64);
            for (hop, (from, to)) in [
                (created, processed),
                (processed, notified),
                (notified, analysed),
            ]
            .into_iter()
            .enumerate()
            {
                hops[hop].push((to - from) as f64);
            }
        }
    }
    anyhow::ensure!(
        latencies.len() == orders,
        "{} of {orders} orders have every timestamp",
        latencies.len()
    );
    let percentile = |values: &mut Vec<f64>, p: f64| {
        values.sort_by(f64::total_cmp);
        values[((values.len() - 1) as f64 * p) as usize]
    };
    Ok(Run {
        orders_per_second: orders as f64 / elapsed.as_secs_f64(),
        service_cpu_us_per_order: service_cpu.as_secs_f64() * 1e6 / orders as f64,
        p50_ms: percentile(&mut latencies, 0.5),
        p99_ms: percentile(&mut latencies, 0.99),
        hop_p50_ms: hops.map(|mut h| percentile(&mut h, 0.5)),
    })
}

/// CPU time used so far by the thread of `pid` named `comm`.
fn thread_cpu(pid: u32, comm: &str) -> Result<Duration> {
    procfs::threads_cpu(Some(pid))?
        .into_iter()
        .find_map(|(name, cpu)| (name == comm).then_some(cpu))
        .with_context(|| format!("no thread {comm} in process {pid}"))
}

async fn idle_figures() -> Result<()> {
    let mut lab = Lab::start(&LabConfig::default(), &[]).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for role in Role::ALL {
        let pid = lab.service(role).pid().context("running")?;
        println!(
            "idle RSS {:<13} {:6.1} MiB (target < 30)",
            role.name(),
            procfs::status_kib(pid, "VmRSS:")? as f64 / 1024.0
        );
    }
    let pid = lab.service(Role::Analytics).pid().context("running")?;
    let window = Duration::from_secs(10);
    let before = thread_cpu(pid, "res-sampler")?;
    tokio::time::sleep(window).await;
    let used = thread_cpu(pid, "res-sampler")? - before;
    println!(
        "sampler CPU at 100 ms: {:.3}% of a core ({:?} in {:?}; target < 0.5%)",
        used.as_secs_f64() / window.as_secs_f64() * 100.0,
        used,
        window
    );
    Ok(())
}

/// Sections to run: the names given on the command line (`idle`, `throughput`, `latency`,
/// `baseline`, `backlog`), or all.
fn wanted(section: &str) -> bool {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    named.is_empty() || named.iter().any(|n| n == section)
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if wanted("idle") {
            idle_figures().await?;
        }
        if wanted("throughput") {
            throughput().await?;
        }
        if wanted("latency") {
            latency().await?;
        }
        if wanted("baseline") {
            baseline().await?;
        }
        if wanted("backlog") {
            backlog().await?;
        }
        Ok(())
    })
}

/// Throughput runs alternate between the tracing settings, three times each, and each setting's
/// median run is reported: the machine is shared, and one noisy run must not decide.
async fn throughput() -> Result<()> {
    const ROUNDS: usize = 3;
    let settings: [(&str, &[(&str, &str)]); 3] = [
        ("every order traced  ", &[("RUST_LOG", "warn")]),
        (
            "1 in 10 traced      ",
            &[
                ("RUST_LOG", "warn"),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ],
        ),
        (
            "tracing off         ",
            &[("RUST_LOG", "warn"), ("OTEL_SDK_DISABLED", "true")],
        ),
    ];
    let mut runs: [Vec<Run>; 3] = Default::default();
    for _ in 0..ROUNDS {
        for (side, (_, env)) in settings.iter().enumerate() {
            runs[side].push(pipeline_run(ORDERS, None, env).await?);
        }
    }
    let medians = runs.map(|mut side| {
        side.sort_by(|a, b| a.orders_per_second.total_cmp(&b.orders_per_second));
        side.swap_remove(ROUNDS / 2)
    });
    for ((label, _), run) in settings.iter().zip(&medians) {
        println!(
            "{label}: {ORDERS} orders as fast as possible: {:6.0} orders/s end to end (target >= 1000); the four services used {:.0} us CPU per order",
            run.orders_per_second, run.service_cpu_us_per_order
        );
    }
    let untraced = &medians[2];
    for (label, run) in [
        ("every order", &medians[0]),
        ("1 in 10 orders", &medians[1]),
    ] {
        println!(
            "tracing cost, {label} traced and exported over OTLP/gRPC: {:.1}% of throughput, {:.1}% more service CPU per order (target < 5%)",
            (1.0 - run.orders_per_second / untraced.orders_per_second) * 100.0,
            (run.service_cpu_us_per_order / untraced.service_cpu_us_per_order - 1.0) * 100.0
        );
    }
    Ok(())
}

/// Latency below saturation, with where it is spent: with 32 messages in flight per stage, and
/// at the lab's default of one message at a time.
async fn latency() -> Result<()> {
    let mut one_at_a_time = throughput_config();
    for role in Role::ALL {
        one_at_a_time.role_mut(role).concurrency = 1;
    }
    for (label, config) in [
        ("concurrency 32", throughput_config()),
        ("concurrency 1 ", one_at_a_time),
    ] {
        let paced = pipeline_run_with(
            &config,
            PACED_ORDERS,
            Some(PACED_RATE),
            &[("RUST_LOG", "warn")],
        )
        .await?;
        println!(
            "order latency (api accepted -> analytics done) at {PACED_RATE} orders/s, tracing on, {label}: p50 {:.0} ms, p99 {:.0} ms (median per hop: processing {:.0}, notification {:.0}, analytics {:.0} ms)",
            paced.p50_ms,
            paced.p99_ms,
            paced.hop_p50_ms[0],
            paced.hop_p50_ms[1],
            paced.hop_p50_ms[2]
        );
    }
    Ok(())
}

/// The lab of `examples/baseline.yaml`, as the operator configures the services.
fn baseline_config() -> Result<LabConfig> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/baseline.yaml");
    let lab: tracing_lab_operator::TracingLab =
        serde_saphyr::from_str(&std::fs::read_to_string(path)?)?;
    Ok(lab.spec.lab_config())
}

/// What tracing costs on the work the baseline lab does (light and medium work in every step),
/// tracing on against off: the services' CPU per order, over paced orders, rounds alternating.
async fn baseline() -> Result<()> {
    const ROUNDS: usize = 3;
    const BASELINE_ORDERS: usize = 600;
    const BASELINE_RATE: f64 = 20.0;
    let config = baseline_config()?;
    let settings: [(&str, &[(&str, &str)]); 2] = [
        ("tracing on ", &[("RUST_LOG", "warn")]),
        (
            "tracing off",
            &[("RUST_LOG", "warn"), ("OTEL_SDK_DISABLED", "true")],
        ),
    ];
    let mut cpu: [Vec<f64>; 2] = Default::default();
    for _ in 0..ROUNDS {
        for (side, (_, env)) in settings.iter().enumerate() {
            let run = pipeline_run_with(&config, BASELINE_ORDERS, Some(BASELINE_RATE), env).await?;
            cpu[side].push(run.service_cpu_us_per_order);
        }
    }
    let stats = |runs: &[f64]| {
        let mean = runs.iter().sum::<f64>() / runs.len() as f64;
        let spread = runs.iter().map(|r| (r - mean).abs()).fold(0.0, f64::max);
        (mean, spread)
    };
    let [(on, on_spread), (off, off_spread)] = [stats(&cpu[0]), stats(&cpu[1])];
    for ((label, _), (mean, spread)) in settings.iter().zip([(on, on_spread), (off, off_spread)]) {
        println!(
            "baseline workload, {label}: {BASELINE_ORDERS} orders at {BASELINE_RATE} orders/s, {ROUNDS} runs: the four services used {mean:.0} us CPU per order (runs within {spread:.0} us)"
        );
    }
    println!(
        "tracing cost on the baseline workload: {:+.1}% service CPU per order (target <= 3%; the runs spread {:.1}%)",
        (on / off - 1.0) * 100.0,
        (on_spread.max(off_spread) / off) * 100.0
    );
    Ok(())
}

/// A backlog through consumers of the lab's default concurrency (1, one message after the
/// other), workloads off: what a stage does with queued messages when its work is quick. The
/// steady rate counts from the first tenth of the backlog done to the last, so that process start
/// and group join do not count.
async fn backlog() -> Result<()> {
    const BACKLOG: usize = 10_000;
    let mut config = LabConfig::default();
    for role in Role::ALL {
        config.role_mut(role).workload.enabled = false;
    }
    let mut lab = Lab::start(&config, &[("RUST_LOG", "warn")]).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    lab.service(Role::Processing).kill()?;
    lab.service(Role::Notification).kill()?;
    let posted: Vec<Result<()>> = futures::stream::iter(0..BACKLOG)
        .map(|i| {
            let (http, url) = (http.clone(), lab.api_url.clone());
            async move {
                let (status, body) =
                    lab::post_order(&http, &url, "backlog", (i % 9 + 1) as i64).await?;
                anyhow::ensure!(status == 202, "status {status}: {body}");
                Ok(())
            }
        })
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    posted.into_iter().collect::<Result<Vec<()>>>()?;
    // One stage alone: processing drains `orders` while nothing reads what it publishes.
    lab.service(Role::Processing).respawn()?;
    let stage = steady_rate(BACKLOG, || async {
        let committed = lab.broker.committed_offsets("processing", "orders").await?;
        Ok(committed.iter().map(|c| c.unwrap_or(0) as usize).sum())
    })
    .await?;
    // The chain: notification and analytics drain what processing published.
    lab.service(Role::Notification).respawn()?;
    let started = Instant::now();
    let chain = steady_rate(BACKLOG, || async { Ok(lab.analyzed().await? as usize) }).await?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "backlog at concurrency 1: processing alone handles {stage:.0} messages/s, {:.2} ms each (target >= 500, <= 2 ms); {BACKLOG} orders then drained through notification and analytics in {elapsed:.1} s, {chain:.0} orders/s steady (process start and group join excluded)",
        1000.0 / stage
    );
    Ok(())
}

/// Messages per second between a tenth of `total` done and all of it, polling `done`.
async fn steady_rate<F, Fut>(total: usize, done: F) -> Result<f64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<usize>>,
{
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first: Option<(Instant, usize)> = None;
    loop {
        let count = done().await?;
        let now = Instant::now();
        if first.is_none() && count >= total / 10 {
            first = Some((now, count));
        }
        if count >= total
            && let Some((at, from)) = first
        {
            return Ok((count - from) as f64 / (now - at).as_secs_f64().max(1e-3));
        }
        anyhow::ensure!(now < deadline, "{count} of {total} done after 600 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
