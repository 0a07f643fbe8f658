//! A lab as a student's cluster runs it, on a real node ([`RealNode`]): the images `make images`
//! built imported into the node's containerd, the operator installed by `make install` (Helm, the
//! chart's ServiceAccount and RBAC, the operator image as a pod), labs applied server-side, and
//! every outcome read the way the workshop reads it: `kubectl`, the api's and Jaeger's NodePorts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::jaeger::JaegerQuery;
use crate::node::RealNode;
use crate::runner::{self, table_row};
use crate::{assets, poll, process};

/// How often a wait reads `kubectl get tlab` again.
const POLL: Duration = Duration::from_secs(1);

/// The repository root: the Makefile, the chart, `examples/`.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An example lab of `examples/`.
pub fn example(name: &str) -> PathBuf {
    repository().join("examples").join(format!("{name}.yaml"))
}

/// The archive of every image a lab runs, as `make bundle` writes it, made by
/// `tests/env/images.sh` at `$TRACING_LAB_IMAGES`, else at its place in the cache.
pub fn images_bundle() -> Result<PathBuf> {
    let bundle = match std::env::var_os("TRACING_LAB_IMAGES").filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => assets::cache_dir()
            .context("no cache folder ($HOME unset)")?
            .with_file_name("images")
            .join("lab.tar"),
    };
    ensure!(
        bundle.is_file(),
        "{} missing: run `eval \"$(bash tests/env/images.sh)\"` first (it builds the lab's images with Docker)",
        bundle.display()
    );
    Ok(bundle)
}

/// A real node with the lab's images and the operator installed, and the lab of one namespace.
pub struct NodeLab {
    pub node: RealNode,
    pub namespace: String,
    /// The lab's name, once one is applied.
    pub name: String,
}

impl NodeLab {
    /// Starts a node, imports the lab's images and installs the operator with `make install`;
    /// labs go into `namespace`.
    pub async fn install(namespace: &str) -> Result<Self> {
        let node = RealNode::start().await?;
        let started = Instant::now();
        // The offline bundle, as `make lab BUNDLE=...` loads it: nothing is pulled (nothing can be).
        node.import_images(&images_bundle()?).await?;
        eprintln!(
            "node: lab images imported in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let lab = Self {
            node,
            namespace: namespace.to_owned(),
            name: String::new(),
        };
        let started = Instant::now();
        lab.make(&["install"], &[])?;
        eprintln!(
            "make install: operator ready in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(lab)
    }

    /// `make apply` of `manifest` into the namespace, as `make lab` ends: applied server-side,
    /// then `scripts/wait-for-lab.sh` until Ready. What it printed.
    pub fn make_apply(&mut self, manifest: &Path) -> Result<String> {
        let path = manifest.to_str().context("a UTF-8 manifest path")?;
        let out = self.make(
            &["apply"],
            &[("LAB", path), ("LAB_NAMESPACE", &self.namespace)],
        )?;
        self.name = manifest_name(&serde_saphyr::from_str(&std::fs::read_to_string(
            manifest,
        )?)?)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl apply --server-side` of a TracingLab (as JSON) into the namespace, created if new.
    pub async fn apply(&mut self, manifest: &Value) -> Result<()> {
        if self
            .kubectl(&["get", "namespace", &self.namespace])
            .is_err()
        {
            self.node.create_namespace(&self.namespace).await?;
        }
        let file = tempfile::Builder::new().suffix(".json").tempfile()?;
        std::fs::write(file.path(), serde_json::to_vec(manifest)?)?;
        let path = file.path().to_str().context("a UTF-8 temporary path")?;
        self.kubectl(&["apply", "--server-side", "-f", path])?;
        self.name = manifest_name(manifest)?;
        Ok(())
    }

    /// `make TARGETS VARS…` in the repository against this node (kubectl and helm of the test
    /// set-up first on PATH); fails with its output unless it succeeds.
    pub fn make(&self, targets: &[&str], vars: &[(&str, &str)]) -> Result<Output> {
        let mut command = process::make()?;
        command
            .args(targets)
            .args(vars.iter().map(|(k, v)| format!("{k}={v}")));
        let out = self.tool(command)?.output()?;
        ensure!(
            out.status.success(),
            "make {}: {}\n{}{}",
            targets.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out)
    }

    /// `tracing-lab-operator logs TRACE_ID` for the lab's namespace, as `make trace-logs` runs it
    /// from the operator image, with the admin's kubeconfig.
    pub fn trace_logs(&self, trace_id: &str) -> Result<Output> {
        let mut command = Command::new(process::project_binary("tracing-lab-operator")?);
        command.args(["logs", "--namespace", &self.namespace, trace_id]);
        Ok(self.tool(command)?.output()?)
    }

    /// `tracing-lab-operator check EXERCISE` for the lab's namespace, as `make check` runs it from
    /// the operator image (Jaeger through the API server's service proxy): done or not yet, and
    /// what it said.
    pub fn check(&self, exercise: &str) -> Result<(bool, String)> {
        let mut command = Command::new(process::project_binary("tracing-lab-operator")?);
        command.args(["check", exercise, "--namespace", &self.namespace]);
        crate::lab::verdict(exercise, &self.tool(command)?.output()?)
    }

    /// `kubectl ARGS` in the lab's namespace, as the admin; its standard output.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        runner::kubectl(self.node.kubeconfig(), &self.namespace, args)
    }

    /// `kubectl get tlab`: the lab's row, column name → value, as a student reads it.
    pub fn row(&self) -> Result<BTreeMap<String, String>> {
        table_row(&self.kubectl(&["get", "tlab", &self.name])?)
    }

    /// The lab as `kubectl get tlab -o json` shows it.
    pub fn lab(&self) -> Result<Value> {
        Ok(serde_json::from_str(
            &self.kubectl(&["get", "tlab", &self.name, "-o", "json"])?,
        )?)
    }

    /// Waits until `done` holds for `kubectl get tlab`'s row; that row and how long it took. On
    /// timeout the error holds the last row and the namespace's pods.
    pub async fn wait_row(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&BTreeMap<String, String>) -> bool,
    ) -> Result<(BTreeMap<String, String>, Duration)> {
        let started = Instant::now();
        let row = poll::within(timeout, POLL, async || {
            let row = self.row()?;
            if !done(&row) {
                bail!("{row:?}");
            }
            Ok(row)
        })
        .await
        .with_context(|| {
            format!(
                "kubectl get tlab: not {what} within {timeout:?}\n{}",
                self.kubectl(&["get", "pods", "-o", "wide"])
                    .unwrap_or_default()
            )
        })?;
        Ok((row, started.elapsed()))
    }

    /// Waits until `kubectl get tlab` says READY True; how long that took.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Duration> {
        let (_, took) = self
            .wait_row("READY", timeout, |row| {
                row.get("READY").map(String::as_str) == Some("True")
            })
            .await?;
        Ok(took)
    }

    /// `http://NODE:PORT` of the lab's node port `which` (`api` or `jaegerUi`), as the host reaches it.
    pub fn node_port_url(&self, which: &str) -> Result<String> {
        let lab = self.lab()?;
        let port = lab["spec"]["access"]["nodePorts"][which]
            .as_i64()
            .with_context(|| format!("lab {} has no node port {which}", self.name))?;
        Ok(format!("http://{}:{port}", self.node.node_ip()))
    }

    /// The api through its node port.
    pub fn api_url(&self) -> Result<String> {
        self.node_port_url("api")
    }

    /// Jaeger's query API through the lab's Jaeger node port.
    pub fn jaeger(&self) -> Result<JaegerQuery> {
        JaegerQuery::new(&self.node_port_url("jaegerUi")?)
    }

    /// `POST /order` through the api's node port, as the workshop's curl does it; the order id.
    pub async fn post_order(&self, item: &str, quantity: u32) -> Result<String> {
        let response = reqwest::Client::new()
            .post(format!("{}/order", self.api_url()?))
            .json(&json!({"item": item, "quantity": quantity}))
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.as_u16() == 202, "POST /order: {status}: {body}");
        Ok(body["order_id"]
            .as_str()
            .with_context(|| format!("no order_id in {body}"))?
            .to_owned())
    }

    /// The admin's kubeconfig, and the test set-up's kubectl and helm first on PATH.
    fn tool(&self, mut command: Command) -> Result<Command> {
        let kubectl = assets::find("kubectl")?;
        let bin = kubectl.parent().context("kubectl in a folder")?;
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(
            std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&path)),
        )?;
        command
            .env("KUBECONFIG", self.node.kubeconfig())
            .env("PATH", path);
        Ok(command)
    }
}

fn manifest_name(manifest: &Value) -> Result<String> {
    Ok(manifest["metadata"]["name"]
        .as_str()
        .context("the manifest has no metadata.name")?
        .to_owned())
}
