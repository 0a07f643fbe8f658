//! The operator in-process against a real API server: the project's CRD installed, one namespace,
//! labs created and patched as a student's `kubectl` would, their children read back. No pods run:
//! [`OperatorEnv::mark_available`] writes what the controllers would once they did.

use std::fmt::Debug;
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tracing_lab_operator::TracingLab;
use tracing_lab_operator::render::{self, LabRef};
use tracing_lab_operator::validate::validated;

use crate::apiserver::TestCluster;
use crate::assets;
use crate::poll::eventually;

/// The label every object the operator makes carries.
const MANAGED: &str = "app.kubernetes.io/managed-by=tracing-lab-operator";
/// How long the operator may take to reach what a change asks for.
const SETTLE: Duration = Duration::from_secs(30);

/// A real API server with the CRD installed, a namespace, and the operator running in-process.
pub struct OperatorEnv {
    pub cluster: TestCluster,
    namespace: String,
    operator: tokio::task::JoinHandle<()>,
}

impl Drop for OperatorEnv {
    fn drop(&mut self) {
        self.operator.abort();
    }
}

impl OperatorEnv {
    pub async fn start(namespace: &str, config: tracing_lab_operator::Config) -> Self {
        let cluster = TestCluster::start().await.expect("API server starts");
        cluster
            .install_lab_crd()
            .await
            .expect("the CRD installs and becomes Established");
        cluster
            .create_namespace(namespace)
            .await
            .expect("namespace");
        let operator = tokio::spawn(tracing_lab_operator::run(cluster.client(), config));
        Self {
            cluster,
            namespace: namespace.to_owned(),
            operator,
        }
    }

    pub fn client(&self) -> Client {
        self.cluster.client()
    }

    /// Whether the operator is still running (it returns only on a fatal error).
    pub fn operator_running(&self) -> bool {
        !self.operator.is_finished()
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client(), &self.namespace)
    }

    pub async fn create_lab(&self, name: &str, spec: Value) -> TracingLab {
        let lab: TracingLab = serde_json::from_value(json!({
            "apiVersion": "tracinglab.dev/v1alpha1", "kind": "TracingLab",
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("a TracingLab");
        self.api::<TracingLab>()
            .create(&PostParams::default(), &lab)
            .await
            .expect("lab created")
    }

    pub async fn patch_spec(&self, name: &str, spec: Value) {
        self.api::<TracingLab>()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .expect("lab patched");
    }

    pub async fn lab(&self, name: &str) -> TracingLab {
        self.api::<TracingLab>()
            .get(name)
            .await
            .expect("lab exists")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(assets::find("kubectl").expect("kubectl"))
            .arg("--kubeconfig")
            .arg(self.cluster.kubeconfig())
            .args(["--namespace", &self.namespace])
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    /// Names of the lab's objects of one kind.
    pub async fn names<K>(&self, lab: &str) -> Vec<String>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let lp =
            ListParams::default().labels(&format!("{MANAGED},app.kubernetes.io/instance={lab}"));
        let mut names: Vec<String> = self
            .api::<K>()
            .list(&lp)
            .await
            .expect("list")
            .items
            .iter()
            .map(|o| o.name_any())
            .collect();
        names.sort();
        names
    }

    /// Waits until the lab's children are, kind by kind, what the operator renders for its spec.
    pub async fn wait_children(&self, lab: &str) {
        let stored = self.lab(lab).await;
        let rendered = render::render(
            &LabRef::new(&stored).expect("a stored lab has a name, namespace and uid"),
            &validated(&stored.spec).expect("a valid lab"),
        );
        fn sorted<K: Resource>(objects: &[K]) -> Vec<String> {
            let mut names: Vec<String> = objects.iter().map(|o| o.name_any()).collect();
            names.sort();
            names
        }
        let expected = (
            sorted(&rendered.config_maps),
            sorted(&rendered.services),
            sorted(&rendered.stateful_sets),
            sorted(&rendered.deployments),
        );
        eventually(&format!("children of {lab}"), SETTLE, || async {
            let got = (
                self.names::<ConfigMap>(lab).await,
                self.names::<Service>(lab).await,
                self.names::<StatefulSet>(lab).await,
                self.names::<Deployment>(lab).await,
            );
            (got == expected)
                .then_some(())
                .ok_or_else(|| format!("{got:?}"))
        })
        .await;
    }

    pub async fn deployment(&self, name: &str) -> Deployment {
        self.api::<Deployment>()
            .get(name)
            .await
            .expect("deployment exists")
    }

    /// Marks every Deployment and StatefulSet of the lab rolled out and available, as the
    /// kube-controller-manager would once pods run.
    pub async fn mark_available(&self, lab: &str) {
        let pp = PatchParams::default();
        for d in self
            .api::<Deployment>()
            .list(&lab_selector(lab))
            .await
            .expect("list")
            .items
        {
            let n = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let status = json!({"status": {"observedGeneration": d.metadata.generation, "replicas": n,
                "readyReplicas": n, "availableReplicas": n, "updatedReplicas": n}});
            self.api::<Deployment>()
                .patch_status(&d.name_any(), &pp, &Patch::Merge(status))
                .await
                .expect("status");
        }
        for s in self
            .api::<StatefulSet>()
            .list(&lab_selector(lab))
            .await
            .expect("list")
            .items
        {
            let n = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let status = json!({"status": {"observedGeneration": s.metadata.generation, "replicas": n,
                "readyReplicas": n, "currentReplicas": n, "updatedReplicas": n}});
            self.api::<StatefulSet>()
                .patch_status(&s.name_any(), &pp, &Patch::Merge(status))
                .await
                .expect("status");
        }
    }
}

/// The objects of lab `lab`.
pub fn lab_selector(lab: &str) -> ListParams {
    ListParams::default().labels(&format!("app.kubernetes.io/instance={lab}"))
}

/// Status, reason and message of the lab's condition `type_`.
pub fn condition(lab: &TracingLab, type_: &str) -> Option<(String, String, String)> {
    let c = lab
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}
