//! Services benchmark (prints figures): end-to-end orders per second through all four services
//! with workloads off, order latency p50/p99, the throughput cost of tracing, the resource
//! sampler's own CPU cost, and each service's idle resident memory.
//!
//! `cargo build --release -p tracing-lab-service && cargo bench -p tracing-lab-tests --bench services`

#[allow(dead_code)] // Shared with the end-to-end tests, which use other parts.
#[path = "../tests/services_lab.rs"]
mod lab;

use anyhow::{Context, Result};
use futures::StreamExt;
use lab::Lab;
use std::time::{Duration, Instant};
use tracing_lab_config::{LabConfig, Role};

const ORDERS: usize = 4000;
/// Requests in flight from the benchmark's client.
const CLIENTS: usize = 64;
const CONSUMER_CONCURRENCY: u32 = 32;

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
}

/// Sends `ORDERS` orders with `CLIENTS` in flight and waits until all are analysed.
async fn pipeline_run(extra_env: &[(&str, &str)]) -> Result<Run> {
    let lab = Lab::start(&throughput_config(), extra_env).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    let started = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..ORDERS)
        .map(|i| {
            let (http, url) = (http.clone(), lab.api_url.clone());
            async move {
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
    lab.wait_analyzed(ORDERS as i64, Duration::from_secs(300))
        .await?;
    let elapsed = started.elapsed();

    let mut redis = lab.redis().await?;
    let mut latencies = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("HMGET")
                .arg(format!("order:{id}"))
                .arg("created_at_ms")
                .arg("analytics_at_ms");
        }
        let rows: Vec<(Option<i64>, Option<i64>)> = pipe.query_async(&mut redis).await?;
        latencies.extend(
            rows.into_iter()
                .filter_map(|(created, analysed)| Some((analysed? - created?) as f64)),
        );
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    Ok(Run {
        orders_per_second: ORDERS as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    })
}

/// CPU time of one thread of `pid` named `comm`, from the scheduler's nanosecond accounting.
fn thread_cpu(pid: u32, comm: &str) -> Result<Duration> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        if std::fs::read_to_string(task.join("comm"))?.trim() == comm {
            let schedstat = std::fs::read_to_string(task.join("schedstat"))?;
            let ns: u64 = schedstat
                .split_whitespace()
                .next()
                .context("schedstat")?
                .parse()?;
            return Ok(Duration::from_nanos(ns));
        }
    }
    anyhow::bail!("no thread {comm} in process {pid}")
}

fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("VmRSS")?
        .parse()?;
    Ok(kb / 1024.0)
}

async fn idle_figures() -> Result<()> {
    let mut lab = Lab::start(&LabConfig::default(), &[]).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for role in Role::ALL {
        let pid = lab.service(role).pid().context("running")?;
        println!(
            "idle RSS {:<13} {:6.1} MiB (target < 30)",
            role.name(),
            rss_mib(pid)?
        );
    }
    let pid = lab.service(Role::Analytics).pid().context("running")?;
    let window = Duration::from_secs(10);
    let before = thread_cpu(pid, "resource-sampler")?;
    tokio::time::sleep(window).await;
    let used = thread_cpu(pid, "resource-sampler")? - before;
    println!(
        "sampler CPU at 100 ms: {:.3}% of a core ({:?} in {:?}; target < 0.5%)",
        used.as_secs_f64() / window.as_secs_f64() * 100.0,
        used,
        window
    );
    Ok(())
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        idle_figures().await?;
        let traced = pipeline_run(&[("RUST_LOG", "warn")]).await?;
        let untraced = pipeline_run(&[("RUST_LOG", "warn"), ("OTEL_SDK_DISABLED", "true")]).await?;
        for (label, run) in [("tracing on ", &traced), ("tracing off", &untraced)] {
            println!(
                "{label}: {ORDERS} orders end to end, {:7.0} orders/s (target >= 1000), latency p50 {:5.0} ms, p99 {:5.0} ms",
                run.orders_per_second, run.p50_ms, run.p99_ms
            );
        }
        println!(
            "tracing cost: {:.1}% of throughput (target < 5%)",
            (1.0 - traced.orders_per_second / untraced.orders_per_second) * 100.0
        );
        Ok(())
    })
}
