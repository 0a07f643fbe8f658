//! What every rendered object shares: names, labels, owner reference, security settings, resources
//! and the config hash that rolls pods when what they consume changes.

use crate::crd::TracingLab;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    HTTPGetAction, PodSecurityContext, PodSpec, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The field manager of every server-side apply and the `managed-by` label value.
pub const MANAGER: &str = "tracing-lab-operator";
/// Pod template annotation holding the hash of the configuration the pod consumes.
pub const CONFIG_HASH: &str = "tracinglab.dev/config-hash";

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const PART_OF: &str = "app.kubernetes.io/part-of";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Label selector of everything the operator manages for one lab (used to prune).
pub fn lab_selector(lab: &str) -> String {
    format!("{INSTANCE}={lab},{MANAGED_BY}={MANAGER}")
}

/// Name of lab `lab`'s child `<lab>-<suffix>`: how every child is named.
pub fn child_name(lab: &str, suffix: &str) -> String {
    format!("{lab}-{suffix}")
}

/// The in-cluster DNS name of lab `lab`'s child Service `<lab>-<suffix>` in `namespace`.
pub fn service_host(lab: &str, namespace: &str, suffix: &str) -> String {
    format!("{}.{namespace}.svc", child_name(lab, suffix))
}

/// The lab being rendered: its identity, and how its children point back to it.
pub struct LabRef {
    pub name: String,
    pub namespace: String,
    owner: OwnerReference,
}

impl LabRef {
    /// `None` when the lab has not been stored yet (no uid), so children cannot be owned.
    pub fn new(lab: &TracingLab) -> Option<Self> {
        Some(Self {
            name: lab.metadata.name.clone()?,
            namespace: lab.metadata.namespace.clone()?,
            // Blocking: a foreground delete of the lab (`make reset`) returns only once every
            // child and its pods are gone, so a lab applied again starts empty.
            owner: OwnerReference {
                block_owner_deletion: Some(true),
                ..lab.controller_owner_ref(&())?
            },
        })
    }

    /// Name of a child: `<lab>-<suffix>`.
    pub fn child(&self, suffix: &str) -> String {
        child_name(&self.name, suffix)
    }

    /// Address of a child Service inside the cluster, reachable from any namespace.
    pub fn host(&self, suffix: &str) -> String {
        service_host(&self.name, &self.namespace, suffix)
    }

    /// Labels selecting the pods of one component.
    pub fn selector_labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (INSTANCE.to_string(), self.name.clone()),
            (COMPONENT.to_string(), component.to_string()),
        ])
    }

    /// The recommended labels: `app` is the program (kafka, jaeger, ...), `component` its role in the lab.
    pub fn labels(&self, app: &str, component: &str) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels(component);
        labels.insert(NAME.to_string(), app.to_string());
        labels.insert(PART_OF.to_string(), "tracing-lab".to_string());
        labels.insert(MANAGED_BY.to_string(), MANAGER.to_string());
        labels
    }

    pub fn selector(&self, component: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some(self.selector_labels(component)),
            ..Default::default()
        }
    }

    /// Metadata of a child object owned by the lab.
    pub fn meta(&self, suffix: &str, app: &str, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.child(suffix)),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(app, component)),
            owner_references: Some(vec![self.owner.clone()]),
            ..Default::default()
        }
    }
}

/// Short, stable hash of configuration text.
pub fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

/// Pod-level hardening; `uid` is the image's non-root user, set numerically so the kubelet can
/// verify `runAsNonRoot`.
/// The user and group an image's process runs as; volumes are group-owned by `gid`.
#[derive(Debug, Clone, Copy)]
pub struct RunAs {
    pub uid: i64,
    pub gid: i64,
}

pub fn pod_security(user: RunAs) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(user.uid),
        run_as_group: Some(user.gid),
        fs_group: Some(user.gid),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

/// Container-level hardening: read-only root, no privilege escalation, no capabilities.
pub fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    }
}

/// Requests and limits: the user's when given, otherwise the component's defaults.
pub fn resources(
    user: Option<&ResourceRequirements>,
    requests: (&str, &str),
    limits: (&str, &str),
) -> ResourceRequirements {
    if let Some(r) = user {
        return r.clone();
    }
    let pair = |(cpu, memory): (&str, &str)| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.to_string())),
            ("memory".to_string(), Quantity(memory.to_string())),
        ])
    };
    ResourceRequirements {
        requests: Some(pair(requests)),
        limits: Some(pair(limits)),
        ..Default::default()
    }
}

/// A writable scratch directory: the volume and its mount.
pub fn scratch(name: &str, path: &str) -> (Volume, VolumeMount) {
    (
        Volume {
            name: name.to_string(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        VolumeMount {
            name: name.to_string(),
            mount_path: path.to_string(),
            ..Default::default()
        },
    )
}

/// `/tmp`, the only writable path of a lab container (root filesystems are read-only).
pub fn tmp() -> (Volume, VolumeMount) {
    scratch("tmp", "/tmp")
}

/// A ConfigMap as a read-only volume: the volume and its mount.
pub fn config_volume(volume: &str, config_map: String, path: &str) -> (Volume, VolumeMount) {
    (
        Volume {
            name: volume.to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map,
                ..Default::default()
            }),
            ..Default::default()
        },
        VolumeMount {
            name: volume.to_string(),
            mount_path: path.to_string(),
            read_only: Some(true),
            ..Default::default()
        },
    )
}

/// A named port a container listens on.
pub fn container_port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: number,
        ..Default::default()
    }
}

/// A probe calling `GET path` on `port` every `period_seconds`.
pub fn http_probe(path: &str, port: i32, period_seconds: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(period_seconds),
        ..Default::default()
    }
}

/// The pod of a component: its containers and volumes, hardened for the image's user `uid`. No
/// Service links: the injected `<SERVICE>_PORT=tcp://...` variables can clash with images that read
/// their settings from the environment, and the lab passes every address explicitly.
pub fn pod_spec(containers: Vec<Container>, volumes: Vec<Volume>, user: RunAs) -> PodSpec {
    PodSpec {
        containers,
        volumes: Some(volumes),
        security_context: Some(pod_security(user)),
        enable_service_links: Some(false),
        ..Default::default()
    }
}

pub fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// A container with the hardening every lab container gets.
pub fn container(name: &str, image: &str, pull_policy: &str) -> Container {
    Container {
        name: name.to_string(),
        image: Some(image.to_string()),
        image_pull_policy: Some(pull_policy.to_string()),
        security_context: Some(container_security()),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crd::{TracingLab, TracingLabSpec};

    /// A stored-looking lab for builder tests.
    pub fn lab(spec: TracingLabSpec) -> TracingLab {
        let mut lab = TracingLab::new("demo", spec);
        lab.metadata.namespace = Some("students".into());
        lab.metadata.uid = Some("0000-1111".into());
        lab.metadata.generation = Some(1);
        lab
    }

    #[test]
    fn children_are_named_labelled_and_owned() {
        let r = LabRef::new(&lab(TracingLabSpec::default())).unwrap();
        let meta = r.meta("kafka", "kafka", "kafka");
        assert_eq!(meta.name.as_deref(), Some("demo-kafka"));
        let labels = meta.labels.unwrap();
        assert_eq!(labels[INSTANCE], "demo");
        assert_eq!(labels[MANAGED_BY], MANAGER);
        assert_eq!(labels[PART_OF], "tracing-lab");
        let owner = &meta.owner_references.unwrap()[0];
        assert_eq!(owner.kind, "TracingLab");
        assert_eq!(owner.uid, "0000-1111");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert_eq!(r.host("api"), "demo-api.students.svc");
    }

    #[test]
    fn a_lab_without_uid_cannot_own_children() {
        let mut l = lab(TracingLabSpec::default());
        l.metadata.uid = None;
        assert!(LabRef::new(&l).is_none());
    }

    #[test]
    fn hash_changes_with_content() {
        assert_eq!(hash(&["a", "b"]), hash(&["a", "b"]));
        assert_ne!(hash(&["a", "b"]), hash(&["ab"]));
        assert_eq!(hash(&["x"]).len(), 16);
    }
}
