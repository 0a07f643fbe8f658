//! Logs and traces for the TracingLab binaries, configured by the standard variables.
//!
//! [`init`] installs, for the whole process:
//! - JSON log lines on stdout (level from `RUST_LOG`, default `info`), each carrying the
//!   `trace_id` and `span_id` of the current span: the current OpenTelemetry context's, or else
//!   the current `tracing` span's;
//! - a tracer provider built from `OTEL_SDK_DISABLED`, `OTEL_SERVICE_NAME`,
//!   `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_ENDPOINT` (unset: no exporter, spans still get
//!   ids for the logs), `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc` | `http/protobuf`),
//!   `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (the Jaeger remote samplers too, over
//!   HTTP), exporting through a batch span processor
//!   (tuned by the standard `OTEL_BSP_*` variables). Invalid values are errors naming the variable;
//! - the W3C TraceContext + Baggage propagator as the global propagator, and the [`baggage`]
//!   entries the lab allows set on every span started in their context.
//!
//! Spans the exporter could not deliver (the Collector unreachable) are dropped, not retried,
//! so that an outage costs no memory; [`spans_dropped`] counts them.
//!
//! Spans come two ways: `tracing` spans at level INFO or above become OpenTelemetry spans
//! (convenient, as `#[instrument]`), and spans started on the OpenTelemetry API with
//! `global::tracer(INSTRUMENTATION_SCOPE)` (cheaper where spans are many: no bridge work, and
//! nothing for unsampled ones). Log events do not become span events.
//!
//! With the `grpc` protocol, call [`init`] inside a Tokio runtime: the gRPC client lives on it.
//! Call [`TelemetryGuard::shutdown`] (or drop the guard) before the runtime stops, from a thread
//! that may block (e.g. `tokio::task::spawn_blocking`), so the last spans are exported.

pub mod baggage;
mod logs;
mod processor;
mod remote_sampling;
mod settings;

pub use settings::{Protocol, SamplerSetting, SettingError, TelemetrySettings};

use anyhow::Context as _;
use opentelemetry::global;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tracing::Level;
use tracing_lab_config::contract::JaegerRemoteArg;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Name of the instrumentation scope of every span the binaries create.
pub const INSTRUMENTATION_SCOPE: &str = "tracing-lab";

/// How long shutdown waits for the last spans to be exported.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the remote sampler waits for Jaeger's answer before it tries again at its interval.
const STRATEGY_TIMEOUT: Duration = Duration::from_secs(5);

static SPANS_DROPPED: AtomicU64 = AtomicU64::new(0);
pub(crate) static SPANS_RECORDED: AtomicU64 = AtomicU64::new(0);

/// How many spans this process failed to export so far.
pub fn spans_dropped() -> u64 {
    SPANS_DROPPED.load(Ordering::Relaxed)
}

/// How many spans this process recorded so far: the sampled ones, each handed to the exporter.
/// What tracing costs grows with it; an unsampled span is never recorded.
pub fn spans_recorded() -> u64 {
    SPANS_RECORDED.load(Ordering::Relaxed)
}

/// Counts the spans of every batch its exporter fails to deliver.
#[derive(Debug)]
struct CountingExporter(SpanExporter);

impl opentelemetry_sdk::trace::SpanExporter for CountingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.0.export(batch).await;
        if result.is_err() {
            SPANS_DROPPED.fetch_add(spans, Ordering::Relaxed);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// Keeps the tracer provider alive; flushes and shuts it down on [`shutdown`](Self::shutdown) or drop.
#[must_use = "dropping the guard shuts tracing down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are recorded at all (`false` when `OTEL_SDK_DISABLED=true`).
    pub fn tracing_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is buffered and stops the provider. Blocks up to a few seconds.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        match self.provider.take() {
            None => Ok(()),
            Some(provider) => provider
                .shutdown_with_timeout(SHUTDOWN_TIMEOUT)
                .context("flushing spans at shutdown"),
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("{e:#}");
        }
    }
}

/// Installs logging and tracing for this process; see the crate documentation.
/// `default_service_name` is the service name when the environment gives none.
pub fn init(default_service_name: &str) -> anyhow::Result<TelemetryGuard> {
    let settings =
        TelemetrySettings::from_lookup(default_service_name, |name| std::env::var(name).ok())?;
    let log_filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .with_context(|| format!("RUST_LOG={directives:?} is invalid"))?,
        _ => EnvFilter::new("info"),
    };
    let provider = if settings.sdk_disabled {
        None
    } else {
        Some(tracer_provider(&settings)?)
    };

    let span_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(INSTRUMENTATION_SCOPE))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            // Entering a span would also attach its OTel context, on every poll of an
            // instrumented future; nothing here reads the ambient context (`span.context()` is
            // used explicitly), so that cost is skipped.
            .with_context_activation(false)
            .with_filter(filter_fn(|meta| {
                meta.is_span() && *meta.level() <= Level::INFO
            }))
    });
    let log_layer = tracing_subscriber::fmt::layer()
        .event_format(logs::JsonWithTraceIds)
        .with_writer(std::io::stdout)
        .with_filter(log_filter);
    tracing_subscriber::registry()
        .with(span_layer)
        .with(log_layer)
        .try_init()
        .context("a global tracing subscriber is already installed")?;

    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    if let Some(provider) = &provider {
        global::set_tracer_provider(provider.clone());
    }
    Ok(TelemetryGuard { provider })
}

fn tracer_provider(settings: &TelemetrySettings) -> anyhow::Result<SdkTracerProvider> {
    let mut resource = Resource::builder();
    if let Some(name) = &settings.fallback_service_name {
        resource = resource.with_service_name(name.clone());
    }
    let export = match settings.exporter {
        Some(protocol) => {
            Some(BatchSpanProcessor::builder(CountingExporter(span_exporter(protocol)?)).build())
        }
        None => None,
    };
    let resource = resource.build();
    let sampler = match &settings.sampler {
        SamplerSetting::Local(sampler) => sampler.clone(),
        SamplerSetting::JaegerRemote { parent_based, arg } => {
            let served = remote_sampling::Served::default();
            let remote = jaeger_remote_sampler(&resource, arg, served.clone())?;
            let sampler = if *parent_based {
                Sampler::ParentBased(Box::new(remote))
            } else {
                remote
            };
            return Ok(provider(
                resource,
                remote_sampling::Reporting {
                    sampler,
                    served,
                    initial: arg.initial_sampling_rate,
                },
                export,
            ));
        }
    };
    Ok(provider(resource, sampler, export))
}

fn provider(
    resource: Resource,
    sampler: impl opentelemetry_sdk::trace::ShouldSample + 'static,
    export: Option<BatchSpanProcessor>,
) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(sampler)
        .with_span_processor(processor::LabSpans { export })
        .build()
}

/// Jaeger's remote sampler for this service: the initial rate decides until Jaeger has first
/// answered, its last answer after that.
fn jaeger_remote_sampler(
    resource: &Resource,
    arg: &JaegerRemoteArg,
    served: remote_sampling::Served,
) -> anyhow::Result<Sampler> {
    tokio::runtime::Handle::try_current().map_err(|_| {
        anyhow::anyhow!("the Jaeger remote sampler needs telemetry to start inside a Tokio runtime")
    })?;
    let service = resource
        .get(&opentelemetry::Key::new(
            opentelemetry_semantic_conventions::resource::SERVICE_NAME,
        ))
        .map(|name| name.to_string())
        .context("the Jaeger remote sampler needs the service's name")?;
    let client = reqwest::Client::builder()
        .timeout(STRATEGY_TIMEOUT)
        .build()
        .context("building the remote sampler's HTTP client")?;
    Sampler::jaeger_remote(
        opentelemetry_sdk::runtime::Tokio,
        remote_sampling::JaegerStrategies::new(client, served),
        Sampler::TraceIdRatioBased(arg.initial_sampling_rate),
        service,
    )
    .with_endpoint(arg.endpoint.clone())
    .with_update_interval(arg.polling_interval)
    .build()
    .with_context(|| format!("building the Jaeger remote sampler for {}", arg.endpoint))
}

/// The exporter reads `OTEL_EXPORTER_OTLP_ENDPOINT` itself (appending `/v1/traces` for HTTP).
fn span_exporter(protocol: Protocol) -> anyhow::Result<SpanExporter> {
    let exporter = match protocol {
        Protocol::Grpc => {
            tokio::runtime::Handle::try_current().map_err(|_| {
                anyhow::anyhow!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs telemetry to start inside a Tokio runtime"
                )
            })?;
            SpanExporter::builder().with_tonic().build()
        }
        Protocol::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
    };
    exporter.context("building the OTLP span exporter from OTEL_EXPORTER_OTLP_*")
}
