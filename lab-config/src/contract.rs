//! The contract between the operator, which renders each service's container, and the services,
//! which read it: every name and number both sides use. Renaming one changes both sides at once,
//! and a broken invariant fails the build.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The environment of a service container.
pub mod env {
    /// Kafka's bootstrap servers, `host:port[,host:port…]`.
    pub const KAFKA_BOOTSTRAP_SERVERS: &str = "KAFKA_BOOTSTRAP_SERVERS";
    /// Partitions of the topics the services create (the lab's `spec.kafka.partitions`).
    pub const KAFKA_TOPIC_PARTITIONS: &str = "KAFKA_TOPIC_PARTITIONS";
    /// `redis://host:port`.
    pub const REDIS_URL: &str = "REDIS_URL";
    /// `ip:port` of the HTTP server (orders, probes, metrics).
    pub const LISTEN_ADDR: &str = "LISTEN_ADDR";
    /// Where IO workloads write their files.
    pub const TMPDIR: &str = "TMPDIR";
    /// Path of the lab configuration document ([`crate::LabConfig`]).
    pub const LAB_CONFIG: &str = "LAB_CONFIG";
    /// The api's URL, for the load generator.
    pub const LOADGEN_TARGET_URL: &str = "LOADGEN_TARGET_URL";
    /// The quote server's URL, for the quote client (see [`crate::quote`]).
    pub const QUOTE_URL: &str = "QUOTE_URL";
    /// How long work in flight may finish after SIGTERM, in milliseconds.
    pub const SHUTDOWN_DRAIN_MS: &str = "SHUTDOWN_DRAIN_MS";
    /// The pod's name and namespace (downward API), for the resource attributes.
    pub const POD_NAME: &str = "POD_NAME";
    pub const POD_NAMESPACE: &str = "POD_NAMESPACE";
    /// The standard OpenTelemetry SDK variables the operator sets.
    pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
    pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
    pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
    /// A [`Sampler`](super::Sampler) name.
    pub const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
    /// The ratio of the ratio samplers, 0.0 to 1.0; for the Jaeger remote samplers,
    /// `endpoint=URL,pollingIntervalMs=N,initialSamplingRate=R` (see [`super::JaegerRemoteArg`]).
    pub const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
    /// Milliseconds between two exports of the batch span processor.
    pub const OTEL_BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
}

/// How often each service exports its spans (the SDK's default, rendered as
/// `OTEL_BSP_SCHEDULE_DELAY`): spans reach the Collector in bursts this far apart, and its tail
/// sampling budget saves up this long so that a burst can spend what the seconds between earned.
pub const SPAN_EXPORT_INTERVAL: Duration = Duration::from_secs(5);

/// The port of every service's HTTP server.
pub const PORT: u16 = 8080;
/// Liveness: the process answers.
pub const HEALTH_PATH: &str = "/health";
/// Readiness: the service's dependencies answer (the load generator has none to wait for).
pub const READY_PATH: &str = "/ready";
/// Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";

/// The load generator's name: its subcommand, its `service.name` and its Deployment's suffix.
pub const LOADGEN: &str = "loadgen";

/// The api's answer to `GET /order/{id}`: an order looked up, a second kind of request that
/// starts its own traces (sampled per operation by the Jaeger remote sampler).
pub const ORDER_LOOKUP_SPAN: &str = "get_order";
/// Its route, as `http.route` names it.
pub const ORDER_LOOKUP_ROUTE: &str = "/order/{id}";

/// The span `faults.extraLatencyMs` adds to each order, so that the delay shows as such.
pub const INJECTED_LATENCY_SPAN: &str = "injected_latency";
/// The `exception.type` of a failure `faults.errorRate` injects.
pub const INJECTED_FAULT: &str = "InjectedFault";

/// Partitions of each topic the services create, unless the lab says otherwise.
pub const DEFAULT_TOPIC_PARTITIONS: i32 = 6;

/// How long a stopping service lets its work in flight finish before cancelling it.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// After the drain: the final offset commit and the last spans' export.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// The pod's `terminationGracePeriodSeconds`: the kubelet's SIGKILL comes this long after SIGTERM.
pub const TERMINATION_GRACE_SECONDS: i64 = 30;
const _: () = assert!(
    DRAIN_TIMEOUT.as_secs() + FLUSH_TIMEOUT.as_secs() < TERMINATION_GRACE_SECONDS as u64,
    "a service must drain and flush before the kubelet kills it"
);

/// The standard OpenTelemetry SDK samplers, by their `OTEL_TRACES_SAMPLER` names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Sampler {
    #[serde(rename = "always_on")]
    AlwaysOn,
    #[serde(rename = "always_off")]
    AlwaysOff,
    #[serde(rename = "traceidratio")]
    TraceIdRatio,
    #[default]
    #[serde(rename = "parentbased_always_on")]
    ParentBasedAlwaysOn,
    #[serde(rename = "parentbased_always_off")]
    ParentBasedAlwaysOff,
    #[serde(rename = "parentbased_traceidratio")]
    ParentBasedTraceIdRatio,
    /// The strategy Jaeger serves for the service (per service, per operation), asked for again
    /// at an interval, so that it changes without a restart.
    #[serde(rename = "jaeger_remote")]
    JaegerRemote,
    #[serde(rename = "parentbased_jaeger_remote")]
    ParentBasedJaegerRemote,
}

impl Sampler {
    pub const ALL: [Sampler; 8] = [
        Self::AlwaysOn,
        Self::AlwaysOff,
        Self::TraceIdRatio,
        Self::ParentBasedAlwaysOn,
        Self::ParentBasedAlwaysOff,
        Self::ParentBasedTraceIdRatio,
        Self::JaegerRemote,
        Self::ParentBasedJaegerRemote,
    ];

    /// The `OTEL_TRACES_SAMPLER` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlwaysOn => "always_on",
            Self::AlwaysOff => "always_off",
            Self::TraceIdRatio => "traceidratio",
            Self::ParentBasedAlwaysOn => "parentbased_always_on",
            Self::ParentBasedAlwaysOff => "parentbased_always_off",
            Self::ParentBasedTraceIdRatio => "parentbased_traceidratio",
            Self::JaegerRemote => "jaeger_remote",
            Self::ParentBasedJaegerRemote => "parentbased_jaeger_remote",
        }
    }

    /// Whether the sampler asks Jaeger for its strategy.
    pub fn is_remote(self) -> bool {
        matches!(self, Self::JaegerRemote | Self::ParentBasedJaegerRemote)
    }

    /// The sampler named `name` (an `OTEL_TRACES_SAMPLER` value).
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// The argument of the Jaeger remote samplers, in the specification's form:
/// `endpoint=URL,pollingIntervalMs=N,initialSamplingRate=R`. The operator renders it, the
/// services parse it; the specification's gRPC default endpoint is not spoken here, so the
/// endpoint (Jaeger's HTTP `/sampling`) must be given.
#[derive(Clone, Debug, PartialEq)]
pub struct JaegerRemoteArg {
    pub endpoint: String,
    /// How often the service asks for its strategy again.
    pub polling_interval: Duration,
    /// The ratio used until the first answer arrives (and while none can be had).
    pub initial_sampling_rate: f64,
}

impl JaegerRemoteArg {
    /// The specification's defaults for the optional keys.
    pub const DEFAULT_POLLING_INTERVAL: Duration = Duration::from_secs(60);
    pub const DEFAULT_INITIAL_SAMPLING_RATE: f64 = 0.001;

    /// Parses the argument; the error says what is wrong, for a message naming the variable.
    pub fn parse(arg: &str) -> Result<Self, String> {
        let (mut endpoint, mut polling_interval, mut initial_sampling_rate) = (None, None, None);
        for pair in arg.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(format!("{pair:?} is not of the form key=value"));
            };
            let value = value.trim();
            match key.trim() {
                "endpoint" if value.starts_with("http://") || value.starts_with("https://") => {
                    endpoint = Some(value.to_owned());
                }
                "endpoint" => return Err(format!("endpoint {value:?} is not an http(s) URL")),
                "pollingIntervalMs" => match value.parse::<u64>() {
                    Ok(ms) if ms > 0 => polling_interval = Some(Duration::from_millis(ms)),
                    _ => {
                        return Err(format!(
                            "pollingIntervalMs {value:?} is not a positive integer"
                        ));
                    }
                },
                "initialSamplingRate" => match value.parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => initial_sampling_rate = Some(r),
                    _ => {
                        return Err(format!(
                            "initialSamplingRate {value:?} is not between 0.0 and 1.0"
                        ));
                    }
                },
                other => {
                    return Err(format!(
                        "unknown key {other:?}; the keys are endpoint, pollingIntervalMs and initialSamplingRate"
                    ));
                }
            }
        }
        Ok(Self {
            endpoint: endpoint.ok_or("endpoint=URL of Jaeger's /sampling is required")?,
            polling_interval: polling_interval.unwrap_or(Self::DEFAULT_POLLING_INTERVAL),
            initial_sampling_rate: initial_sampling_rate
                .unwrap_or(Self::DEFAULT_INITIAL_SAMPLING_RATE),
        })
    }
}

impl std::fmt::Display for JaegerRemoteArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "endpoint={},pollingIntervalMs={},initialSamplingRate={}",
            self.endpoint,
            self.polling_interval.as_millis(),
            self.initial_sampling_rate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sampler_name_is_its_serialised_form() {
        for sampler in Sampler::ALL {
            assert_eq!(
                serde_json::to_value(sampler).unwrap(),
                sampler.as_str(),
                "{sampler:?}"
            );
            assert_eq!(Sampler::named(sampler.as_str()), Some(sampler));
        }
        assert_eq!(Sampler::named("sometimes"), None);
        assert!(Sampler::ParentBasedJaegerRemote.is_remote());
        assert!(!Sampler::ParentBasedTraceIdRatio.is_remote());
    }

    #[test]
    fn the_jaeger_remote_argument_reads_what_it_writes_and_names_what_is_wrong() {
        let arg = JaegerRemoteArg {
            endpoint: "http://lab-jaeger-sampling:5778/sampling".into(),
            polling_interval: Duration::from_secs(10),
            initial_sampling_rate: 0.5,
        };
        assert_eq!(
            arg.to_string(),
            "endpoint=http://lab-jaeger-sampling:5778/sampling,pollingIntervalMs=10000,initialSamplingRate=0.5"
        );
        assert_eq!(JaegerRemoteArg::parse(&arg.to_string()), Ok(arg));
        let defaults = JaegerRemoteArg::parse(" endpoint = http://j:5778/sampling ").unwrap();
        assert_eq!(
            defaults.polling_interval,
            JaegerRemoteArg::DEFAULT_POLLING_INTERVAL
        );
        assert_eq!(defaults.initial_sampling_rate, 0.001);
        for (bad, says) in [
            ("", "endpoint=URL"),
            ("pollingIntervalMs=5000", "endpoint=URL"),
            ("endpoint=j:5778", "not an http(s) URL"),
            ("endpoint=http://j,pollingIntervalMs=0", "pollingIntervalMs"),
            (
                "endpoint=http://j,initialSamplingRate=2",
                "initialSamplingRate",
            ),
            ("endpoint=http://j,rate", "key=value"),
            (
                "endpoint=http://j,poolingIntervalMs=5",
                "unknown key \"poolingIntervalMs\"",
            ),
        ] {
            let err = JaegerRemoteArg::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }
}
