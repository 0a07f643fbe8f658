//! The four lab services and the load generator: one image, the role as its argument, settings
//! through the standard `OTEL_*` variables and the lab configuration document.

use super::collector::{COLLECTOR, OTLP_GRPC_PORT};
use super::common::{
    LabRef, RunAs, config_volume, container, container_port, env, hash, http_probe, pod_spec,
    resources, tmp,
};
use super::jaeger::{SAMPLING_PORT, SAMPLING_SUFFIX};
use super::kafka::{CLIENT_PORT as KAFKA_PORT, KAFKA};
use super::redis::{PORT as REDIS_PORT, REDIS};
use super::workload::{Component, deployment, port, service};
use crate::crd::{HeadSampling, TracingLabSpec};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, ResourceRequirements, Service,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tracing_lab_config::contract::{
    self, HEALTH_PATH, JaegerRemoteArg, LOADGEN, READY_PATH, env as var,
};
use tracing_lab_config::{FILE_NAME, LabConfig, Role, quote};

pub const PORT: i32 = contract::PORT as i32;
const CONFIG_DIR: &str = "/etc/tracing-lab";
const CONFIG_MAP: &str = "config";
/// The non-root user and group of the `tracing-lab-service` image (its Dockerfile's numeric `USER`).
const USER: RunAs = RunAs {
    uid: 65532,
    gid: 65532,
};

pub fn default_image() -> String {
    format!("tracing-lab-service:{}", env!("CARGO_PKG_VERSION"))
}

fn component(name: &str) -> Component<'_> {
    Component {
        suffix: name,
        app: "tracing-lab-service",
    }
}

/// ConfigMap `<lab>-config` holding the resolved lab configuration document.
pub fn config_map(lab: &LabRef, config: &LabConfig) -> ConfigMap {
    ConfigMap {
        metadata: lab.meta(CONFIG_MAP, "tracing-lab-service", "config"),
        data: Some(BTreeMap::from([(FILE_NAME.to_string(), config.to_json())])),
        ..Default::default()
    }
}

/// Service `<lab>-api:8080`, a node port when the spec asks for one.
pub fn api_service(lab: &LabRef, node_port: Option<i32>) -> Service {
    let mut http = port("http", PORT);
    http.node_port = node_port;
    service(
        lab,
        Role::Api.name(),
        component(Role::Api.name()),
        vec![http],
    )
}

/// Service `<lab>-analytics:8080`, where the api asks for quotes (only while `spec.quote` is on).
pub fn quote_service(lab: &LabRef) -> Service {
    let name = quote::SERVER.name();
    service(lab, name, component(name), vec![port("http", PORT)])
}

/// The Deployment of one of the four services.
pub fn deployment_(
    lab: &LabRef,
    spec: &TracingLabSpec,
    config: &LabConfig,
    role: Role,
) -> Deployment {
    let service = spec.services.get(role);
    // Both ends of the quote hop restart when it changes; the other roles do not read it.
    let quote = [quote::CLIENT, quote::SERVER]
        .contains(&role)
        .then_some(&config.quote);
    let consumed = serde_json::to_string(&(config.role(role), &config.resource_sampling, quote))
        .expect("settings always serialise");
    let mut extra_env = Vec::new();
    if role == quote::CLIENT && config.quote.enabled {
        extra_env.push(env(
            var::QUOTE_URL,
            format!("http://{}:{PORT}", lab.child(quote::SERVER.name())),
        ));
    }
    let pod = pod(
        lab,
        spec,
        role.name(),
        spec.sampling.for_role(role),
        extra_env,
        resources(service.resources.as_ref(), ("100m", "32Mi"), ("2", "512Mi")),
        READY_PATH,
    );
    deployment(
        lab,
        component(role.name()),
        service.replicas,
        pod,
        Some(hash(&[&consumed])),
    )
}

/// The load generator, posting orders to the api at the configured rate.
pub fn loadgen(lab: &LabRef, spec: &TracingLabSpec, config: &LabConfig) -> Deployment {
    let consumed = serde_json::to_string(&config.loadgen).expect("settings always serialise");
    let target = env(
        var::LOADGEN_TARGET_URL,
        format!("http://{}:{PORT}", lab.child(Role::Api.name())),
    );
    let res = resources(
        spec.load_generator.resources.as_ref(),
        ("50m", "32Mi"),
        ("500m", "128Mi"),
    );
    let pod = pod(
        lab,
        spec,
        LOADGEN,
        spec.sampling.head.clone(),
        vec![target],
        res,
        HEALTH_PATH,
    );
    deployment(
        lab,
        component(LOADGEN),
        Some(1),
        pod,
        Some(hash(&[&consumed])),
    )
}

fn field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The environment contract every service container gets.
fn contract_env(
    lab: &LabRef,
    spec: &TracingLabSpec,
    role: &str,
    sampling: &HeadSampling,
) -> Vec<EnvVar> {
    vec![
        field(var::POD_NAME, "metadata.name"),
        field(var::POD_NAMESPACE, "metadata.namespace"),
        env(var::OTEL_SERVICE_NAME, role),
        env(
            var::OTEL_EXPORTER_OTLP_ENDPOINT,
            format!("http://{}:{OTLP_GRPC_PORT}", lab.child(COLLECTOR.suffix)),
        ),
        env(var::OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
        env(var::OTEL_TRACES_SAMPLER, sampling.sampler.as_str()),
        env(
            var::OTEL_TRACES_SAMPLER_ARG,
            sampler_arg(lab, spec, sampling),
        ),
        env(
            var::OTEL_BSP_SCHEDULE_DELAY,
            contract::SPAN_EXPORT_INTERVAL.as_millis().to_string(),
        ),
        env(
            var::OTEL_RESOURCE_ATTRIBUTES,
            format!(
                "k8s.namespace.name=$({}),k8s.pod.name=$({}),service.namespace={}",
                var::POD_NAMESPACE,
                var::POD_NAME,
                lab.name
            ),
        ),
        env(
            var::KAFKA_BOOTSTRAP_SERVERS,
            format!("{}:{KAFKA_PORT}", lab.child(KAFKA.suffix)),
        ),
        env(
            var::KAFKA_TOPIC_PARTITIONS,
            spec.kafka.partitions.to_string(),
        ),
        env(
            var::REDIS_URL,
            format!("redis://{}:{REDIS_PORT}", lab.child(REDIS.suffix)),
        ),
        env(var::LAB_CONFIG, format!("{CONFIG_DIR}/{FILE_NAME}")),
        env(var::LISTEN_ADDR, format!("0.0.0.0:{PORT}")),
        env(var::TMPDIR, "/tmp"),
    ]
}

/// The ratio; for the Jaeger remote samplers, where Jaeger serves the strategies, how often to
/// ask, and the ratio until the first answer.
fn sampler_arg(lab: &LabRef, spec: &TracingLabSpec, sampling: &HeadSampling) -> String {
    if !sampling.sampler.is_remote() {
        return sampling.ratio.to_string();
    }
    let poll = spec.sampling.remote_strategies().poll_interval_seconds;
    JaegerRemoteArg {
        endpoint: format!(
            "http://{}:{SAMPLING_PORT}/sampling",
            lab.child(SAMPLING_SUFFIX)
        ),
        polling_interval: Duration::from_secs(poll.max(1) as u64),
        initial_sampling_rate: sampling.ratio,
    }
    .to_string()
}

fn pod(
    lab: &LabRef,
    spec: &TracingLabSpec,
    role: &str,
    sampling: HeadSampling,
    extra_env: Vec<EnvVar>,
    resources: ResourceRequirements,
    readiness_path: &str,
) -> PodSpec {
    let (config_v, config_m) = config_volume("config", lab.child(CONFIG_MAP), CONFIG_DIR);
    let (tmp_v, tmp_m) = tmp();
    let image = spec.image.clone().unwrap_or_else(default_image);
    let mut c = container(role, &image, spec.image_pull_policy.as_str());
    c.args = Some(vec![role.to_string()]);
    c.env = Some([contract_env(lab, spec, role, &sampling), extra_env].concat());
    c.ports = Some(vec![container_port("http", PORT)]);
    c.volume_mounts = Some(vec![config_m, tmp_m]);
    c.resources = Some(resources);
    c.liveness_probe = Some(http_probe(HEALTH_PATH, PORT, 5));
    c.readiness_probe = Some(http_probe(readiness_path, PORT, 5));
    PodSpec {
        termination_grace_period_seconds: Some(contract::TERMINATION_GRACE_SECONDS),
        ..pod_spec(vec![c], vec![config_v, tmp_v], USER)
    }
}
