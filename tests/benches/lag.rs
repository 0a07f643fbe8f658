//! Lag measurement benchmark against a real kube-apiserver + etcd and Apache Kafka.
//!
//! Prints: the cost of one lag measurement of one lab, status write included (target < 50 ms),
//! the Kafka connections kept for it (target: at most one per lab), and the time of one full sweep
//! over 100 labs in 100 namespaces (target < 5 s), first (connecting, writing every status) and
//! steady (kept connections, nothing changed).

use anyhow::{Context as _, Result};
use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing_lab_operator::TracingLab;
use tracing_lab_operator::lag::{Config, Monitor};
use tracing_lab_tests::{KafkaBroker, TestCluster};

const SINGLE_RUNS: usize = 50;
const MANY_LABS: usize = 100;

fn lab(name: &str) -> TracingLab {
    serde_json::from_value(
        json!({"apiVersion": "tracinglab.dev/v1alpha1", "kind": "TracingLab",
        "metadata": {"name": name}, "spec": {}}),
    )
    .expect("a TracingLab")
}

async fn create_lab(client: &Client, namespace: &str) -> Result<Arc<TracingLab>> {
    let api: Api<TracingLab> = Api::namespaced(client.clone(), namespace);
    Ok(Arc::new(
        api.create(&PostParams::default(), &lab("shop")).await?,
    ))
}

/// Fresh copies of the labs, as the operator's watch would hold them.
async fn current(client: &Client) -> Result<Vec<Arc<TracingLab>>> {
    let api: Api<TracingLab> = Api::all(client.clone());
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(Arc::new)
        .collect())
}

/// Established TCP connections from this process's network namespace to `port`.
fn connections_to(port: u16) -> Result<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    let remote = format!(":{port:04X}");
    Ok(table
        .lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3 && cols[2].ends_with(&remote) && cols[3] == "01"
        })
        .count())
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let broker = KafkaBroker::start().await?;
    for topic in ["orders", "processed-orders", "notified-orders"] {
        broker.create_topic(topic, 6).await?;
    }
    broker.produce("orders", 120).await?;
    broker
        .commit_offsets("processing", "orders", &[(0, 1), (1, 2)])
        .await?;
    let port: u16 = broker
        .bootstrap()
        .rsplit(':')
        .next()
        .context("port")?
        .parse()?;

    let cluster = TestCluster::start().await?;
    cluster.install_lab_crd().await?;
    let client = cluster.client();
    let config = Config {
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(3),
        bootstrap: Some(broker.bootstrap()),
    };

    // One lab, measured again and again.
    cluster.create_namespace("single").await?;
    create_lab(&client, "single").await?;
    let mut monitor = Monitor::new(client.clone(), config.clone(), Arc::default());
    let mut samples = Vec::with_capacity(SINGLE_RUNS);
    for _ in 0..SINGLE_RUNS {
        let labs = current(&client).await?;
        let started = Instant::now();
        monitor.sweep(labs).await;
        samples.push(started.elapsed());
    }
    let (first, mut rest) = (samples[0], samples[1..].to_vec());
    rest.sort();
    let lab = &current(&client).await?[0];
    let kafka = lab
        .status
        .as_ref()
        .and_then(|s| s.kafka.as_ref())
        .context("no lag in status")?;
    println!(
        "lag measurement, one lab ({SINGLE_RUNS} sweeps, total lag {}):",
        kafka.total_lag
    );
    println!("  first (connect + status write): {:.1} ms", millis(first));
    println!(
        "  then median {:.1} ms, p95 {:.1} ms, max {:.1} ms   (target < 50 ms)",
        millis(rest[rest.len() / 2]),
        millis(rest[rest.len() * 95 / 100]),
        millis(rest[rest.len() - 1])
    );
    println!(
        "  Kafka connections kept: {} by the monitor, {} established to the broker   (target <= 1 per lab)",
        monitor.connections(),
        connections_to(port)?
    );

    // 100 labs in 100 namespaces, swept together.
    stream::iter(0..MANY_LABS)
        .map(|i| {
            let (cluster, client) = (&cluster, &client);
            async move {
                let ns = format!("class-{i:03}");
                cluster.create_namespace(&ns).await?;
                create_lab(client, &ns).await.map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let labs = current(&client).await?;
    let mut monitor = Monitor::new(client.clone(), config, Arc::default());
    let started = Instant::now();
    monitor.sweep(labs).await;
    let first = started.elapsed();
    let labs = current(&client).await?;
    let started = Instant::now();
    monitor.sweep(labs.clone()).await;
    let steady = started.elapsed();
    let measured = labs
        .iter()
        .filter(|l| l.status.as_ref().and_then(|s| s.kafka.as_ref()).is_some())
        .count();
    println!(
        "lag sweep, {} labs in {} namespaces ({measured} with lag in status):",
        labs.len(),
        labs.len()
    );
    println!(
        "  first sweep (connect + write every status): {:.0} ms   (target < 5 s)",
        millis(first)
    );
    println!(
        "  steady sweep (kept connections): {:.0} ms   (target < 5 s)",
        millis(steady)
    );
    println!(
        "  Kafka connections kept: {} by the monitor, {} established to the broker",
        monitor.connections(),
        connections_to(port)?
    );
    Ok(())
}
