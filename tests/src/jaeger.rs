//! The lab's trace backend as the operator renders it: Jaeger v2 (in-memory storage), the
//! OpenTelemetry Collector in front of it and, with span metrics on, Prometheus behind both, all
//! real programs started from their rendered Deployments and ConfigMaps, and Jaeger's query API
//! read the way a student's tools read it.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tempfile::TempDir;
use tracing_lab_operator::render::{Children, collector, jaeger, prometheus};

use crate::kubelet::{self, Loopback};
use crate::otlp::{ReceivedSpan, spans_of, summary};
use crate::{assets, poll, process::ChildProcess};

const POLL: Duration = Duration::from_millis(500);
/// How many traces one search returns at most.
const SEARCH_LIMIT: usize = 1000;

/// Jaeger and the Collector (and Prometheus) of one rendered lab, killed on drop.
pub struct TraceBackend {
    // Processes before folders: fields drop in order.
    collector: ChildProcess,
    jaeger: ChildProcess,
    _prometheus: Option<ChildProcess>,
    query: JaegerQuery,
    otlp: String,
    root: TempDir,
}

impl TraceBackend {
    /// Prometheus when rendered, Jaeger, then the Collector that exports to them (a collector
    /// that starts first backs off its connection for minutes).
    pub async fn start_rendered(children: &Children, loopback: &Loopback) -> Result<Self> {
        let root = tempfile::Builder::new().prefix("traces-").tempdir()?;
        let start = |component: &'static str, program: &'static str| {
            let folder = root.path().join(component);
            async move {
                let program = assets::find(program)?;
                kubelet::run(children, loopback, component, component, &program, &folder).await
            }
        };
        let prometheus = prometheus::PROMETHEUS.suffix;
        let prometheus = if children
            .workloads()
            .any(|(_, t)| kubelet::component(t) == Some(prometheus))
        {
            Some(start(prometheus, "prometheus").await?)
        } else {
            None
        };
        let jaeger = start(jaeger::JAEGER.suffix, "jaeger").await?;
        let collector = start(collector::COLLECTOR.suffix, "otelcol").await?;
        Ok(Self {
            collector,
            jaeger,
            _prometheus: prometheus,
            query: JaegerQuery::new(&format!(
                "http://{}",
                loopback.address(jaeger::JAEGER.suffix, jaeger::UI_PORT)?
            ))?,
            otlp: format!(
                "http://{}",
                loopback.address(collector::COLLECTOR.suffix, collector::OTLP_GRPC_PORT)?
            ),
            root,
        })
    }

    /// The Collector's OTLP/gRPC endpoint, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    /// Where `component` (Jaeger or the Collector) keeps its volumes, as [`kubelet::run`] made them.
    pub fn folder(&self, component: &str) -> std::path::PathBuf {
        self.root.path().join(component)
    }

    pub fn otlp_endpoint(&self) -> &str {
        &self.otlp
    }

    /// Jaeger's query API, as a student's tools read it.
    pub fn query(&self) -> &JaegerQuery {
        &self.query
    }

    pub fn jaeger_process(&mut self) -> &mut ChildProcess {
        &mut self.jaeger
    }

    pub fn collector_process(&mut self) -> &mut ChildProcess {
        &mut self.collector
    }
}

/// A metric of Jaeger's Monitor tab.
#[derive(Debug, Clone, Copy)]
pub enum Red {
    /// The duration below which `quantile` (0.95 for p95) of the spans end.
    Latency { quantile: f64 },
    /// Spans per second.
    Calls,
    /// The share of spans with an error status.
    Errors,
}

/// Jaeger's query API at one address (`/api/v3`, what the UI reads), wherever Jaeger runs.
pub struct JaegerQuery {
    url: String,
    http: reqwest::Client,
}

impl JaegerQuery {
    /// The query API at `url`, e.g. `http://127.0.0.1:16686`.
    pub fn new(url: &str) -> Result<Self> {
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    /// Jaeger's UI and query API, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The services Jaeger has traces of (`GET /api/v3/services`).
    pub async fn services(&self) -> Result<Vec<String>> {
        let body: serde_json::Value = self.get("/api/v3/services", &[]).await?.unwrap_or_default();
        Ok(body["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect())
    }

    /// Every span of trace `trace_id` (hex), empty when Jaeger has none (`GET /api/v3/traces/{id}`).
    pub async fn trace(&self, trace_id: &str) -> Result<Vec<ReceivedSpan>> {
        let body = self.get(&format!("/api/v3/traces/{trace_id}"), &[]).await?;
        body.map(result_spans)
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// The spans of the traces of `service` that started within the last `lookback`
    /// (`GET /api/v3/traces` with the service name and time range, as the UI's search).
    pub async fn find(&self, service: &str, lookback: Duration) -> Result<Vec<ReceivedSpan>> {
        let now = SystemTime::now();
        let rfc3339 = |t: SystemTime| humantime::format_rfc3339_micros(t).to_string();
        let query = [
            ("query.service_name", service.to_owned()),
            ("query.start_time_min", rfc3339(now - lookback)),
            (
                "query.start_time_max",
                rfc3339(now + Duration::from_secs(60)),
            ),
            ("query.num_traces", SEARCH_LIMIT.to_string()),
        ];
        let body = self.get("/api/v3/traces", &query).await?;
        body.map(result_spans)
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// The System Architecture graph of the last `lookback` (`GET /api/dependencies`, what the UI
    /// draws): `(parent service, child service) → calls`, a call being a span whose parent span
    /// is of another service.
    pub async fn dependencies(
        &self,
        lookback: Duration,
    ) -> Result<BTreeMap<(String, String), u64>> {
        let end = SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let query = [
            ("endTs", end.as_millis().to_string()),
            ("lookback", lookback.as_millis().to_string()),
        ];
        let body = self
            .get("/api/dependencies", &query)
            .await?
            .context("no /api/dependencies")?;
        body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|link| {
                let field = |key: &str| {
                    link[key]
                        .as_str()
                        .map(str::to_owned)
                        .with_context(|| format!("no {key} in {link}"))
                };
                let calls = link["callCount"]
                    .as_u64()
                    .with_context(|| format!("no callCount in {link}"))?;
                Ok(((field("parent")?, field("child")?), calls))
            })
            .collect()
    }

    /// One of Jaeger's RED metrics of `service`'s spans of `span_kind` (`server`, `consumer`, …),
    /// per operation, as the Monitor tab reads them (`GET /api/metrics/{latencies,calls,errors}`):
    /// each operation's value at the last step of the last `lookback` that has one, computed
    /// over a `window` (`ratePer`). Latencies are in milliseconds, calls per second, errors a
    /// share of the calls.
    pub async fn operation_metrics(
        &self,
        metric: Red,
        service: &str,
        span_kind: &str,
        lookback: Duration,
        window: Duration,
    ) -> Result<BTreeMap<String, f64>> {
        let end = SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let mut query = vec![
            ("service", service.to_owned()),
            ("spanKind", span_kind.to_owned()),
            ("groupByOperation", "true".to_owned()),
            ("endTs", end.as_millis().to_string()),
            ("lookback", lookback.as_millis().to_string()),
            ("step", "5000".to_owned()),
            ("ratePer", window.as_millis().to_string()),
        ];
        let path = match metric {
            Red::Latency { quantile } => {
                query.push(("quantile", quantile.to_string()));
                "/api/metrics/latencies"
            }
            Red::Calls => "/api/metrics/calls",
            Red::Errors => "/api/metrics/errors",
        };
        let body = self
            .get(path, &query)
            .await?
            .with_context(|| format!("no {path}"))?;
        let mut values = BTreeMap::new();
        for series in body["metrics"].as_array().into_iter().flatten() {
            let operation = series["labels"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["name"] == "operation")
                .and_then(|l| l["value"].as_str())
                .with_context(|| format!("a series without an operation: {series}"))?;
            // Protobuf's JSON writes NaN (no data in a step) as a string.
            let last = series["metricPoints"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["gaugeValue"]["doubleValue"].as_f64())
                .next_back();
            if let Some(value) = last {
                values.insert(operation.to_owned(), value);
            }
        }
        Ok(values)
    }

    /// Every span Jaeger holds from the last `lookback`: the traces of each of its services.
    pub async fn spans(&self, lookback: Duration) -> Result<Vec<ReceivedSpan>> {
        let mut all: BTreeMap<(String, String), ReceivedSpan> = BTreeMap::new();
        for service in self.services().await? {
            for span in self.find(&service, lookback).await? {
                all.insert((span.trace_id.clone(), span.span_id.clone()), span);
            }
        }
        Ok(all.into_values().collect())
    }

    /// Polls Jaeger until `predicate` holds for the spans of the last ten minutes, and returns
    /// them. On timeout the error summarises what Jaeger did have.
    pub async fn wait_for(
        &self,
        mut predicate: impl FnMut(&[ReceivedSpan]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<ReceivedSpan>> {
        poll::within(timeout, POLL, async || {
            let spans = self.spans(Duration::from_secs(600)).await?;
            if !predicate(&spans) {
                bail!(
                    "spans awaited for {timeout:?} did not reach Jaeger; it holds {}",
                    summary(&spans)
                );
            }
            Ok(spans)
        })
        .await
    }

    /// `GET` on the query API: the JSON body, or `None` for 404 (Jaeger's "nothing found").
    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Option<serde_json::Value>> {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.url), query)?;
        let response = self.http.get(url.clone()).send().await?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let text = response.text().await?;
        if !status.is_success() {
            bail!("GET {url}: {status}: {text}");
        }
        Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("GET {url}: {text}"))?,
        ))
    }
}

/// The spans in a v3 response's `result` (OTLP JSON `resourceSpans`).
fn result_spans(body: serde_json::Value) -> Result<Vec<ReceivedSpan>> {
    let result = body
        .get("result")
        .cloned()
        .context("no `result` in the response")?;
    let request: ExportTraceServiceRequest =
        serde_json::from_value(result).context("`result` is not OTLP JSON")?;
    Ok(spans_of(request.resource_spans))
}
