//! Operator benchmark against a real kube-apiserver + etcd, with the release operator binary as a
//! separate process (build it first: `cargo build --release -p tracing-lab-operator`).
//!
//! Prints: the median time from creating one lab to all its children existing (target < 1 s), the
//! time for 100 labs in 100 namespaces to be fully applied (children + status; target < 30 s), the
//! operator's resident memory with those labs (target < 64 MiB), then with their 800 running pods
//! (which its pod watch keeps), and how it shuts down on SIGTERM.

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::fmt::Debug;
use std::time::{Duration, Instant};
use tracing_lab_operator::TracingLab;
use tracing_lab_operator::render::{self, Children, LabRef};
use tracing_lab_operator::validate::validated;
use tracing_lab_tests::apiserver::TestCluster;
use tracing_lab_tests::kubelet;
use tracing_lab_tests::lab::stored;
use tracing_lab_tests::pods;
use tracing_lab_tests::ports::free_port;
use tracing_lab_tests::process::{ChildProcess, project_command};
use tracing_lab_tests::procfs;

const SINGLE_RUNS: usize = 10;
const MANY_LABS: usize = 100;
const SELECTOR: &str = "app.kubernetes.io/managed-by=tracing-lab-operator";

fn lab(name: &str) -> TracingLab {
    serde_json::from_value(
        json!({"apiVersion": "tracinglab.dev/v1alpha1", "kind": "TracingLab",
        "metadata": {"name": name}, "spec": {}}),
    )
    .expect("a TracingLab")
}

/// What the operator renders for each lab here.
fn rendered() -> Children {
    let lab = stored("lab", "bench", json!({})).expect("a TracingLab");
    render::render(
        &LabRef::new(&lab).expect("a lab reference"),
        &validated(&lab.spec).expect("a valid lab"),
    )
}

async fn count<K>(client: &Client, namespace: Option<&str>) -> Result<usize>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    Ok(api
        .list_metadata(&ListParams::default().labels(SELECTOR))
        .await?
        .items
        .len())
}

async fn children(client: &Client, namespace: Option<&str>) -> Result<usize> {
    let (a, b, c, d) = futures::try_join!(
        count::<ConfigMap>(client, namespace),
        count::<Service>(client, namespace),
        count::<StatefulSet>(client, namespace),
        count::<Deployment>(client, namespace),
    )?;
    Ok(a + b + c + d)
}

/// Polls `progress` every `every` until it reports done; its text explains a timeout.
async fn wait(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut progress: impl AsyncFnMut() -> Result<(bool, String)>,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let (done, state) = progress().await?;
        if done {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("{what} not reached within {timeout:?}: {state}");
        }
        tokio::time::sleep(every).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let cluster = TestCluster::start().await?;
    cluster.install_lab_crd().await?;
    let client = cluster.client();

    let port = free_port();
    let mut command = project_command("tracing-lab-operator")?;
    command
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("RUST_LOG", "warn")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .args(["run", "--listen-addr", &format!("127.0.0.1:{port}")]);
    let mut operator = ChildProcess::spawn("tracing-lab-operator", command)?;
    operator
        .wait_http_ok(
            &format!("http://127.0.0.1:{port}/readyz"),
            Duration::from_secs(30),
        )
        .await?;
    let pid = operator.pid().context("operator pid")?;
    let rendered = rendered();
    let children_per_lab = rendered.config_maps.len()
        + rendered.services.len()
        + rendered.stateful_sets.len()
        + rendered.deployments.len();
    // One pod per workload, named after it (the operator finds pods by their labels).
    let workloads: Vec<(String, String)> = rendered
        .workloads()
        .map(|(meta, template)| {
            let component = kubelet::component(template).expect("a component label");
            (
                format!("{}-0", meta.name.as_deref().unwrap_or_default()),
                component.to_owned(),
            )
        })
        .collect();
    println!(
        "operator: pid {pid}, RSS idle {:.1} MiB",
        procfs::status_kib(pid, "VmRSS:")? as f64 / 1024.0
    );

    // 1. One lab at a time: create -> every child exists.
    let mut samples = Vec::new();
    for i in 0..SINGLE_RUNS {
        let ns = format!("single-{i}");
        cluster.create_namespace(&ns).await?;
        let labs: Api<TracingLab> = Api::namespaced(client.clone(), &ns);
        let start = Instant::now();
        labs.create(&PostParams::default(), &lab("lab")).await?;
        wait(
            "children of one lab",
            Duration::from_secs(30),
            Duration::from_millis(5),
            async || {
                let n = children(&client, Some(&ns)).await?;
                Ok((n == children_per_lab, format!("{n} children")))
            },
        )
        .await?;
        samples.push(start.elapsed());
    }
    samples.sort();
    let median = samples[SINGLE_RUNS / 2];
    println!(
        "one lab, create -> all {children_per_lab} children exist: median {:.0} ms (min {:.0}, max {:.0}, n={SINGLE_RUNS}; target < 1000 ms)",
        median.as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3,
        samples[SINGLE_RUNS - 1].as_secs_f64() * 1e3
    );

    // 2. Many labs at once, each in its own namespace (namespaces made beforehand).
    let names: Vec<String> = (0..MANY_LABS).map(|i| format!("many-{i}")).collect();
    for ns in &names {
        cluster.create_namespace(ns).await?;
    }
    let before = children(&client, None).await?;
    let start = Instant::now();
    stream::iter(&names)
        .map(|ns| {
            let client = client.clone();
            async move {
                let labs: Api<TracingLab> = Api::namespaced(client, ns);
                labs.create(&PostParams::default(), &lab("lab"))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let created = start.elapsed();
    let all_labs: Api<TracingLab> = Api::all(client.clone());
    // Polled gently: listing thousands of objects competes with the operator for the API server.
    let applied = wait(
        "100 labs applied",
        Duration::from_secs(120),
        Duration::from_millis(250),
        async || {
            let n = children(&client, None).await? - before;
            let labs = all_labs.list(&ListParams::default()).await?.items;
            let with_status = labs
                .iter()
                .filter(|l| l.status.as_ref().and_then(|s| s.observed_generation) == Some(1))
                .count();
            let done = n == MANY_LABS * children_per_lab && with_status == labs.len();
            Ok((
                done,
                format!(
                    "{n} children, {with_status}/{} labs with status",
                    labs.len()
                ),
            ))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\noperator log:\n{}", operator.log_tail(30)))?;
    println!(
        "{MANY_LABS} labs in {MANY_LABS} namespaces: created in {:.1} s, fully applied (children + status) after {:.1} s (target < 30 s)",
        created.as_secs_f64(),
        (applied + created).as_secs_f64()
    );

    // 3. Memory with every lab in the caches, after the reconciles settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "operator RSS with {} labs: {:.1} MiB (peak {:.1} MiB; target < 64 MiB)",
        MANY_LABS + SINGLE_RUNS,
        procfs::status_kib(pid, "VmRSS:")? as f64 / 1024.0,
        procfs::status_kib(pid, "VmHWM:")? as f64 / 1024.0
    );
    println!(
        "operator open file descriptors (API connections, watches): {}",
        std::fs::read_dir(format!("/proc/{pid}/fd"))?.count()
    );
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await?
        .text()
        .await?;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("tracinglab_reconcile") && !l.contains("bucket"))
    {
        println!("  {line}");
    }

    // 4. The same labs with their pods (one per workload, as a kubelet reports a running, ready
    // pod): each pod change reaches the operator through its pod watch.
    let pods_before = procfs::status_kib(pid, "VmRSS:")?;
    let started = Instant::now();
    stream::iter(
        names
            .iter()
            .flat_map(|ns| workloads.iter().map(move |w| (ns, w))),
    )
    .map(|(ns, (name, component))| {
        let client = client.clone();
        async move {
            pods::create(
                &client,
                ns,
                "lab",
                component,
                name,
                pods::ready(component, 0),
            )
            .await
            .map(|_| ())
        }
    })
    .buffer_unordered(16)
    .try_collect::<Vec<()>>()
    .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "{} pods of those labs created and running in {:.1} s; operator RSS {:.1} MiB (before the pods {:.1} MiB, peak {:.1} MiB; target < 64 MiB)",
        MANY_LABS * workloads.len(),
        started.elapsed().as_secs_f64(),
        procfs::status_kib(pid, "VmRSS:")? as f64 / 1024.0,
        pods_before as f64 / 1024.0,
        procfs::status_kib(pid, "VmHWM:")? as f64 / 1024.0
    );

    let stop = Instant::now();
    let status = operator.terminate(Duration::from_secs(10)).await?;
    println!(
        "SIGTERM -> exit ({status}) in {:.0} ms",
        stop.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
