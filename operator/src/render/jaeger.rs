//! Jaeger v2 (built on the OpenTelemetry Collector) with in-memory storage, configured by a file
//! rendered from the spec.

use super::common::{
    LabRef, RunAs, config_volume, container, container_port, hash, http_probe, pod_spec, resources,
    tmp,
};
use super::prometheus::{self, PROMETHEUS};
use super::workload::{Component, deployment, port, service};
use crate::crd::{JAEGER_MEMORY_LIMIT, JaegerSpec, RemoteSampling, SpanMetricsSpec};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use serde_json::json;
use std::collections::BTreeMap;

pub const IMAGE: &str = "jaegertracing/jaeger:2.13.0";
pub const JAEGER: Component = Component {
    suffix: "jaeger",
    app: "jaeger",
};
pub const UI_PORT: i32 = 16686;
/// OTLP/HTTP, which the Collector exports to.
pub const OTLP_PORT: i32 = 4318;
/// Jaeger's gRPC query API (the UI's HTTP API is on [`UI_PORT`]).
const QUERY_GRPC_PORT: i32 = 16685;
const HEALTH_PORT: i32 = 13133;
/// Remote sampling over HTTP (`GET /sampling?service=…`), which the services' Jaeger remote
/// samplers ask.
pub const SAMPLING_PORT: i32 = 5778;
/// Name suffix of the Service the services ask for their sampling strategies.
pub const SAMPLING_SUFFIX: &str = "jaeger-sampling";
/// The strategies live in a ConfigMap of their own, outside the pod's config hash: a change is
/// picked up by the kubelet and then by Jaeger's reload, without a restart that would lose the
/// traces. Mounted as a directory (not a subPath), so the kubelet updates it.
const STRATEGIES_CONFIG_MAP: &str = "jaeger-sampling";
const STRATEGIES_DIR: &str = "/etc/jaeger-sampling";
const STRATEGIES_FILE: &str = "strategies.json";
/// How often Jaeger reads the strategies file again.
const STRATEGIES_RELOAD: &str = "5s";
/// The image's user and group.
const USER: RunAs = RunAs {
    uid: 10001,
    gid: 10001,
};
const CONFIG_FILE: &str = "config.yaml";
const CONFIG_MAP: &str = "jaeger-config";

/// Name suffix of the Service the collector exports to.
pub const OTLP_SUFFIX: &str = "jaeger-otlp";
/// Name of the metrics backend the Monitor tab reads, when span metrics are on.
const METRICS_BACKEND: &str = "prometheus";

pub fn config(lab: &LabRef, spec: &JaegerSpec, metrics: &SpanMetricsSpec) -> String {
    let mut doc = json!({
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "remote_sampling", "healthcheckv2"],
            "pipelines": {"traces": {
                "receivers": ["otlp"],
                "processors": ["batch"],
                "exporters": ["jaeger_storage_exporter"],
            }},
            // Nothing in the lab scrapes Jaeger's own metrics; off, they hold no port.
            "telemetry": {"resource": {"service.name": "jaeger"}, "logs": {"level": "info"},
                "metrics": {"level": "none"}},
        },
        "extensions": {
            "healthcheckv2": {"use_v2": true, "http": {"endpoint": format!("0.0.0.0:{HEALTH_PORT}")}},
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": spec.max_traces}}}},
            "jaeger_query": {
                "storage": {"traces": "memstore"},
                // It would trace itself to an OTLP endpoint on its own loopback, which holds none.
                "enable_tracing": false,
                "http": {"endpoint": format!("0.0.0.0:{UI_PORT}")},
                "grpc": {"endpoint": format!("0.0.0.0:{QUERY_GRPC_PORT}")},
            },
            "remote_sampling": {
                "file": {
                    "path": format!("{STRATEGIES_DIR}/{STRATEGIES_FILE}"),
                    "reload_interval": STRATEGIES_RELOAD,
                },
                "http": {"endpoint": format!("0.0.0.0:{SAMPLING_PORT}")},
            },
        },
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": format!("0.0.0.0:{OTLP_PORT}")}}}},
        "processors": {"batch": {}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    });
    if metrics.enabled {
        // The collector's span_metrics connector names the series `traces_span_metrics_calls` and
        // `…_duration` in milliseconds; Prometheus adds the `_total` and `_milliseconds` suffixes
        // the two switches tell Jaeger's queries to expect.
        doc["extensions"]["jaeger_storage"]["metric_backends"] = json!({METRICS_BACKEND: {"prometheus": {
            "endpoint": format!("http://{}:{}", lab.child(PROMETHEUS.suffix), prometheus::PORT),
            "normalize_calls": true,
            "normalize_duration": true,
        }}});
        doc["extensions"]["jaeger_query"]["storage"]["metrics"] = json!(METRICS_BACKEND);
    }
    serde_saphyr::to_string(&doc).expect("a JSON value always serialises")
}

pub fn config_map(lab: &LabRef, spec: &JaegerSpec, metrics: &SpanMetricsSpec) -> ConfigMap {
    ConfigMap {
        metadata: lab.meta(CONFIG_MAP, JAEGER.app, JAEGER.suffix),
        data: Some(BTreeMap::from([(
            CONFIG_FILE.to_string(),
            config(lab, spec, metrics),
        )])),
        ..Default::default()
    }
}

/// Jaeger's strategies file (the format of its `file` strategy provider): a default, and per
/// service a ratio with ratios per operation.
pub fn strategies(remote: &RemoteSampling) -> String {
    let probabilistic = |ratio: f64| json!({"type": "probabilistic", "param": ratio});
    let services: Vec<_> = remote
        .services
        .iter()
        .map(|s| {
            let mut strategy = probabilistic(s.ratio.unwrap_or(remote.default_ratio));
            strategy["service"] = json!(s.service);
            if !s.operations.is_empty() {
                strategy["operation_strategies"] = s
                    .operations
                    .iter()
                    .map(|o| {
                        let mut op = probabilistic(o.ratio);
                        op["operation"] = json!(o.operation);
                        op
                    })
                    .collect();
            }
            strategy
        })
        .collect();
    let doc = json!({
        "default_strategy": probabilistic(remote.default_ratio),
        "service_strategies": services,
    });
    serde_json::to_string_pretty(&doc).expect("a JSON value always serialises")
}

pub fn strategies_config_map(lab: &LabRef, remote: &RemoteSampling) -> ConfigMap {
    ConfigMap {
        metadata: lab.meta(STRATEGIES_CONFIG_MAP, JAEGER.app, JAEGER.suffix),
        data: Some(BTreeMap::from([(
            STRATEGIES_FILE.to_string(),
            strategies(remote),
        )])),
        ..Default::default()
    }
}

/// The UI Service (`<lab>-jaeger`, node port when given), the OTLP Service the collector uses
/// and the sampling Service the services ask.
pub fn services(lab: &LabRef, ui_node_port: Option<i32>) -> Vec<Service> {
    let mut ui = port("ui", UI_PORT);
    ui.node_port = ui_node_port;
    vec![
        service(lab, JAEGER.suffix, JAEGER, vec![ui]),
        service(lab, OTLP_SUFFIX, JAEGER, vec![port("otlp-http", OTLP_PORT)]),
        service(
            lab,
            SAMPLING_SUFFIX,
            JAEGER,
            vec![port("sampling", SAMPLING_PORT)],
        ),
    ]
}

pub fn deployment_(lab: &LabRef, spec: &JaegerSpec, metrics: &SpanMetricsSpec) -> Deployment {
    let config = config(lab, spec, metrics);
    let (config_v, config_m) = config_volume("config", lab.child(CONFIG_MAP), "/etc/jaeger");
    let (strategies_v, strategies_m) =
        config_volume("sampling", lab.child(STRATEGIES_CONFIG_MAP), STRATEGIES_DIR);
    let (tmp_v, tmp_m) = tmp();
    let mut c = container(
        "jaeger",
        spec.image.as_deref().unwrap_or(IMAGE),
        "IfNotPresent",
    );
    c.args = Some(vec![
        "--config".into(),
        format!("/etc/jaeger/{CONFIG_FILE}"),
    ]);
    c.ports = Some(vec![
        container_port("ui", UI_PORT),
        container_port("query-grpc", QUERY_GRPC_PORT),
        container_port("otlp-http", OTLP_PORT),
        container_port("sampling", SAMPLING_PORT),
        container_port("health", HEALTH_PORT),
    ]);
    c.volume_mounts = Some(vec![config_m, strategies_m, tmp_m]);
    c.resources = Some(resources(
        spec.resources.as_ref(),
        ("100m", "128Mi"),
        ("1", JAEGER_MEMORY_LIMIT),
    ));
    c.readiness_probe = Some(http_probe("/status", HEALTH_PORT, 10));
    c.liveness_probe = Some(http_probe("/status", HEALTH_PORT, 10));
    let pod = pod_spec(vec![c], vec![config_v, strategies_v, tmp_v], USER);
    deployment(lab, JAEGER, Some(1), pod, Some(hash(&[&config])))
}
