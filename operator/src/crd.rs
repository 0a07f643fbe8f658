//! The `TracingLab` custom resource: the single source of truth for its schema.
//!
//! Every field carries a doc comment; they become the schema descriptions `kubectl explain` shows.
//! Numbers and switches default in the schema (the API server fills them in); images and container
//! resources default in the operator, so upgrading the operator upgrades labs that did not pin them.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
pub use tracing_lab_config::contract::Sampler;
use tracing_lab_config::{
    LabConfig, QuoteSettings, ResourceSampling, Role, RoleOverrides, contract,
};

/// An image reference has no whitespace: refused at apply time, where the kubelet would only
/// report `InvalidImageName` once the pod is scheduled.
const IMAGE_REFERENCE: &str = r"^\S+$";

/// A complete distributed-tracing lab in one namespace: Kafka, Redis, Jaeger, an OpenTelemetry
/// Collector and the four instrumented services (api -> processing -> notification -> analytics),
/// plus an optional load generator.
// Several `printcolumn(type_ = "string")` read as duplicates to clippy; they are distinct columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "tracinglab.dev",
    version = "v1alpha1",
    kind = "TracingLab",
    plural = "tracinglabs",
    shortname = "tlab",
    namespaced,
    status = "TracingLabStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "A distributed-tracing teaching lab: one resource, the whole lab in its namespace.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Services",
        type_ = "string",
        json_path = ".status.servicesReady",
        description = "service Deployments available / total"
    ),
    printcolumn(
        name = "Lag",
        type_ = "integer",
        json_path = ".status.kafka.totalLag",
        description = "Kafka messages waiting, all consumer groups"
    ),
    printcolumn(
        name = "Worst",
        type_ = "string",
        json_path = ".status.kafka.worstGroup",
        description = "consumer group with the most messages waiting"
    ),
    printcolumn(
        name = "API",
        type_ = "string",
        json_path = ".status.urls.apiLocal",
        description = "where to open the api from your machine"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        description = "why the lab is not ready, or what it waits for"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TracingLabSpec {
    /// The four lab services. Each section is optional and defaults to the original lab's behaviour.
    #[serde(default)]
    pub services: Services,
    /// Container image of the lab services (one image, the role is its first argument).
    /// Defaults to `tracing-lab-service:<operator version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), extend("pattern" = IMAGE_REFERENCE))]
    pub image: Option<String>,
    /// Pull policy for the lab services image. `IfNotPresent` suits images loaded with `kind load`.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
    /// The Kafka broker (Apache Kafka in KRaft combined mode, one node, no ZooKeeper).
    #[serde(default)]
    pub kafka: KafkaSpec,
    /// The Redis server the services store orders in.
    #[serde(default)]
    pub redis: ComponentSpec,
    /// Jaeger v2 with in-memory storage: the UI students search traces in.
    #[serde(default)]
    pub jaeger: JaegerSpec,
    /// The OpenTelemetry Collector (contrib distribution) between the services and Jaeger; tail
    /// sampling runs here.
    #[serde(default)]
    pub collector: ComponentSpec,
    /// Request rate, errors and duration percentiles per service and operation (RED metrics),
    /// derived from the spans by the collector and kept in a Prometheus the lab runs: Jaeger's
    /// Monitor tab. On by default.
    #[serde(default)]
    pub span_metrics: SpanMetricsSpec,
    /// Head sampling in the services and tail sampling in the collector.
    #[serde(default)]
    pub sampling: SamplingSpec,
    /// A load generator that posts orders to the api service.
    #[serde(default)]
    pub load_generator: LoadGeneratorSpec,
    /// How the services sample their own CPU and memory for the `resource.*` span attributes.
    /// Defaults to every 100 ms, CPU-bound above 80 %, memory threshold 200 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_sampling: Option<ResourceSampling>,
    /// A synchronous hop: the api asks analytics over HTTP for a quote (price, stock, shipping)
    /// before it takes each order. Off by default.
    #[serde(default)]
    pub quote: QuoteSettings,
    /// How students reach the lab from outside the cluster.
    #[serde(default)]
    pub access: AccessSpec,
}

impl TracingLabSpec {
    /// The lab configuration document the services read, fully resolved from the spec.
    pub fn lab_config(&self) -> LabConfig {
        let mut config = LabConfig::default();
        for role in Role::ALL {
            *config.role_mut(role) = self.services.get(role).overrides.resolve(role);
        }
        config.resource_sampling = self.resource_sampling.clone().unwrap_or_default();
        config.loadgen.orders_per_second = self.load_generator.orders_per_second;
        config.quote = self.quote.clone();
        config
    }
}

/// When the kubelet pulls an image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// The four lab services.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Services {
    /// HTTP entry point: validates orders, stores them in Redis, publishes to `orders`.
    #[serde(default)]
    pub api: ServiceSpec,
    /// Consumes `orders`, publishes to `processed-orders` (CPU-heavy by default).
    #[serde(default)]
    pub processing: ServiceSpec,
    /// Consumes `processed-orders`, publishes to `notified-orders` (IO-heavy by default).
    #[serde(default)]
    pub notification: ServiceSpec,
    /// Consumes `notified-orders` (mixed work by default).
    #[serde(default)]
    pub analytics: ServiceSpec,
}

impl Services {
    pub fn get(&self, role: Role) -> &ServiceSpec {
        match role {
            Role::Api => &self.api,
            Role::Processing => &self.processing,
            Role::Notification => &self.notification,
            Role::Analytics => &self.analytics,
        }
    }
}

/// One lab service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Number of pods. When unset the operator leaves the Deployment's replicas alone, so
    /// `kubectl scale` holds; when set the operator enforces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,
    /// Container resources. Defaults to requests 100m CPU / 32Mi, limits 2 CPU / 512Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = resource_requirements)]
    pub resources: Option<ResourceRequirements>,
    /// Concurrency, workload mix and faults.
    #[serde(flatten)]
    pub overrides: RoleOverrides,
}

/// Image and resources of a supporting component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// Container image; defaults to a pinned upstream image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), extend("pattern" = IMAGE_REFERENCE))]
    pub image: Option<String>,
    /// Container resources; defaults suit a laptop kind cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = resource_requirements)]
    pub resources: Option<ResourceRequirements>,
}

/// The Kafka broker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Container image (Apache Kafka in KRaft mode); defaults to a pinned `apache/kafka` image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), extend("pattern" = IMAGE_REFERENCE))]
    pub image: Option<String>,
    /// Partitions of each topic the services create. Kafka gives each partition to one pod of a
    /// consumer service, so pods beyond this number sit idle: it caps how far adding replicas
    /// helps. `concurrency` (messages at once within a pod) is not bound by it.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 1000))]
    pub partitions: i32,
    /// Container resources; defaults to requests 250m CPU / 512Mi, limits 1 CPU / 1Gi. The memory
    /// limit must be at least the broker's fixed 512Mi heap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = kafka_resources)]
    pub resources: Option<ResourceRequirements>,
    /// Where the broker keeps its log (every accepted order not yet consumed, and the committed
    /// offsets). Fixed when the lab is created: a StatefulSet cannot change its volume claims.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "kafka.storage cannot change; delete the lab and create it again"
    }, {
        "rule": "self.type != 'persistentVolumeClaim' || quantity(string(self.size)).isGreaterThan(quantity('0'))",
        "fieldPath": ".size",
        "message": "a persistentVolumeClaim needs a size above 0 (the default is 1Gi)"
    }]))]
    pub storage: KafkaStorage,
}

fn default_partitions() -> i32 {
    contract::DEFAULT_TOPIC_PARTITIONS
}

impl Default for KafkaSpec {
    fn default() -> Self {
        Self {
            image: None,
            partitions: default_partitions(),
            resources: None,
            storage: KafkaStorage::default(),
        }
    }
}

/// The broker's data volume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaStorage {
    /// `emptyDir` (the default) survives a container restart but not a rescheduled pod: Kafka then
    /// starts empty and every order the api accepted but the consumers had not read yet is lost.
    /// `persistentVolumeClaim` keeps the data on a claim that follows the pod (deleted with the
    /// lab); it needs a StorageClass that provisions volumes (kind ships one).
    #[serde(default, rename = "type")]
    pub type_: StorageType,
    /// Size of the claim (`persistentVolumeClaim` only).
    #[serde(default = "default_storage_size")]
    #[schemars(transform = defaulted_quantity)]
    pub size: Quantity,
    /// StorageClass of the claim (`persistentVolumeClaim` only); unset: the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub storage_class_name: Option<String>,
}

/// Kinds of Kafka storage.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StorageType {
    #[default]
    EmptyDir,
    PersistentVolumeClaim,
}

fn default_storage_size() -> Quantity {
    Quantity("1Gi".into())
}

impl Default for KafkaStorage {
    fn default() -> Self {
        Self {
            type_: StorageType::default(),
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// Jaeger v2 with in-memory storage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = jaeger_traces_fit)]
pub struct JaegerSpec {
    /// Container image; defaults to a pinned `jaegertracing/jaeger` v2 image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), extend("pattern" = IMAGE_REFERENCE))]
    pub image: Option<String>,
    /// Most traces kept in memory; the oldest are dropped beyond it. Each takes about 46 KiB, so
    /// they must fit under the memory limit (about 22,800 in the default 1Gi).
    #[serde(default = "default_max_traces")]
    #[schemars(range(min = 100, max = 10000000))]
    pub max_traces: i64,
    /// Container resources; defaults to requests 100m CPU / 128Mi, limits 1 CPU / 1Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = resource_requirements)]
    pub resources: Option<ResourceRequirements>,
}

/// About 900 MiB of traces at [`JAEGER_TRACE_KIB`] each: under the default 1Gi
/// limit, and hours of a workshop's load generator.
fn default_max_traces() -> i64 {
    20_000
}

impl Default for JaegerSpec {
    fn default() -> Self {
        Self {
            image: None,
            max_traces: default_max_traces(),
            resources: None,
        }
    }
}

/// RED metrics from spans: the collector's `span_metrics` connector counts every span the services
/// export (before tail sampling) into a Prometheus server, which Jaeger's Monitor tab queries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpanMetricsSpec {
    /// Run Prometheus and derive the metrics. On by default: the pod it adds requests 50m CPU /
    /// 64Mi and was measured at about 4m and 20 MiB under the load generator.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Container image of Prometheus; defaults to a pinned `prom/prometheus` image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), extend("pattern" = IMAGE_REFERENCE))]
    pub image: Option<String>,
    /// How long Prometheus keeps the metrics, in hours.
    #[serde(default = "default_retention_hours")]
    #[schemars(range(min = 1, max = 168))]
    pub retention_hours: i64,
    /// Prometheus's container resources; defaults to requests 50m CPU / 64Mi, limits 1 CPU /
    /// 512Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = resource_requirements)]
    pub resources: Option<ResourceRequirements>,
}

/// A workshop day.
fn default_retention_hours() -> i64 {
    12
}

impl Default for SpanMetricsSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            image: None,
            retention_hours: default_retention_hours(),
            resources: None,
        }
    }
}

/// Head sampling (decided in each service when a trace starts) and tail sampling (decided in the
/// collector once a trace is complete).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = remote_needs_a_remote_sampler)]
pub struct SamplingSpec {
    /// Sampler of every service (`OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`).
    #[serde(default)]
    pub head: HeadSampling,
    /// Per-service changes to `head`.
    #[serde(default)]
    pub per_service: PerServiceSampling,
    /// The strategies Jaeger serves to the services that sample with `jaeger_remote` or
    /// `parentbased_jaeger_remote`. Unset, those services are served `defaultRatio` (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteSampling>,
    /// Tail sampling in the collector.
    #[serde(default)]
    pub tail: TailSampling,
}

/// An OpenTelemetry SDK sampler with its argument.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeadSampling {
    /// Sampler name, as in `OTEL_TRACES_SAMPLER`.
    #[serde(default)]
    pub sampler: Sampler,
    /// Fraction of traces kept by the ratio samplers (0..1); for the Jaeger remote samplers, the
    /// fraction until Jaeger's first answer; ignored by the others.
    #[serde(default = "default_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub ratio: f64,
}

fn default_ratio() -> f64 {
    1.0
}

impl Default for HeadSampling {
    fn default() -> Self {
        Self {
            sampler: Sampler::default(),
            ratio: default_ratio(),
        }
    }
}

/// A change to the lab-wide head sampler for one service; unset fields keep the lab-wide value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeadSamplingOverride {
    /// Sampler name, as in `OTEL_TRACES_SAMPLER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // A plain enum schema: a `null` among enum values is rejected by the API server.
    #[schemars(with = "Sampler")]
    pub sampler: Option<Sampler>,
    /// Fraction of traces kept by the ratio samplers (0..1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub ratio: Option<f64>,
}

/// Per-service head sampling changes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerServiceSampling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<HeadSamplingOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing: Option<HeadSamplingOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<HeadSamplingOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analytics: Option<HeadSamplingOverride>,
}

impl SamplingSpec {
    /// The strategies Jaeger serves: the lab's, or the defaults.
    pub fn remote_strategies(&self) -> RemoteSampling {
        self.remote.clone().unwrap_or_default()
    }

    /// The sampler one role runs with: the lab-wide one changed by the role's override.
    pub fn for_role(&self, role: Role) -> HeadSampling {
        let o = match role {
            Role::Api => &self.per_service.api,
            Role::Processing => &self.per_service.processing,
            Role::Notification => &self.per_service.notification,
            Role::Analytics => &self.per_service.analytics,
        };
        let o = o.clone().unwrap_or_default();
        HeadSampling {
            sampler: o.sampler.unwrap_or(self.head.sampler),
            ratio: o.ratio.unwrap_or(self.head.ratio),
        }
    }
}

/// Jaeger's sampling strategies (its remote sampling, from a file the operator renders): each
/// service asks for its own every `pollIntervalSeconds`, so a change applies without a restart,
/// once the kubelet has updated Jaeger's copy (up to about a minute).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteSampling {
    /// Fraction of the traces kept (0..1) for services and operations no rule below names.
    #[serde(default = "default_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub default_ratio: f64,
    /// Strategies per service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["service"]))]
    pub services: Vec<ServiceStrategy>,
    /// Seconds between two requests of a service for its strategy.
    #[serde(default = "default_poll_interval_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub poll_interval_seconds: i64,
}

fn default_poll_interval_seconds() -> i64 {
    10
}

impl Default for RemoteSampling {
    fn default() -> Self {
        Self {
            default_ratio: default_ratio(),
            services: Vec::new(),
            poll_interval_seconds: default_poll_interval_seconds(),
        }
    }
}

/// One service's strategy: a ratio, with ratios per operation. It decides where a trace starts in
/// that service; a span with a parent follows its parent under `parentbased_jaeger_remote`.
/// (Jaeger's rate limiting strategy is not offered: the services' SDK adds to its bucket only
/// when a whole second has passed since its last decision, so once its first 100 traces are
/// spent, above one new trace a second it keeps none.)
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStrategy {
    /// The service (`service.name`).
    #[schemars(transform = traced_service_name)]
    pub service: String,
    /// Fraction of its traces kept (0..1), for operations not named below; `defaultRatio` when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub ratio: Option<f64>,
    /// Fractions per operation: the name of the span a trace starts with in this service, such
    /// as the api's `create_order` (POST /order) and `get_order` (GET /order/{id}), or the load
    /// generator's `POST`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["operation"]))]
    pub operations: Vec<OperationStrategy>,
}

/// The fraction of one operation's traces kept.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct OperationStrategy {
    /// The span name.
    #[schemars(length(min = 1, max = 128))]
    pub operation: String,
    /// Fraction of its traces kept (0..1).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub ratio: f64,
}

/// Tail sampling: a trace is kept by the first rule that keeps it, tried in the order of the
/// fields below.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!self.enabled || self.keepErrors || self.latencyThresholdMs > 0 || (has(self.keepAttributes) && size(self.keepAttributes) > 0) || self.percentage > 0.0 || self.spansPerSecond > 0",
    "message": "enabled but keeps nothing; set keepErrors, latencyThresholdMs > 0, keepAttributes, percentage > 0 or spansPerSecond > 0"
}]))]
pub struct TailSampling {
    /// Turn tail sampling on; when off the collector forwards every span it receives.
    #[serde(default)]
    pub enabled: bool,
    /// Keep every trace holding a span with status ERROR.
    #[serde(default = "yes")]
    pub keep_errors: bool,
    /// Keep every trace longer than this many milliseconds; 0 turns the rule off.
    #[serde(default = "default_latency_threshold_ms")]
    #[schemars(range(min = 0, max = 600000))]
    pub latency_threshold_ms: i64,
    /// Keep every trace with a span whose string attribute `key` has one of `values`, such as
    /// every order of one customer tier (`customer.tier`, carried as baggage onto every span).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["key"]))]
    pub keep_attributes: Vec<AttributeMatch>,
    /// Percentage (0..100) of the remaining traces kept at random.
    #[serde(default = "default_percentage")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percentage: f64,
    /// A budget for the remaining traces: this many of their spans kept per second on average.
    /// The services export every 5 s, so the Collector keeps up to 5 s worth at once (a trace of
    /// more spans than that never fits); 0 turns the rule off.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000000))]
    pub spans_per_second: i64,
    /// Seconds the collector waits after a trace's first span before deciding; traces that cross
    /// slow consumers need more.
    #[serde(default = "default_decision_wait_seconds")]
    #[schemars(range(min = 1, max = 300))]
    pub decision_wait_seconds: i64,
}

/// A string attribute and the values that keep a trace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct AttributeMatch {
    /// The attribute's key, as on the spans (resource attributes count too).
    #[schemars(length(min = 1, max = 128))]
    pub key: String,
    /// Values that keep the trace; matched exactly.
    #[schemars(length(min = 1, max = 16), inner(length(max = 128)))]
    pub values: Vec<String>,
}

fn yes() -> bool {
    true
}
fn default_latency_threshold_ms() -> i64 {
    1000
}
fn default_percentage() -> f64 {
    10.0
}
fn default_decision_wait_seconds() -> i64 {
    30
}

impl Default for TailSampling {
    fn default() -> Self {
        Self {
            enabled: false,
            keep_errors: true,
            latency_threshold_ms: default_latency_threshold_ms(),
            keep_attributes: Vec::new(),
            percentage: default_percentage(),
            spans_per_second: 0,
            decision_wait_seconds: default_decision_wait_seconds(),
        }
    }
}

/// The load generator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadGeneratorSpec {
    /// Run the load generator.
    #[serde(default)]
    pub enabled: bool,
    /// Orders per second it posts to the api service.
    #[serde(default = "default_orders_per_second")]
    #[schemars(range(min = 0.01, max = 10000.0))]
    pub orders_per_second: f64,
    /// Container resources; defaults to requests 50m CPU / 32Mi, limits 500m / 128Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = resource_requirements)]
    pub resources: Option<ResourceRequirements>,
}

fn default_orders_per_second() -> f64 {
    tracing_lab_config::LoadgenSettings::default().orders_per_second
}

impl Default for LoadGeneratorSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            orders_per_second: default_orders_per_second(),
            resources: None,
        }
    }
}

/// How students reach the lab from outside the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessSpec {
    /// Expose the api and the Jaeger UI on these node ports. Unset: ClusterIP only, so several labs
    /// can share a cluster (use `kubectl port-forward`). Node ports are cluster-wide: one lab each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_ports: Option<NodePorts>,
}

/// Node ports; the kind cluster maps 30080 to localhost:8080 and 30686 to localhost:16686.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.api != self.jaegerUi",
    "fieldPath": ".jaegerUi",
    "message": "api and jaegerUi must differ"
}]))]
pub struct NodePorts {
    /// Node port of the api service.
    #[serde(default = "default_api_node_port")]
    #[schemars(range(min = 30000, max = 32767))]
    pub api: i32,
    /// Node port of the Jaeger UI.
    #[serde(default = "default_jaeger_ui_node_port")]
    #[schemars(range(min = 30000, max = 32767))]
    pub jaeger_ui: i32,
}

fn default_api_node_port() -> i32 {
    30080
}
fn default_jaeger_ui_node_port() -> i32 {
    30686
}

impl Default for NodePorts {
    fn default() -> Self {
        Self {
            api: default_api_node_port(),
            jaeger_ui: default_jaeger_ui_node_port(),
        }
    }
}

/// Kafka's JVM heap (fixed size): a memory limit below it kills the broker as it starts.
pub const KAFKA_HEAP_MIB: u32 = 512;
/// Jaeger's default memory limit: `maxTraces` of the lab's traces must fit under it.
pub const JAEGER_MEMORY_LIMIT: &str = "1Gi";
/// What one order's trace (17 or 18 spans with their workload, resource and database attributes)
/// adds to Jaeger's working set, garbage collector headroom included: 606 traces took 26 MiB in
/// the footprint benchmark (`tests/benches/footprint.rs`), about 44 KiB each.
pub const JAEGER_TRACE_KIB: i64 = 46;
/// Most entries in `requests` or `limits`; bounds what the API server's rules cost to evaluate.
const MAX_RESOURCE_NAMES: u32 = 16;

/// CEL: the quantity in string `a` is above the one in `b`. `isQuantity` first, as the API server
/// evaluates the rules even when a pattern already failed (and then says so once, by the pattern).
fn exceeds(a: &str, b: &str) -> String {
    format!("isQuantity({a}) && isQuantity({b}) && quantity({a}).isGreaterThan(quantity({b}))")
}

/// A name of a service the lab runs: the four roles and the load generator.
fn traced_service_name(schema: &mut schemars::Schema) {
    let names: Vec<&str> = Role::ALL
        .iter()
        .map(|role| role.name())
        .chain([contract::LOADGEN])
        .collect();
    schema.insert("enum".into(), serde_json::json!(names));
}

/// Strategies no service asks for would be a setting that silently does nothing.
fn remote_needs_a_remote_sampler(schema: &mut schemars::Schema) {
    let remote = |sampler: &str| format!("{sampler}.endsWith('jaeger_remote')");
    let per_service: Vec<String> = Role::ALL
        .iter()
        .map(|role| {
            let o = format!("self.perService.{}", role.name());
            format!(
                "(has({o}) && has({o}.sampler) && {})",
                remote(&format!("{o}.sampler"))
            )
        })
        .collect();
    validation(
        schema,
        serde_json::json!({
            "rule": format!(
                "!has(self.remote) || {} || (has(self.perService) && ({}))",
                remote("self.head.sampler"),
                per_service.join(" || ")
            ),
            "message": "remote strategies are served only to services whose sampler is jaeger_remote or parentbased_jaeger_remote; set head.sampler or a perService sampler to one of them",
        }),
    );
}

/// Adds a CEL rule the API server checks as the lab is applied.
fn validation(schema: &mut schemars::Schema, rule: serde_json::Value) {
    let rules = schema
        .ensure_object()
        .entry("x-kubernetes-validations")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    rules.as_array_mut().expect("a list of rules").push(rule);
}

/// Refuses at apply what no pod could be created with: negative or malformed quantities, and a
/// request above its limit. The API server's message names the field.
fn resource_requirements(schema: &mut schemars::Schema) {
    for map in ["requests", "limits"] {
        let quantities: &mut schemars::Schema = schema
            .pointer_mut(&format!("/properties/{map}"))
            .and_then(|q| q.try_into().ok())
            .expect("ResourceRequirements maps quantities");
        quantities.insert("maxProperties".into(), MAX_RESOURCE_NAMES.into());
        let quantity = quantities
            .get_mut("additionalProperties")
            .and_then(|q| q.try_into().ok())
            .expect("a quantity");
        non_negative_quantity(quantity);
    }
    let exceeds = exceeds("string(self.requests[name])", "string(self.limits[name])");
    validation(
        schema,
        serde_json::json!({
            "rule": format!("!has(self.requests) || !has(self.limits) || self.requests.all(name, !(name in self.limits && {exceeds}))"),
            "fieldPath": ".requests",
            "message": "a request cannot exceed its limit",
        }),
    );
}

/// Kafka's resources, whose memory limit must hold the broker's heap.
fn kafka_resources(schema: &mut schemars::Schema) {
    resource_requirements(schema);
    validation(
        schema,
        serde_json::json!({
            "rule": format!("!has(self.limits) || !('memory' in self.limits && {})", exceeds(&format!("'{KAFKA_HEAP_MIB}Mi'"), "string(self.limits['memory'])")),
            "fieldPath": ".limits['memory']",
            "message": format!("the memory limit is below Kafka's {KAFKA_HEAP_MIB}Mi heap, so the broker would be OOM-killed as it starts; give it more (the default limit is 1Gi)"),
        }),
    );
}

/// `maxTraces` of the lab's traces must fit in Jaeger's memory limit, or Jaeger is OOM-killed
/// hours into a workshop, losing every trace.
fn jaeger_traces_fit(schema: &mut schemars::Schema) {
    let set = "string(self.resources.limits['memory'])";
    let limit = format!(
        "has(self.resources) && has(self.resources.limits) && 'memory' in self.resources.limits && isQuantity({set}) \
         ? quantity({set}) : quantity('{JAEGER_MEMORY_LIMIT}')"
    );
    let kib = JAEGER_TRACE_KIB;
    validation(
        schema,
        serde_json::json!({
            "rule": format!("double(self.maxTraces) * {}.0 <= ({limit}).asApproximateFloat()", kib * 1024),
            "fieldPath": ".maxTraces",
            "message": format!("each trace takes about {kib} KiB in Jaeger, so maxTraces × {kib} KiB must fit in its memory limit ({JAEGER_MEMORY_LIMIT} unless resources.limits.memory is set); lower maxTraces or raise the limit"),
        }),
    );
}

/// A non-negative quantity that is never `null`. kube marks every int-or-string field that is not
/// required nullable, and the API server would store a `null` that the operator cannot read; not
/// nullable, the API server drops the `null` and fills in the default.
fn defaulted_quantity(schema: &mut schemars::Schema) {
    non_negative_quantity(schema);
    schema.insert("nullable".into(), false.into());
}

fn non_negative_quantity(schema: &mut schemars::Schema) {
    schema.insert(
        "pattern".into(),
        crate::quantity::NON_NEGATIVE_PATTERN.into(),
    );
    schema.insert("minimum".into(), 0.into());
    // Bounds what the API server's rules cost to evaluate on it; a quantity is a few characters.
    schema.insert("maxLength".into(), 64.into());
}

/// What the operator observed when it last reconciled the lab.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TracingLabStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded` (written by the reconciler) and `KafkaReachable`
    /// (written by the lag monitor), one per type.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Readiness of every workload of the lab, by component name.
    #[serde(default)]
    pub components: BTreeMap<String, ComponentStatus>,
    /// Available service Deployments out of the four, e.g. `4/4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services_ready: Option<String>,
    /// Where to reach the lab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<LabUrls>,
    /// Kafka consumer lag per group, measured every few seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaStatus>,
}

/// Kafka consumer lag of the lab, measured by the operator on a short period.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaStatus {
    /// When the broker was last measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_at: Option<Time>,
    /// Messages waiting, summed over the three consumer groups.
    pub total_lag: i64,
    /// The group with the most messages waiting (empty when nothing waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_group: Option<String>,
    /// Orders entering the lab (`orders` topic) per second over the last period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders_per_second: Option<f64>,
    /// Per consumer group, in pipeline order.
    #[serde(default)]
    pub groups: Vec<GroupLag>,
}

/// One consumer group's backlog and what scaling can do about it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupLag {
    /// Consumer group (named after the service).
    pub group: String,
    /// Topic the group consumes.
    pub topic: String,
    /// Partitions of the topic: the most consumers that can get work.
    pub partitions: i32,
    /// Sum over partitions of end offset minus committed offset.
    pub lag: i64,
    /// Consumers currently in the group.
    pub consumers: i32,
    /// Consumers the group assigned no partition of the topic.
    pub idle_consumers: i32,
    /// Growing, Draining or Steady since the previous measurement.
    pub trend: Trend,
    /// What the numbers mean for scaling.
    pub advice: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Trend {
    Growing,
    Draining,
    #[default]
    Steady,
}

/// Readiness of one Deployment or StatefulSet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// `Deployment` or `StatefulSet`.
    pub kind: String,
    /// Name of the workload object.
    pub name: String,
    /// Replicas wanted (the object's `spec.replicas`).
    pub desired: i32,
    /// Replicas ready.
    pub ready: i32,
    /// True when the workload is fully rolled out and every replica is available.
    pub available: bool,
    /// Why the component is not available, when the cluster says: `OOMKilled`, `CrashLoopBackOff`,
    /// `ImagePullBackOff`, `ErrImagePull`, `Unschedulable`, `FailedCreate`, `ReadinessProbeFailed`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The reason in words, e.g. `OOMKilled (exit 137), 3 restarts`; see docs/troubleshooting.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Addresses of the lab.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabUrls {
    /// The api inside the cluster (`POST /order`).
    pub api: String,
    /// The Jaeger UI inside the cluster.
    pub jaeger_ui: String,
    /// OTLP/gRPC endpoint of the lab's collector.
    pub otlp: String,
    /// Kafka bootstrap address.
    pub kafka: String,
    /// The api through its node port, when node ports are enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_node_port: Option<String>,
    /// The Jaeger UI through its node port, when node ports are enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jaeger_ui_node_port: Option<String>,
    /// Where a student opens the api from their machine: `http://localhost:8080` when the lab has
    /// the node port `kind-config.yaml` maps there (30080), the node port on a node's address when
    /// it has another, and the `kubectl port-forward` to run when it has none.
    #[serde(default)]
    pub api_local: String,
    /// The same for the Jaeger UI: `http://localhost:16686` through node port 30686.
    #[serde(default)]
    pub jaeger_ui_local: String,
}

/// The CRD as YAML, exactly what `crds/tracinglab.yaml` holds.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = TracingLab::crd();
    serde_saphyr::to_string(&crd).expect("the CRD always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_overrides_reach_the_document() {
        let spec: TracingLabSpec = serde_json::from_str(
            r#"{"services": {"processing": {"concurrency": 4, "faults": {"errorRate": 0.2}}},
                "loadGenerator": {"ordersPerSecond": 7.5},
                "resourceSampling": {"intervalMs": 50}}"#,
        )
        .unwrap();
        let config = spec.lab_config();
        assert_eq!(config.processing.concurrency, 4);
        assert_eq!(config.processing.faults.error_rate, 0.2);
        assert_eq!(
            config.processing.workload,
            Role::Processing.defaults().workload
        );
        assert_eq!(config.loadgen.orders_per_second, 7.5);
        assert_eq!(config.resource_sampling.interval_ms, 50);
    }

    #[test]
    fn checked_in_crd_matches_the_types() {
        let checked_in = include_str!("../../crds/tracinglab.yaml");
        assert!(
            checked_in == crd_yaml(),
            "crds/tracinglab.yaml is stale: run `cargo run -p tracing-lab-operator -- crd > crds/tracinglab.yaml`"
        );
    }

    #[test]
    fn every_nullable_field_of_the_spec_reads_null_as_unset() {
        // The API server stores a `null` where the schema allows one, and the operator must read it.
        fn nullable_paths(schema: &serde_json::Value, path: &[String], out: &mut Vec<Vec<String>>) {
            let properties = schema["properties"].as_object().into_iter().flatten();
            for (name, property) in properties {
                let mut path = path.to_vec();
                path.push(name.clone());
                if property["nullable"] == true {
                    out.push(path.clone());
                }
                nullable_paths(property, &path, out);
            }
        }
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(TracingLab::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let mut paths = Vec::new();
        nullable_paths(spec, &[], &mut paths);
        assert!(paths.len() > 10, "{paths:?}");
        for path in paths {
            let spec = path.iter().rev().fold(
                serde_json::Value::Null,
                |inner, name| serde_json::json!({ name: inner }),
            );
            if let Err(e) = serde_json::from_value::<TracingLabSpec>(spec.clone()) {
                panic!("spec.{} = null: {e} ({spec})", path.join("."));
            }
        }
    }

    #[test]
    fn empty_spec_is_a_complete_lab() {
        let spec: TracingLabSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec.kafka.partitions, 6);
        assert_eq!(spec.kafka.storage.type_, StorageType::EmptyDir);
        assert_eq!(spec.jaeger.max_traces, 20_000);
        assert!(!spec.load_generator.enabled);
        assert!(spec.access.node_ports.is_none());
        assert_eq!(spec.sampling.head.sampler, Sampler::ParentBasedAlwaysOn);
    }

    #[test]
    fn per_service_sampling_overrides_only_what_it_names() {
        let spec: TracingLabSpec = serde_json::from_str(
            r#"{"sampling": {"head": {"sampler": "parentbased_traceidratio", "ratio": 0.5},
                "perService": {"processing": {"ratio": 0.1}}}}"#,
        )
        .unwrap();
        let p = spec.sampling.for_role(Role::Processing);
        assert_eq!(p.sampler, Sampler::ParentBasedTraceIdRatio);
        assert_eq!(p.ratio, 0.1);
        assert_eq!(spec.sampling.for_role(Role::Api).ratio, 0.5);
    }

    #[test]
    fn service_overrides_sit_beside_replicas() {
        let spec: TracingLabSpec = serde_json::from_str(
            r#"{"services": {"processing": {"replicas": 2, "concurrency": 3}}}"#,
        )
        .unwrap();
        assert_eq!(spec.services.processing.replicas, Some(2));
        assert_eq!(spec.services.processing.overrides.concurrency, Some(3));
    }
}
