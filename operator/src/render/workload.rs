//! Deployment and Service shapes shared by every component.

use super::common::{CONFIG_HASH, LabRef};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// Identity of one component of the lab.
#[derive(Clone, Copy)]
pub struct Component<'a> {
    /// Name suffix: the object is `<lab>-<suffix>`.
    pub suffix: &'a str,
    /// The program (`app.kubernetes.io/name`).
    pub app: &'a str,
}

/// The pod template of a component, with the config hash annotation when it consumes configuration.
pub fn template(
    lab: &LabRef,
    c: Component,
    spec: PodSpec,
    config_hash: Option<String>,
) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(lab.labels(c.app, c.suffix)),
            annotations: config_hash.map(|h| BTreeMap::from([(CONFIG_HASH.to_string(), h)])),
            ..Default::default()
        }),
        spec: Some(spec),
    }
}

/// A Deployment. `replicas: None` leaves `spec.replicas` out of the apply so the operator does not
/// own it and `kubectl scale` holds.
pub fn deployment(
    lab: &LabRef,
    c: Component,
    replicas: Option<i32>,
    spec: PodSpec,
    config_hash: Option<String>,
) -> Deployment {
    Deployment {
        metadata: lab.meta(c.suffix, c.app, c.suffix),
        spec: Some(DeploymentSpec {
            replicas,
            selector: lab.selector(c.suffix),
            template: template(lab, c, spec, config_hash),
            ..Default::default()
        }),
        status: None,
    }
}

/// A TCP port of a Service.
pub fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// A Service selecting the pods of `selects`; NodePort when any port carries a node port.
pub fn service(lab: &LabRef, suffix: &str, selects: Component, ports: Vec<ServicePort>) -> Service {
    let node_port = ports.iter().any(|p| p.node_port.is_some());
    Service {
        metadata: lab.meta(suffix, selects.app, selects.suffix),
        spec: Some(ServiceSpec {
            type_: Some(if node_port { "NodePort" } else { "ClusterIP" }.into()),
            selector: Some(lab.selector_labels(selects.suffix)),
            ports: Some(ports),
            ..Default::default()
        }),
        status: None,
    }
}
