//! The baseline lab's footprint on a real node, from the kubelet (`/stats/summary` through the
//! API server's node proxy): each pod's memory working set and CPU, idle and under the lab's own
//! load generator, beside what the operator requests and limits for it.
//!
//! Prints one table per phase: per pod, the mean and peak CPU (millicores) and working set (MiB),
//! its requests and limits, and the lab's totals. `FOOTPRINT_LOAD_MINUTES` sets the loaded phase
//! (default 5); the soak run is `FOOTPRINT_LOAD_MINUTES=60`, which also prints the working set's
//! curve per pod (every tenth of the run). `FOOTPRINT_SPAN_METRICS=true` turns the lab's span
//! metrics on, to weigh the Prometheus they add. After the load: restarts, and the orders the api
//! stored against those analysed once the lag drained.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tracing_lab_tests::node_lab::{NodeLab, example};

const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const IDLE: Duration = Duration::from_secs(120);

/// One pod's samples: CPU in millicores, working set in MiB.
#[derive(Default)]
struct Series {
    cpu: Vec<f64>,
    memory: Vec<f64>,
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn peak(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

/// The kubelet's summary of the lab's pods: pod name → (millicores, MiB).
async fn sample(lab: &NodeLab) -> Result<BTreeMap<String, (f64, f64)>> {
    let summary = lab.node.stats_summary().await?;
    let mut pods = BTreeMap::new();
    for pod in summary["pods"]
        .as_array()
        .context("no pods in the summary")?
    {
        if pod["podRef"]["namespace"] != lab.namespace.as_str() {
            continue;
        }
        let name = pod["podRef"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let cpu = pod["cpu"]["usageNanoCores"].as_f64().unwrap_or(0.0) / 1e6;
        let memory = pod["memory"]["workingSetBytes"].as_f64().unwrap_or(0.0) / 1024.0 / 1024.0;
        pods.insert(name, (cpu, memory));
    }
    Ok(pods)
}

/// Per pod: requests and limits of its first container, as `cpu/memory` strings.
fn resources(lab: &NodeLab) -> Result<BTreeMap<String, (String, String)>> {
    let pods: Value = serde_json::from_str(&lab.kubectl(&["get", "pods", "-o", "json"])?)?;
    let mut out = BTreeMap::new();
    for pod in pods["items"].as_array().context("no items")? {
        let r = &pod["spec"]["containers"][0]["resources"];
        let pair = |k: &str| {
            format!(
                "{}/{}",
                r[k]["cpu"].as_str().unwrap_or("-"),
                r[k]["memory"].as_str().unwrap_or("-")
            )
        };
        out.insert(
            pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            (pair("requests"), pair("limits")),
        );
    }
    Ok(out)
}

async fn measure(lab: &NodeLab, phase: &str, length: Duration, curve: bool) -> Result<()> {
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    let started = Instant::now();
    while started.elapsed() < length {
        tokio::time::sleep(SAMPLE_EVERY).await;
        for (pod, (cpu, memory)) in sample(lab).await? {
            let s = series.entry(pod).or_default();
            s.cpu.push(cpu);
            s.memory.push(memory);
        }
    }
    let resources = resources(lab)?;
    println!(
        "\n{phase}, {:.0} min, a sample every {} s:",
        length.as_secs_f64() / 60.0,
        SAMPLE_EVERY.as_secs()
    );
    println!(
        "  {:<34} {:>8} {:>8} {:>9} {:>9}  {:<14} {:<14}",
        "pod", "cpu mean", "cpu peak", "MiB mean", "MiB peak", "requests", "limits"
    );
    let (mut cpu_total, mut memory_total) = (0.0, 0.0);
    for (pod, s) in &series {
        let (requests, limits) = resources.get(pod).cloned().unwrap_or_default();
        println!(
            "  {pod:<34} {:>7.0}m {:>7.0}m {:>9.0} {:>9.0}  {requests:<14} {limits:<14}",
            mean(&s.cpu),
            peak(&s.cpu),
            mean(&s.memory),
            peak(&s.memory)
        );
        cpu_total += mean(&s.cpu);
        memory_total += peak(&s.memory);
        if curve {
            let step = (s.memory.len() / 10).max(1);
            let points: Vec<String> = s
                .memory
                .iter()
                .step_by(step)
                .map(|m| format!("{m:.0}"))
                .collect();
            println!("    working set MiB over the run: {}", points.join(" "));
        }
    }
    println!(
        "  lab: CPU {cpu_total:.0}m on average, working set {memory_total:.0} MiB at the pods' peaks"
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let minutes: u64 = std::env::var("FOOTPRINT_LOAD_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(5);
    let mut lab = NodeLab::install("footprint").await?;
    let mut manifest: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(example("baseline"))?)?;
    if let Ok(on) = std::env::var("FOOTPRINT_SPAN_METRICS") {
        let on: bool = on
            .parse()
            .with_context(|| format!("FOOTPRINT_SPAN_METRICS={on}: true or false"))?;
        manifest["spec"]["spanMetrics"] = json!({"enabled": on});
    }
    lab.apply(&manifest).await?;
    lab.wait_ready(Duration::from_secs(300)).await?;
    measure(&lab, "baseline, idle", IDLE, false).await?;

    manifest["spec"]["loadGenerator"] = json!({"enabled": true});
    lab.apply(&manifest).await?;
    let rate = lab.lab()?["spec"]["loadGenerator"]["ordersPerSecond"].clone();
    lab.wait_ready(Duration::from_secs(120)).await?;
    let soak = minutes >= 30;
    measure(
        &lab,
        &format!("baseline under its load generator ({rate} orders/s)"),
        Duration::from_secs(minutes * 60),
        soak,
    )
    .await?;
    let restarts = lab.kubectl(&["get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].restartCount}{\"\\n\"}{end}"])?;
    println!("\nrestarts:\n{restarts}");
    let row = lab.row()?;
    println!(
        "kubectl get tlab: READY {} LAG {} MESSAGE {}",
        row["READY"], row["LAG"], row["MESSAGE"]
    );

    // Every order the api stored, analysed once the load stops and the lag drains.
    manifest["spec"]["loadGenerator"] = json!({"enabled": false});
    lab.apply(&manifest).await?;
    lab.wait_row("drained", Duration::from_secs(300), |row| row["LAG"] == "0")
        .await?;
    let counts = lab.kubectl(&[
        "exec",
        "deploy/lab-redis",
        "--",
        "sh",
        "-c",
        "redis-cli --scan --pattern 'order:*' | wc -l; redis-cli GET orders:analyzed",
    ])?;
    let counts: Vec<&str> = counts.split_whitespace().collect();
    println!(
        "orders stored by the api {}, analysed {}",
        counts.first().unwrap_or(&"?"),
        counts.get(1).unwrap_or(&"?")
    );
    Ok(())
}
