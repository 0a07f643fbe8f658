//! An in-process OTLP trace receiver (OTLP/gRPC and OTLP/HTTP protobuf) that keeps every span it
//! gets, so tests can assert on traces.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode as HttpStatus, header};
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
pub use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;
use tokio::sync::{oneshot, watch};

/// Largest export request accepted (benchmarks send big batches).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
const PROTOBUF: &str = "application/x-protobuf";

/// An attribute value, as OTLP types it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Map(Attributes),
    Empty,
}

pub type Attributes = BTreeMap<String, Value>;

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// Doubles, and integers converted to `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Double(d) => Some(*d),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// One received span, with its resource's attributes. Ids are lowercase hex.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// The resource's `service.name` (empty when absent).
    pub service_name: String,
    pub resource: Attributes,
    /// Instrumentation scope name.
    pub scope: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Attributes,
    pub status: StatusCode,
    pub status_message: String,
    pub events: Vec<SpanEvent>,
    pub links: Vec<SpanLink>,
}

#[derive(Clone, Debug)]
pub struct SpanEvent {
    pub name: String,
    pub time_unix_nanos: u64,
    pub attributes: Attributes,
}

#[derive(Clone, Debug)]
pub struct SpanLink {
    pub trace_id: String,
    pub span_id: String,
    pub attributes: Attributes,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.end_unix_nanos.saturating_sub(self.start_unix_nanos))
    }
    pub fn is_error(&self) -> bool {
        self.status == StatusCode::Error
    }
}

/// The receiver. It runs on its own thread and runtime, so it keeps receiving whatever the test's
/// runtime is doing; it stops on drop.
pub struct OtlpReceiver {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    store: Arc<Store>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Binds both listeners on 127.0.0.1 (free ports) and starts serving.
    pub async fn start() -> Result<Self> {
        let grpc = bind()?;
        let http = bind()?;
        let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
        let store = Arc::new(Store::default());
        let (shutdown, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let served = store.clone();
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                if let Err(err) = runtime.block_on(serve(grpc, http, served, stopped)) {
                    eprintln!("OTLP receiver failed: {err:#}");
                }
            })?;
        Ok(Self {
            grpc_addr,
            http_addr,
            store,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` of the OTLP/gRPC listener.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// `http://127.0.0.1:PORT` of the OTLP/HTTP listener: the base URL for
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (exporters append `/v1/traces`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The full OTLP/HTTP traces URL, for an exporter configured with a signal-specific endpoint.
    pub fn http_traces_url(&self) -> String {
        format!("{}/v1/traces", self.http_endpoint())
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.store.spans().clone()
    }

    /// How many spans were received so far (without copying them, for benchmarks).
    pub fn count(&self) -> usize {
        self.store.spans().len()
    }

    /// Spans received so far, grouped by trace id.
    pub fn traces(&self) -> BTreeMap<String, Vec<ReceivedSpan>> {
        by_trace(&self.store.spans())
    }

    /// Forgets every span received so far.
    pub fn clear(&self) {
        self.store.spans().clear();
    }

    /// Waits until `predicate` holds for the spans received so far, and returns them. On timeout the
    /// error summarises what did arrive.
    pub async fn wait_for(
        &self,
        mut predicate: impl FnMut(&[ReceivedSpan]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<ReceivedSpan>> {
        let mut changes = self.store.count.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let spans = self.store.spans();
                if predicate(&spans) {
                    return Ok(spans.clone());
                }
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                bail!(
                    "spans awaited for {timeout:?} did not arrive; received {}",
                    summary(&self.store.spans())
                );
            }
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `spans` grouped by trace id.
pub fn by_trace(spans: &[ReceivedSpan]) -> BTreeMap<String, Vec<ReceivedSpan>> {
    let mut traces: BTreeMap<String, Vec<ReceivedSpan>> = BTreeMap::new();
    for span in spans {
        traces
            .entry(span.trace_id.clone())
            .or_default()
            .push(span.clone());
    }
    traces
}

fn bind() -> Result<TcpListener> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding an OTLP listener")?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// "N spans: service/name xK, ...", for error messages.
pub(crate) fn summary(spans: &[ReceivedSpan]) -> String {
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for span in spans {
        *counts.entry((&span.service_name, &span.name)).or_default() += 1;
    }
    let names: Vec<String> = counts
        .iter()
        .map(|((service, name), n)| format!("{service}/{name} x{n}"))
        .collect();
    format!("{} spans: [{}]", spans.len(), names.join(", "))
}

#[derive(Default)]
struct Store {
    spans: Mutex<Vec<ReceivedSpan>>,
    /// Number of spans stored so far; waiters watch it.
    count: watch::Sender<usize>,
}

impl Store {
    fn spans(&self) -> MutexGuard<'_, Vec<ReceivedSpan>> {
        self.spans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn add(&self, request: ExportTraceServiceRequest) {
        let received = flatten(request);
        let total = {
            let mut spans = self.spans();
            spans.extend(received);
            spans.len()
        };
        self.count.send_replace(total);
    }
}

async fn serve(
    grpc: TcpListener,
    http: TcpListener,
    store: Arc<Store>,
    stopped: oneshot::Receiver<()>,
) -> Result<()> {
    let grpc_service = TraceServiceServer::from_arc(Arc::new(GrpcReceiver(store.clone())))
        .max_decoding_message_size(MAX_MESSAGE);
    let grpc = tonic::transport::Server::builder()
        .add_service(grpc_service)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(
            tokio::net::TcpListener::from_std(grpc)?,
        ));
    let router = axum::Router::new()
        .route("/v1/traces", axum::routing::post(export_http))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE))
        .with_state(store);
    let http = axum::serve(tokio::net::TcpListener::from_std(http)?, router);
    // Not a graceful shutdown: exporters keep connections open, which would hold it forever.
    tokio::select! {
        result = grpc => result.context("OTLP/gRPC server")?,
        result = http.into_future() => result.context("OTLP/HTTP server")?,
        _ = stopped => {}
    }
    Ok(())
}

struct GrpcReceiver(Arc<Store>);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn export_http(
    State(store): State<Arc<Store>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if content_type != Some(PROTOBUF) {
        return (
            HttpStatus::UNSUPPORTED_MEDIA_TYPE,
            format!("only {PROTOBUF} is accepted"),
        )
            .into_response();
    }
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            store.add(request);
            let response = ExportTraceServiceResponse::default().encode_to_vec();
            ([(header::CONTENT_TYPE, PROTOBUF)], response).into_response()
        }
        Err(err) => (
            HttpStatus::BAD_REQUEST,
            format!("invalid ExportTraceServiceRequest: {err}"),
        )
            .into_response(),
    }
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    spans_of(request.resource_spans)
}

/// The spans of OTLP `resourceSpans`, each with its resource and scope.
pub(crate) fn spans_of(resource_spans: Vec<ResourceSpans>) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in resource_spans {
        let resource = attributes(
            resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default(),
        );
        let service_name = resource
            .get("service.name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope.map(|s| s.name).unwrap_or_default();
            for span in scope_spans.spans {
                let status = span.status.unwrap_or_default();
                out.push(ReceivedSpan {
                    service_name: service_name.clone(),
                    resource: resource.clone(),
                    scope: scope.clone(),
                    kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                    name: span.name,
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty())
                        .then(|| hex::encode(&span.parent_span_id)),
                    start_unix_nanos: span.start_time_unix_nano,
                    end_unix_nanos: span.end_time_unix_nano,
                    attributes: attributes(span.attributes),
                    status: StatusCode::try_from(status.code).unwrap_or(StatusCode::Unset),
                    status_message: status.message,
                    events: span
                        .events
                        .into_iter()
                        .map(|e| SpanEvent {
                            name: e.name,
                            time_unix_nanos: e.time_unix_nano,
                            attributes: attributes(e.attributes),
                        })
                        .collect(),
                    links: span
                        .links
                        .into_iter()
                        .map(|l| SpanLink {
                            trace_id: hex::encode(&l.trace_id),
                            span_id: hex::encode(&l.span_id),
                            attributes: attributes(l.attributes),
                        })
                        .collect(),
                });
            }
        }
    }
    out
}

fn attributes(list: Vec<KeyValue>) -> Attributes {
    list.into_iter()
        .map(|kv| (kv.key, value(kv.value)))
        .collect()
}

fn value(any: Option<AnyValue>) -> Value {
    match any.and_then(|a| a.value) {
        None => Value::Empty,
        Some(any_value::Value::StringValue(s)) => Value::Str(s),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(b),
        Some(any_value::Value::IntValue(i)) => Value::Int(i),
        Some(any_value::Value::DoubleValue(d)) => Value::Double(d),
        Some(any_value::Value::BytesValue(b)) => Value::Bytes(b),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.into_iter().map(|v| value(Some(v))).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Value::Map(attributes(kv.values)),
        // A string-table index: only profiles use it, and spans carry no string table to resolve it.
        Some(any_value::Value::StringValueStrindex(_)) => Value::Empty,
    }
}
