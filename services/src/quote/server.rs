//! Analytics' side: `GET /quote/{part}` answers after `quote.lookupMs`, failing `quote.errorRate`
//! of the lookups with HTTP 500, each in a server span under the caller's client span.

use crate::http::{record_response, server_span};
use crate::roles::Service;
use crate::spans::record_exception;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use opentelemetry::KeyValue;
use rand::Rng as _;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tracing_lab_config::quote::{LOOKUP_SPAN, PARTS, ROUTE};
use tracing_lab_config::{QuoteSettings, contract};

#[derive(Clone)]
struct Quotes {
    service: Arc<Service>,
    lookup: Duration,
    error_rate: f64,
}

pub fn routes(service: Arc<Service>, settings: &QuoteSettings) -> Router {
    Router::new().route(ROUTE, get(answer)).with_state(Quotes {
        service,
        lookup: Duration::from_millis(settings.lookup_ms),
        error_rate: settings.error_rate,
    })
}

async fn answer(
    State(quotes): State<Quotes>,
    Path(part): Path<String>,
    headers: HeaderMap,
) -> Response {
    let service = &quotes.service;
    let span = server_span(
        service,
        &headers,
        LOOKUP_SPAN,
        "GET",
        ROUTE,
        format!("/quote/{part}"),
    );
    let status = match PARTS.into_iter().find(|p| *p == part) {
        None => StatusCode::NOT_FOUND,
        Some(part) => {
            span.span().set_attribute(KeyValue::new("quote.part", part));
            span.within(tokio::time::sleep(quotes.lookup)).await;
            let error_rate = quotes.error_rate;
            if error_rate > 0.0 && rand::rng().random::<f64>() < error_rate {
                let message = format!("injected failure in the {part} lookup (quote.errorRate)");
                record_exception(&span.span(), contract::INJECTED_FAULT, &message);
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            }
        }
    };
    record_response(&span.span(), &service.metrics, status);
    let body = match status {
        StatusCode::OK => json!({ "part": part }),
        StatusCode::NOT_FOUND => json!({ "error": format!("parts are {}", PARTS.join(", ")) }),
        _ => json!({ "error": "lookup failed" }),
    };
    (status, axum::Json(body)).into_response()
}
