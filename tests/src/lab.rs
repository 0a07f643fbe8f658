//! A whole lab as the operator renders it, run here: Apache Kafka, Redis, Jaeger, the Collector
//! and the four services, each started from its rendered container (environment, arguments,
//! ConfigMap files, probes) with only the in-cluster addresses mapped to loopback ports.

use anyhow::{Context, Result, anyhow};
use std::collections::BTreeMap;
use tempfile::TempDir;
use tracing_lab_config::Role;
use tracing_lab_operator::TracingLab;
use tracing_lab_operator::render::{self, Children, LabRef, services};
use tracing_lab_operator::validate::validated;

use crate::kubelet::{self, Loopback};
use crate::process::{ChildProcess, project_binary};
use crate::{KafkaBroker, RedisServer, TraceBackend};

/// A lab as the API server holds it: named, in `namespace`, with a uid so its children can name
/// it as their owner.
pub fn stored(name: &str, namespace: &str, spec: serde_json::Value) -> Result<TracingLab> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "tracinglab.dev/v1alpha1", "kind": "TracingLab",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("{namespace}-{name}")},
        "spec": spec,
    }))?)
}

/// What `tracing-lab-operator check EXERCISE` said: whether done (exit status 0; 1 is not yet),
/// and what it printed. Any other end is an error.
pub fn verdict(exercise: &str, out: &std::process::Output) -> Result<(bool, String)> {
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("check {exercise}: {said}");
    match out.status.code() {
        Some(0) => Ok((true, said)),
        Some(1) if said.contains(": not yet: ") => Ok((false, said)),
        _ => Err(anyhow!("check {exercise} failed ({}): {said}", out.status)),
    }
}

/// Everything the operator renders for `lab`, and the loopback ports of its addresses.
pub fn rendered(lab: &TracingLab) -> Result<(Children, Loopback)> {
    let lab_ref = LabRef::new(lab).context("the lab needs a name, namespace and uid")?;
    let valid = validated(&lab.spec).map_err(|problems| anyhow!("an invalid lab: {problems:?}"))?;
    let children = render::render(&lab_ref, &valid);
    let loopback = Loopback::new(&children, &lab_ref.namespace)?;
    Ok((children, loopback))
}

/// One rendered lab's programs, stopped on drop (services first).
pub struct RenderedLab {
    pub services: BTreeMap<Role, ChildProcess>,
    pub traces: TraceBackend,
    pub redis: RedisServer,
    pub broker: KafkaBroker,
    pub children: Children,
    pub loopback: Loopback,
    _root: TempDir,
}

impl RenderedLab {
    /// Renders `lab` and starts everything in it; waits until each program's readiness probe passes.
    pub async fn start(lab: &TracingLab) -> Result<Self> {
        let (children, loopback) = rendered(lab)?;
        let broker = KafkaBroker::start_rendered(&children, &loopback).await?;
        let redis = RedisServer::start_rendered(&children, &loopback).await?;
        let traces = TraceBackend::start_rendered(&children, &loopback).await?;
        let root = tempfile::Builder::new().prefix("services-").tempdir()?;
        let mut services = BTreeMap::new();
        let binary = project_binary("tracing-lab-service")?;
        for role in Role::ALL {
            let (name, folder) = (role.name(), root.path().join(role.name()));
            let process = kubelet::run(&children, &loopback, name, name, &binary, &folder).await?;
            services.insert(role, process);
        }
        Ok(Self {
            services,
            traces,
            redis,
            broker,
            children,
            loopback,
            _root: root,
        })
    }

    /// The api's base URL, e.g. `http://127.0.0.1:PORT`.
    pub fn api_url(&self) -> Result<String> {
        Ok(format!(
            "http://{}",
            self.loopback.address(Role::Api.name(), services::PORT)?
        ))
    }
}
