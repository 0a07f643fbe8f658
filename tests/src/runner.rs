//! One lab run the way a student's cluster runs it: a real kube-apiserver, the operator as its own
//! binary, and a kubelet stand-in that runs every container the operator applied as a local
//! process on the real programs (Apache Kafka, Redis, Jaeger, the Collector, the four services
//! and the load generator).
//!
//! The kubelet stand-in reads the lab's objects back from the API server, so it runs exactly what
//! was applied. It follows each service Deployment: `kubectl scale` starts and stops pods (SIGTERM,
//! within the pod's grace period), a changed pod template replaces them, and readiness, as the
//! probes define it, goes back into the Deployment's status, where the operator reads it. Kafka,
//! Redis, Jaeger and the Collector run once, as the lab first rendered them; a change to a
//! ConfigMap Jaeger or the Collector mounts reaches their files, as the kubelet's update does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tracing_lab_config::Role;
use tracing_lab_operator::TracingLab;
use tracing_lab_operator::render::common::INSTANCE;
use tracing_lab_operator::render::{Children, collector, jaeger, kafka, services};

use crate::kubelet::{self, Loopback, Prepared, Readiness};
use crate::process::{ChildProcess, project_binary};
use crate::{KafkaBroker, RedisServer, TestCluster, TraceBackend, assets, poll, ports};

/// How often the kubelet stand-in looks at the Deployments and probes the pods.
const SYNC_PERIOD: Duration = Duration::from_millis(500);
/// The operator's lag period: short, so that a test sees the columns move.
const LAG_INTERVAL: &str = "2s";
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
const OBJECTS_TIMEOUT: Duration = Duration::from_secs(60);

/// A lab on a real API server, its operator, and its programs; all stopped on drop.
pub struct LabRunner {
    kubelet: JoinHandle<()>,
    pub traces: TraceBackend,
    pub redis: RedisServer,
    pub broker: KafkaBroker,
    operator: ChildProcess,
    pub cluster: TestCluster,
    pub namespace: String,
    pub name: String,
    loopback: Loopback,
}

impl Drop for LabRunner {
    fn drop(&mut self) {
        self.kubelet.abort();
    }
}

/// A lab applied to a fresh API server that the operator reconciles, before anything runs.
pub struct AppliedLab {
    operator: ChildProcess,
    pub cluster: TestCluster,
    pub namespace: String,
    pub name: String,
    kafka_port: u16,
}

impl AppliedLab {
    /// Starts an API server with the CRD, the operator, and applies `manifest` (a TracingLab
    /// manifest, e.g. one of `examples/`) server-side into `namespace`, as the workshop does.
    pub async fn apply(namespace: &str, manifest: &Path) -> Result<Self> {
        let cluster = TestCluster::start().await?;
        cluster.install_lab_crd().await?;
        cluster.create_namespace(namespace).await?;
        // The operator measures lag on the lab's Kafka, which will run here on a port chosen now.
        let kafka_port = ports::free_port();
        let operator = start_operator(&cluster, kafka_port)?;
        let name = kubectl_apply(&cluster, namespace, manifest)?;
        Ok(Self {
            operator,
            cluster,
            namespace: namespace.to_owned(),
            name,
            kafka_port,
        })
    }

    /// Runs what the operator applied. Returns once every program has started; the lab's own
    /// status says when it is ready.
    pub async fn run(self) -> Result<LabRunner> {
        let client = self.cluster.client();
        let lab: TracingLab = Api::namespaced(client.clone(), &self.namespace)
            .get(&self.name)
            .await?;
        let children = applied_children(&client, &self.namespace, &self.name, &lab).await?;
        let mut loopback = Loopback::new(&children, &self.namespace)?;
        loopback.pin(kafka::KAFKA.suffix, kafka::CLIENT_PORT, self.kafka_port)?;
        let broker = KafkaBroker::start_rendered(&children, &loopback).await?;
        let redis = RedisServer::start_rendered(&children, &loopback).await?;
        let traces = TraceBackend::start_rendered(&children, &loopback).await?;
        let kubelet = Kubelet {
            client,
            namespace: self.namespace.clone(),
            lab: self.name.clone(),
            loopback: loopback.clone(),
            binary: project_binary("tracing-lab-service")?,
            pods: BTreeMap::new(),
            stopping: BTreeMap::new(),
            config_folders: [jaeger::JAEGER.suffix, collector::COLLECTOR.suffix]
                .into_iter()
                .map(|c| (c.to_owned(), traces.folder(c)))
                .collect(),
        };
        Ok(LabRunner {
            kubelet: tokio::spawn(kubelet.run()),
            traces,
            redis,
            broker,
            operator: self.operator,
            cluster: self.cluster,
            namespace: self.namespace,
            name: self.name,
            loopback,
        })
    }
}

impl LabRunner {
    /// [`AppliedLab::apply`], then [`AppliedLab::run`].
    pub async fn start(namespace: &str, manifest: &Path) -> Result<Self> {
        AppliedLab::apply(namespace, manifest).await?.run().await
    }

    /// `kubectl ARGS` in the lab's namespace, as the admin; its standard output.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        kubectl(self.cluster.kubeconfig(), &self.namespace, args)
    }

    /// `tracing-lab-operator check EXERCISE` for the lab, as a student runs it with a
    /// port-forward to Jaeger (`--jaeger`; the stand-in's Services have no endpoints for the API
    /// server's proxy to reach): done or not yet, and what it said.
    pub fn check(&self, exercise: &str) -> Result<(bool, String)> {
        let mut command = Command::new(project_binary("tracing-lab-operator")?);
        command
            .args(["check", exercise, "--namespace", &self.namespace])
            .args(["--jaeger", self.traces.query().url()])
            .env("KUBECONFIG", self.cluster.kubeconfig());
        crate::lab::verdict(exercise, &command.output()?)
    }

    /// `kubectl apply --server-side` of `manifest` (a TracingLab as JSON, e.g. an example the
    /// exercise edits).
    pub fn apply(&self, manifest: &Value) -> Result<()> {
        let file = tempfile::Builder::new().suffix(".json").tempfile()?;
        std::fs::write(file.path(), serde_json::to_vec(manifest)?)?;
        kubectl_apply(&self.cluster, &self.namespace, file.path())?;
        Ok(())
    }

    /// `kubectl get tlab`: the lab's row, column name → value, as a student reads it.
    pub fn row(&self) -> Result<BTreeMap<String, String>> {
        let text = self.kubectl(&["get", "tlab", &self.name])?;
        table_row(&text)
    }

    /// Waits until `kubectl get tlab` says READY True; how long that took. On timeout the error
    /// holds the last row and the operator's log.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Duration> {
        let started = std::time::Instant::now();
        poll::within(timeout, SYNC_PERIOD, async || {
            let row = self.row()?;
            ensure!(
                row.get("READY").map(String::as_str) == Some("True"),
                "{row:?}"
            );
            Ok(())
        })
        .await
        .with_context(|| {
            format!(
                "kubectl get tlab: not READY within {timeout:?}\noperator log:\n{}",
                self.operator_log()
            )
        })?;
        Ok(started.elapsed())
    }

    /// The lab as `kubectl get tlab -o json` shows it.
    pub fn lab(&self) -> Result<Value> {
        Ok(serde_json::from_str(
            &self.kubectl(&["get", "tlab", &self.name, "-o", "json"])?,
        )?)
    }

    /// The api's address here, where a student's port-forward would lead.
    pub fn api_url(&self) -> Result<String> {
        self.service_url(Role::Api)
    }

    /// `127.0.0.1:PORT` where `component`'s container port `port` listens here.
    pub fn address(&self, component: &str, port: i32) -> Result<String> {
        self.loopback.address(component, port)
    }

    /// The address of the first pod of `role` (`/metrics`, `/ready`; the api's `POST /order`).
    pub fn service_url(&self, role: Role) -> Result<String> {
        Ok(format!(
            "http://{}",
            self.address(role.name(), services::PORT)?
        ))
    }

    /// `tracing_lab_<name>` summed over the series of `role`'s first pod whose labels contain
    /// `labels` (e.g. `outcome="retried"`), from its `/metrics`.
    pub async fn metric(&self, role: Role, name: &str, labels: &str) -> Result<f64> {
        let url = format!("{}/metrics", self.service_url(role)?);
        let text = reqwest::get(&url).await?.error_for_status()?.text().await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(&format!("tracing_lab_{name}")) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// The operator's log so far (for a failing test's message).
    pub fn operator_log(&self) -> String {
        self.operator.log_tail(40)
    }
}

/// The operator binary, watching every namespace, dialling the lab's Kafka at `kafka_port`.
fn start_operator(cluster: &TestCluster, kafka_port: u16) -> Result<ChildProcess> {
    let mut command = Command::new(project_binary("tracing-lab-operator")?);
    command
        .args(["run", "--listen-addr"])
        .arg(format!("127.0.0.1:{}", ports::free_port()))
        .args(["--kafka-bootstrap", &format!("127.0.0.1:{kafka_port}")])
        .args(["--lag-interval", LAG_INTERVAL])
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("RUST_LOG", "info");
    ChildProcess::spawn("tracing-lab-operator", command)
}

/// `kubectl apply --server-side -f manifest`; the applied lab's name.
fn kubectl_apply(cluster: &TestCluster, namespace: &str, manifest: &Path) -> Result<String> {
    let path = manifest.to_str().context("a manifest path that is UTF-8")?;
    let applied = kubectl(
        cluster.kubeconfig(),
        namespace,
        &["apply", "--server-side", "-f", path, "-o", "name"],
    )?;
    let name = applied
        .trim()
        .strip_prefix("tracinglab.tracinglab.dev/")
        .with_context(|| format!("kubectl apply printed {applied:?}"))?;
    Ok(name.to_owned())
}

/// `kubectl --namespace NAMESPACE ARGS` with `kubeconfig`; its standard output, or an error
/// with what it printed on standard error.
pub fn kubectl(kubeconfig: &Path, namespace: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(assets::find("kubectl")?)
        .args(["--namespace", namespace])
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()?;
    ensure!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The one row of a `kubectl get` table, by column name. Columns are found by where their
/// headers start, so an empty cell reads as an empty string.
pub fn table_row(text: &str) -> Result<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header = lines.next().context("kubectl printed nothing")?;
    let row = lines.next().context("kubectl printed no row")?;
    ensure!(lines.next().is_none(), "more than one row:\n{text}");
    let mut starts: Vec<(usize, &str)> = Vec::new();
    let mut at = 0;
    for word in header.split_whitespace() {
        let start = at + header[at..].find(word).expect("the word is in the header");
        starts.push((start, word));
        at = start + word.len();
    }
    let cell = |from: usize, to: Option<usize>| {
        let end = to.unwrap_or(row.len()).min(row.len());
        row.get(from.min(end)..end)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    Ok(starts
        .iter()
        .enumerate()
        .map(|(i, (start, name))| {
            let next = starts.get(i + 1).map(|(s, _)| *s);
            ((*name).to_owned(), cell(*start, next))
        })
        .collect())
}

/// The lab's objects as the operator applied them, once all that the spec renders exist.
async fn applied_children(
    client: &Client,
    namespace: &str,
    name: &str,
    lab: &TracingLab,
) -> Result<Children> {
    let (expected, _) = crate::lab::rendered(lab)?;
    let wanted = expected.workloads().count();
    let started = std::time::Instant::now();
    loop {
        let children = read_children(client, namespace, name).await?;
        let services_ready = children.services.len() >= expected.services.len()
            && children.config_maps.len() >= expected.config_maps.len();
        if services_ready && children.workloads().count() >= wanted {
            return Ok(children);
        }
        if started.elapsed() > OBJECTS_TIMEOUT {
            bail!(
                "the operator applied {} of {wanted} workloads within {OBJECTS_TIMEOUT:?}",
                children.workloads().count()
            );
        }
        tokio::time::sleep(SYNC_PERIOD).await;
    }
}

async fn read_children(client: &Client, namespace: &str, lab: &str) -> Result<Children> {
    let params = ListParams::default().labels(&format!("{INSTANCE}={lab}"));
    Ok(Children {
        config_maps: Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .list(&params)
            .await?
            .items,
        services: Api::<Service>::namespaced(client.clone(), namespace)
            .list(&params)
            .await?
            .items,
        stateful_sets: Api::<StatefulSet>::namespaced(client.clone(), namespace)
            .list(&params)
            .await?
            .items,
        deployments: Api::<Deployment>::namespaced(client.clone(), namespace)
            .list(&params)
            .await?
            .items,
    })
}

/// One running pod of a service Deployment.
struct Pod {
    /// The pod template it was started from (JSON), to notice a new one.
    template: String,
    process: ChildProcess,
    readiness: Option<Readiness>,
    ready: bool,
    grace: Duration,
    _root: TempDir,
}

struct Kubelet {
    client: Client,
    namespace: String,
    lab: String,
    loopback: Loopback,
    binary: PathBuf,
    /// Deployment name → its pods by index.
    pods: BTreeMap<String, BTreeMap<usize, Pod>>,
    /// (Deployment name, pod index) → the pod of an old template or beyond the replicas, stopping.
    stopping: BTreeMap<(String, usize), JoinHandle<()>>,
    /// Component → the folder of the infrastructure pod started before, whose mounted ConfigMaps
    /// follow their changes as the kubelet's do.
    config_folders: BTreeMap<String, PathBuf>,
}

impl Kubelet {
    async fn run(mut self) {
        loop {
            if let Err(err) = self.sync().await {
                eprintln!("kubelet stand-in: {err:#}");
            }
            tokio::time::sleep(SYNC_PERIOD).await;
        }
    }

    async fn sync(&mut self) -> Result<()> {
        let children = read_children(&self.client, &self.namespace, &self.lab).await?;
        let mut pods = std::mem::take(&mut self.pods);
        // A Deployment the operator pruned (or is deleting) takes its pods with it.
        let live: Vec<&Deployment> = children
            .deployments
            .iter()
            .filter(|d| d.metadata.deletion_timestamp.is_none())
            .collect();
        pods.retain(|name, running| {
            let keep = live.iter().any(|d| d.metadata.name.as_ref() == Some(name));
            if !keep {
                for (_, pod) in std::mem::take(running) {
                    tokio::spawn(pod.stop());
                }
            }
            keep
        });
        for deployment in live {
            let Some(component) = component_of(deployment) else {
                continue;
            };
            if is_infrastructure(&component) {
                if let Some(folder) = self.config_folders.get(&component) {
                    let replaced = kubelet::update_config_maps(
                        &children,
                        &self.loopback,
                        &component,
                        &component,
                        folder,
                    )?;
                    for file in replaced {
                        eprintln!("kubelet stand-in: {component}: {} updated", file.display());
                    }
                }
                self.report_infrastructure(deployment).await?;
                continue;
            }
            let name = deployment.metadata.name.clone().unwrap_or_default();
            let spec = deployment
                .spec
                .as_ref()
                .context("a Deployment without spec")?;
            let wanted = usize::try_from(spec.replicas.unwrap_or(1))?;
            let template = serde_json::to_string(&spec.template)?;
            let running = pods.entry(name.clone()).or_default();
            // Pods beyond the replicas, or of an old template, stop (the Recreate way).
            let leaving: Vec<usize> = running
                .iter()
                .filter(|(index, pod)| **index >= wanted || pod.template != template)
                .map(|(index, _)| *index)
                .collect();
            for index in leaving {
                if let Some(pod) = running.remove(&index) {
                    self.stopping
                        .insert((name.clone(), index), tokio::spawn(pod.stop()));
                }
            }
            for index in 0..wanted {
                // Its successor starts once the pod it replaces has stopped: pod 0 listens on the
                // same local port (on a node each pod has its own address).
                let key = (name.clone(), index);
                if self
                    .stopping
                    .get(&key)
                    .is_some_and(|stop| !stop.is_finished())
                {
                    continue;
                }
                if let std::collections::btree_map::Entry::Vacant(slot) = running.entry(index) {
                    slot.insert(self.start_pod(&children, &component, index, &template)?);
                }
            }
            for pod in running.values_mut() {
                pod.probe().await;
            }
            let ready = running.values().filter(|p| p.ready).count();
            self.report(deployment, running.len(), ready).await?;
        }
        self.pods = pods;
        // Pods that stopped for good (scaled away) hold no successor back.
        self.stopping.retain(|_, stop| !stop.is_finished());
        for set in &children.stateful_sets {
            self.report_infrastructure_set(set).await?;
        }
        Ok(())
    }

    fn start_pod(
        &self,
        children: &Children,
        component: &str,
        index: usize,
        template: &str,
    ) -> Result<Pod> {
        let root = tempfile::Builder::new()
            .prefix(&format!("{component}-"))
            .tempdir()?;
        let loopback = if index == 0 {
            self.loopback.clone()
        } else {
            self.loopback.another_pod(component)
        };
        let prepared = Prepared::of_replica(
            children,
            &loopback,
            component,
            component,
            root.path(),
            index,
        )?;
        let process = ChildProcess::spawn(
            &prepared.pod.name,
            prepared.command(&self.binary, &[], false)?,
        )?;
        Ok(Pod {
            template: template.to_owned(),
            process,
            readiness: prepared.readiness.clone(),
            ready: false,
            grace: prepared.grace.unwrap_or(DEFAULT_GRACE),
            _root: root,
        })
    }

    /// Writes what the pods are into the Deployment's status, as the Deployment controller does.
    async fn report(&self, deployment: &Deployment, pods: usize, ready: usize) -> Result<()> {
        let name = deployment.metadata.name.as_deref().unwrap_or_default();
        let status = json!({
            "observedGeneration": deployment.metadata.generation,
            "replicas": pods,
            "updatedReplicas": pods,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": pods - ready,
        });
        write_status(
            Api::<Deployment>::namespaced(self.client.clone(), &self.namespace),
            name,
            deployment.status.as_ref(),
            status,
        )
        .await
    }

    /// Kafka, Redis, Jaeger and the Collector run from the start, ready (the harness waited).
    async fn report_infrastructure(&self, deployment: &Deployment) -> Result<()> {
        self.report(deployment, 1, 1).await
    }

    async fn report_infrastructure_set(&self, set: &StatefulSet) -> Result<()> {
        let name = set.metadata.name.as_deref().unwrap_or_default();
        let status = json!({
            "observedGeneration": set.metadata.generation,
            "replicas": 1, "readyReplicas": 1, "currentReplicas": 1, "updatedReplicas": 1,
            "availableReplicas": 1,
        });
        write_status(
            Api::<StatefulSet>::namespaced(self.client.clone(), &self.namespace),
            name,
            set.status.as_ref(),
            status,
        )
        .await
    }
}

impl Pod {
    async fn probe(&mut self) {
        let alive = matches!(self.process.exit_status(), Ok(None));
        self.ready = alive
            && match &self.readiness {
                Some(check) => check.check().await.is_ok(),
                None => true,
            };
    }

    /// SIGTERM, then SIGKILL after the grace period, as the kubelet stops a pod.
    async fn stop(mut self) {
        if let Err(err) = self.process.terminate(self.grace).await {
            eprintln!("kubelet stand-in: {err:#}");
        }
    }
}

/// Merges `status` into the object's status, unless `current` already says so (every write would
/// wake the operator).
async fn write_status<K, S>(
    api: Api<K>,
    name: &str,
    current: Option<&S>,
    status: Value,
) -> Result<()>
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
    S: k8s_openapi::serde::Serialize,
{
    let current = current.map(serde_json::to_value).transpose()?;
    if current.as_ref().is_some_and(|c| same_counts(c, &status)) {
        return Ok(());
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await?;
    Ok(())
}

/// Whether every field of `wanted` has that value in `current`.
fn same_counts(current: &Value, wanted: &Value) -> bool {
    wanted
        .as_object()
        .is_some_and(|w| w.iter().all(|(k, v)| current.get(k) == Some(v)))
}

fn component_of(deployment: &Deployment) -> Option<String> {
    crate::kubelet::component(&deployment.spec.as_ref()?.template).map(str::to_owned)
}

/// Components the harness starts once, with their own programs, before the services.
fn is_infrastructure(component: &str) -> bool {
    Role::ALL.iter().all(|r| r.name() != component)
        && component != tracing_lab_config::contract::LOADGEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_row_reads_by_column_even_with_empty_cells() {
        let text = "NAME   READY   SERVICES   LAG   WORST        API   AGE\n\
                    lab    False   2/4              processing         5s\n";
        let row = table_row(text).unwrap();
        assert_eq!(row["NAME"], "lab");
        assert_eq!(row["SERVICES"], "2/4");
        assert_eq!(row["LAG"], "");
        assert_eq!(row["WORST"], "processing");
        assert_eq!(row["API"], "");
        assert_eq!(row["AGE"], "5s");
    }
}
