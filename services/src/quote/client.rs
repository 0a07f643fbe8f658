//! The api's side: one `get_quote` span per order holding a client span for each lookup, made one
//! after another or all at once (`quote.calls`), each given up after `quote.timeoutMs`.

use crate::http::error_chain;
use crate::propagation::inject_http;
use crate::spans::{ActiveSpan, record_exception};
use axum::http::{HeaderMap, StatusCode};
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Context, KeyValue};
use opentelemetry_semantic_conventions::attribute as semconv;
use std::time::Duration;
use tracing_lab_config::QuoteSettings;
use tracing_lab_config::quote::{Calls, LOOKUP_SPAN, PARTS, QUOTE_SPAN, ROUTE};

/// A quote server that does not accept the connection within this is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a quote was not had; each fails the order.
#[derive(Debug, thiserror::Error)]
pub enum QuoteError {
    /// A lookup took longer than `quote.timeoutMs`.
    #[error("{0}")]
    TimedOut(String),
    /// Analytics answered a lookup with an error.
    #[error("{0}")]
    Refused(String),
    /// Analytics could not be reached.
    #[error("{0}")]
    Unreachable(String),
}

impl QuoteError {
    /// What the api answers, as a gateway whose upstream failed does.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Refused(_) => StatusCode::BAD_GATEWAY,
            Self::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

pub struct QuoteClient {
    http: reqwest::Client,
    base: String,
    calls: Calls,
    timeout_ms: u64,
    host: String,
    port: i64,
}

impl QuoteClient {
    /// A client of the server at `base` (`http://host:port`).
    pub fn new(base: &str, settings: &QuoteSettings) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(base)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(Duration::from_millis(settings.timeout_ms))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            calls: settings.calls,
            timeout_ms: settings.timeout_ms,
            host: url.host_str().unwrap_or_default().to_owned(),
            port: url.port_or_known_default().map_or(0, i64::from),
        })
    }

    /// Asks for every part of a quote in a `get_quote` span under the current one.
    pub async fn quote(&self, tracer: &BoxedTracer) -> Result<(), QuoteError> {
        let span = ActiveSpan::start(
            tracer,
            QUOTE_SPAN,
            SpanKind::Internal,
            &Context::current(),
            vec![KeyValue::new("quote.calls", self.calls.name())],
        );
        let outcome = span
            .within(async {
                match self.calls {
                    Calls::Sequential => {
                        for part in PARTS {
                            self.lookup(tracer, part).await?;
                        }
                        Ok(())
                    }
                    Calls::Parallel => {
                        let lookups = PARTS.map(|part| self.lookup(tracer, part));
                        let outcomes = futures::future::join_all(lookups).await;
                        outcomes
                            .into_iter()
                            .find_map(Result::err)
                            .map_or(Ok(()), Err)
                    }
                }
            })
            .await;
        if let Err(err) = &outcome {
            record_exception(&span.span(), "QuoteFailed", &err.to_string());
        }
        outcome
    }

    /// One lookup in a client span.
    async fn lookup(&self, tracer: &BoxedTracer, part: &'static str) -> Result<(), QuoteError> {
        let url = format!("{}/quote/{part}", self.base);
        let span = ActiveSpan::start(
            tracer,
            LOOKUP_SPAN,
            SpanKind::Client,
            &Context::current(),
            vec![
                KeyValue::new(semconv::HTTP_REQUEST_METHOD, "GET"),
                KeyValue::new(semconv::URL_FULL, url.clone()),
                KeyValue::new(semconv::URL_TEMPLATE, ROUTE),
                KeyValue::new(semconv::SERVER_ADDRESS, self.host.clone()),
                KeyValue::new(semconv::SERVER_PORT, self.port),
                KeyValue::new("quote.part", part),
            ],
        );
        let mut headers = HeaderMap::new();
        inject_http(span.context(), &mut headers);
        let sent = span
            .within(async { self.http.get(&url).headers(headers).send().await })
            .await;
        let failed = |error_type: String, message: String| {
            span.span()
                .set_attribute(KeyValue::new(semconv::ERROR_TYPE, error_type));
            span.span().set_status(Status::error(message.clone()));
            message
        };
        match sent {
            Ok(response) if response.status().is_success() => {
                span.span().set_attribute(KeyValue::new(
                    semconv::HTTP_RESPONSE_STATUS_CODE,
                    i64::from(response.status().as_u16()),
                ));
                Ok(())
            }
            Ok(response) => {
                let status = response.status();
                span.span().set_attribute(KeyValue::new(
                    semconv::HTTP_RESPONSE_STATUS_CODE,
                    i64::from(status.as_u16()),
                ));
                Err(QuoteError::Refused(failed(
                    status.as_u16().to_string(),
                    format!("{part} lookup answered {status}"),
                )))
            }
            Err(err) if err.is_timeout() => {
                let message = format!(
                    "{part} lookup timed out after {} ms (quote.timeoutMs)",
                    self.timeout_ms
                );
                record_exception(&span.span(), "Timeout", &message);
                Err(QuoteError::TimedOut(failed("timeout".into(), message)))
            }
            Err(err) => {
                let message = format!("{part} lookup: {}", error_chain(&err));
                record_exception(&span.span(), "RequestError", &message);
                Err(QuoteError::Unreachable(failed(
                    "RequestError".into(),
                    message,
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::routing::get;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

    /// A quote server on a free port whose `stock` lookup answers `stock` after `delay`.
    async fn server(stock: StatusCode, delay: Duration) -> String {
        let app = Router::new().route(
            ROUTE,
            get(move |Path(part): Path<String>| async move {
                if part == "stock" {
                    tokio::time::sleep(delay).await;
                    stock
                } else {
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    async fn ask(base: &str, calls: Calls) -> (Result<(), QuoteError>, Vec<SpanData>) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = BoxedTracer::new(Box::new(provider.tracer("test")));
        let settings = QuoteSettings {
            enabled: true,
            calls,
            timeout_ms: 200,
            ..Default::default()
        };
        let outcome = QuoteClient::new(base, &settings)
            .unwrap()
            .quote(&tracer)
            .await;
        (outcome, exporter.get_finished_spans().unwrap())
    }

    fn lookups(spans: &[SpanData]) -> Vec<(String, Option<String>)> {
        spans
            .iter()
            .filter(|s| s.span_kind == SpanKind::Client)
            .map(|s| {
                let attr = |key: &str| {
                    s.attributes
                        .iter()
                        .find(|kv| kv.key.as_str() == key)
                        .map(|kv| kv.value.to_string())
                };
                (attr("quote.part").unwrap(), attr(semconv::ERROR_TYPE))
            })
            .collect()
    }

    #[tokio::test]
    async fn a_failed_lookup_fails_the_quote_and_sequential_calls_stop_there() {
        let base = server(StatusCode::INTERNAL_SERVER_ERROR, Duration::ZERO).await;
        let (outcome, spans) = ask(&base, Calls::Sequential).await;
        assert!(matches!(outcome, Err(QuoteError::Refused(ref m)) if m.contains("stock")));
        assert_eq!(outcome.unwrap_err().status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            lookups(&spans),
            [("price".into(), None), ("stock".into(), Some("500".into()))]
        );
        let quote = spans.iter().find(|s| s.name == QUOTE_SPAN).unwrap();
        assert_eq!(
            quote.status,
            Status::error("stock lookup answered 500 Internal Server Error")
        );

        let (outcome, spans) = ask(&base, Calls::Parallel).await;
        assert!(matches!(outcome, Err(QuoteError::Refused(_))));
        assert_eq!(lookups(&spans).len(), 3, "parallel lookups all run");
    }

    #[tokio::test]
    async fn a_slow_lookup_times_out_and_an_absent_server_is_unreachable() {
        let base = server(StatusCode::OK, Duration::from_millis(500)).await;
        let (outcome, spans) = ask(&base, Calls::Parallel).await;
        assert!(
            matches!(outcome, Err(QuoteError::TimedOut(ref m)) if m.contains("timed out after 200 ms"))
        );
        assert_eq!(outcome.unwrap_err().status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(lookups(&spans).contains(&("stock".into(), Some("timeout".into()))));
        let fast = server(StatusCode::OK, Duration::ZERO).await;
        assert!(ask(&fast, Calls::Sequential).await.0.is_ok());

        // Nothing listens on a port just released.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let (outcome, _) = ask(&closed, Calls::Sequential).await;
        assert!(
            matches!(outcome, Err(QuoteError::Unreachable(_))),
            "{outcome:?}"
        );
        assert_eq!(
            outcome.unwrap_err().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
