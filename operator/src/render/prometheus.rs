//! Prometheus, while span metrics are on (the default): the collector pushes the RED metrics it
//! derives from the spans over OTLP, and Jaeger's Monitor tab queries them. Nothing is scraped.

use super::common::{
    LabRef, RunAs, config_volume, container, container_port, hash, http_probe, pod_spec, resources,
    scratch,
};
use super::workload::{Component, deployment, port, service};
use crate::crd::SpanMetricsSpec;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use serde_json::json;
use std::collections::BTreeMap;

pub const IMAGE: &str = "prom/prometheus:v3.16.0";
pub const PROMETHEUS: Component = Component {
    suffix: "prometheus",
    app: "prometheus",
};
/// The HTTP API: queries, and the OTLP receiver under `/api/v1/otlp`.
pub const PORT: i32 = 9090;
/// Where the collector sends metrics (its `otlp_http` exporter adds `/v1/metrics`).
pub const OTLP_PATH: &str = "/api/v1/otlp";
/// The image's `nobody`.
const USER: RunAs = RunAs {
    uid: 65534,
    gid: 65534,
};
const CONFIG_FILE: &str = "prometheus.yml";
const CONFIG_MAP: &str = "prometheus-config";
const DATA_DIR: &str = "/prometheus";

pub fn config(spec: &SpanMetricsSpec) -> String {
    let doc =
        json!({"storage": {"tsdb": {"retention": {"time": format!("{}h", spec.retention_hours)}}}});
    serde_saphyr::to_string(&doc).expect("a JSON value always serialises")
}

pub fn config_map(lab: &LabRef, spec: &SpanMetricsSpec) -> ConfigMap {
    ConfigMap {
        metadata: lab.meta(CONFIG_MAP, PROMETHEUS.app, PROMETHEUS.suffix),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_string(), config(spec))])),
        ..Default::default()
    }
}

pub fn service_(lab: &LabRef) -> Service {
    service(lab, PROMETHEUS.suffix, PROMETHEUS, vec![port("http", PORT)])
}

pub fn deployment_(lab: &LabRef, spec: &SpanMetricsSpec) -> Deployment {
    let config = config(spec);
    let (config_v, config_m) = config_volume("config", lab.child(CONFIG_MAP), "/etc/prometheus");
    let (data_v, data_m) = scratch("data", DATA_DIR);
    let mut c = container(
        "prometheus",
        spec.image.as_deref().unwrap_or(IMAGE),
        "IfNotPresent",
    );
    c.args = Some(vec![
        format!("--config.file=/etc/prometheus/{CONFIG_FILE}"),
        format!("--storage.tsdb.path={DATA_DIR}"),
        format!("--web.listen-address=0.0.0.0:{PORT}"),
        "--web.enable-otlp-receiver".into(),
    ]);
    c.ports = Some(vec![container_port("http", PORT)]);
    c.volume_mounts = Some(vec![config_m, data_m]);
    c.resources = Some(resources(
        spec.resources.as_ref(),
        ("50m", "64Mi"),
        ("1", "512Mi"),
    ));
    c.readiness_probe = Some(http_probe("/-/ready", PORT, 10));
    c.liveness_probe = Some(http_probe("/-/healthy", PORT, 10));
    let pod = pod_spec(vec![c], vec![config_v, data_v], USER);
    deployment(lab, PROMETHEUS, Some(1), pod, Some(hash(&[&config])))
}
