//! The OpenTelemetry Collector between the services and Jaeger: OTLP in, tail sampling when
//! enabled, OTLP out to the lab's Jaeger; and, when span metrics are on, RED metrics derived from
//! every span out to the lab's Prometheus.

use super::common::{
    LabRef, RunAs, config_volume, container, container_port, hash, http_probe, pod_spec, resources,
    tmp,
};
use super::jaeger::{OTLP_PORT as JAEGER_OTLP_PORT, OTLP_SUFFIX as JAEGER_OTLP};
use super::prometheus::{self, PROMETHEUS};
use super::workload::{Component, deployment, port, service};
use crate::crd::{ComponentSpec, SpanMetricsSpec, TailSampling};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tracing_lab_config::contract;

pub const IMAGE: &str = "otel/opentelemetry-collector-contrib:0.161.0";
pub const COLLECTOR: Component = Component {
    suffix: "collector",
    app: "opentelemetry-collector",
};
pub const OTLP_GRPC_PORT: i32 = 4317;
const OTLP_HTTP_PORT: i32 = 4318;
const HEALTH_PORT: i32 = 13133;
/// The image's user and group.
const USER: RunAs = RunAs {
    uid: 10001,
    gid: 10001,
};
const CONFIG_FILE: &str = "config.yaml";
const CONFIG_MAP: &str = "collector-config";

/// Tail sampling policies, in the order the Collector tries them: the first that keeps a trace
/// decides (`sample_on_first_match`), so the percentage and the budget spend only on traces no
/// earlier rule kept.
pub fn tail_policies(tail: &TailSampling) -> Vec<Value> {
    let mut policies = Vec::new();
    if tail.keep_errors {
        policies.push(json!({"name": "keep-errors", "type": "status_code",
            "status_code": {"status_codes": ["ERROR"]}}));
    }
    if tail.latency_threshold_ms > 0 {
        policies.push(json!({"name": "keep-slow", "type": "latency",
            "latency": {"threshold_ms": tail.latency_threshold_ms}}));
    }
    for rule in &tail.keep_attributes {
        policies.push(
            json!({"name": format!("keep-{}", rule.key), "type": "string_attribute",
            "string_attribute": {"key": rule.key, "values": rule.values}}),
        );
    }
    if tail.percentage > 0.0 {
        policies.push(json!({"name": "keep-percentage", "type": "probabilistic",
            "probabilistic": {"sampling_percentage": tail.percentage}}));
    }
    if tail.spans_per_second > 0 {
        // The services' spans arrive in bursts, one export interval apart: a bucket of one
        // interval's budget lets each burst spend what the seconds before it earned.
        let burst = tail.spans_per_second * contract::SPAN_EXPORT_INTERVAL.as_secs() as i64;
        policies.push(json!({"name": "keep-budget", "type": "rate_limiting",
            "rate_limiting": {"spans_per_second": tail.spans_per_second, "burst_capacity": burst}}));
    }
    policies
}

/// Upper bounds of the duration histogram's buckets. Jaeger's percentiles interpolate inside a
/// bucket, so they are steps of at most a quarter around the seconds the lab's stages take (one
/// step of work, a whole order), not the connector's default that jumps from 2 s to 5 s.
const DURATION_BUCKETS: [&str; 27] = [
    "1ms", "2ms", "5ms", "10ms", "20ms", "50ms", "100ms", "200ms", "300ms", "500ms", "750ms", "1s",
    "1250ms", "1500ms", "1750ms", "2s", "2250ms", "2500ms", "3s", "4s", "5s", "7500ms", "10s",
    "15s", "20s", "30s", "60s",
];
/// How often the connector sends what it counted; a Monitor tab reading lags by about this much.
const SPAN_METRICS_FLUSH: &str = "5s";

pub fn config(lab: &LabRef, tail: &TailSampling, metrics: &SpanMetricsSpec) -> String {
    let mut processors = json!({
        "memory_limiter": {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 20},
        "batch": {},
    });
    let mut pipeline = vec!["memory_limiter"];
    if tail.enabled {
        processors["tail_sampling"] = json!({
            "decision_wait": format!("{}s", tail.decision_wait_seconds),
            "sample_on_first_match": true,
            "policies": tail_policies(tail),
        });
        pipeline.push("tail_sampling");
    }
    pipeline.push("batch");
    let mut doc = json!({
        "extensions": {"health_check": {"endpoint": format!("0.0.0.0:{HEALTH_PORT}")}},
        "receivers": {"otlp": {"protocols": {
            "grpc": {"endpoint": format!("0.0.0.0:{OTLP_GRPC_PORT}")},
            "http": {"endpoint": format!("0.0.0.0:{OTLP_HTTP_PORT}")},
        }}},
        "processors": processors,
        // OTLP/HTTP, not gRPC: each batch is a new request, so a Collector that starts before
        // Jaeger exports as soon as Jaeger answers, where a gRPC channel backs off for minutes.
        "exporters": {"otlp_http/jaeger": {
            "endpoint": format!("http://{}:{JAEGER_OTLP_PORT}", lab.child(JAEGER_OTLP)),
            "retry_on_failure": {"max_interval": "5s"},
        }},
        "service": {
            // Nothing in the lab scrapes the collector's own metrics; off, they hold no port.
            "telemetry": {"metrics": {"level": "none"}},
            "extensions": ["health_check"],
            "pipelines": {"traces": {
                "receivers": ["otlp"],
                "processors": pipeline,
                "exporters": ["otlp_http/jaeger"],
            }},
        },
    });
    if metrics.enabled {
        doc["connectors"] = json!({"span_metrics": {
            "histogram": {"explicit": {"buckets": DURATION_BUCKETS}},
            "metrics_flush_interval": SPAN_METRICS_FLUSH,
            // One counter per service, whatever pod a span comes from: Prometheus labels the
            // series by service only, where pods' counters would collide; and a collector that
            // restarts (a config change) goes on counting in the same series.
            "resource_metrics_key_attributes": ["service.name"],
            "exclude_dimensions": ["collector.instance.id"],
        }});
        doc["exporters"]["otlp_http/prometheus"] = json!({
            "endpoint": format!("http://{}:{}{}", lab.child(PROMETHEUS.suffix), prometheus::PORT,
                prometheus::OTLP_PATH),
            "retry_on_failure": {"max_interval": "5s"},
        });
        // Every span counts, those tail sampling drops too: a pipeline of its own, beside the
        // sampler's.
        let pipelines = &mut doc["service"]["pipelines"];
        pipelines["traces/span_metrics"] = json!({
            "receivers": ["otlp"],
            "processors": ["memory_limiter"],
            "exporters": ["span_metrics"],
        });
        pipelines["metrics/span_metrics"] = json!({
            "receivers": ["span_metrics"],
            "processors": ["memory_limiter", "batch"],
            "exporters": ["otlp_http/prometheus"],
        });
    }
    serde_saphyr::to_string(&doc).expect("a JSON value always serialises")
}

pub fn config_map(lab: &LabRef, tail: &TailSampling, metrics: &SpanMetricsSpec) -> ConfigMap {
    ConfigMap {
        metadata: lab.meta(CONFIG_MAP, COLLECTOR.app, COLLECTOR.suffix),
        data: Some(BTreeMap::from([(
            CONFIG_FILE.to_string(),
            config(lab, tail, metrics),
        )])),
        ..Default::default()
    }
}

pub fn service_(lab: &LabRef) -> Service {
    service(
        lab,
        COLLECTOR.suffix,
        COLLECTOR,
        vec![
            port("otlp-grpc", OTLP_GRPC_PORT),
            port("otlp-http", OTLP_HTTP_PORT),
        ],
    )
}

pub fn deployment_(
    lab: &LabRef,
    spec: &ComponentSpec,
    tail: &TailSampling,
    metrics: &SpanMetricsSpec,
) -> Deployment {
    let config = config(lab, tail, metrics);
    let (config_v, config_m) = config_volume("config", lab.child(CONFIG_MAP), "/etc/otelcol");
    let (tmp_v, tmp_m) = tmp();
    let mut c = container(
        "collector",
        spec.image.as_deref().unwrap_or(IMAGE),
        "IfNotPresent",
    );
    c.args = Some(vec![format!("--config=/etc/otelcol/{CONFIG_FILE}")]);
    c.ports = Some(vec![
        container_port("otlp-grpc", OTLP_GRPC_PORT),
        container_port("otlp-http", OTLP_HTTP_PORT),
        container_port("health", HEALTH_PORT),
    ]);
    c.volume_mounts = Some(vec![config_m, tmp_m]);
    c.resources = Some(resources(
        spec.resources.as_ref(),
        ("100m", "128Mi"),
        ("1", "512Mi"),
    ));
    c.readiness_probe = Some(http_probe("/", HEALTH_PORT, 10));
    c.liveness_probe = Some(http_probe("/", HEALTH_PORT, 10));
    let pod = pod_spec(vec![c], vec![config_v, tmp_v], USER);
    deployment(lab, COLLECTOR, Some(1), pod, Some(hash(&[&config])))
}
