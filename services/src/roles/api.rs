//! The api role: `POST /order` validates, asks analytics for a quote when `spec.quote` is on,
//! stores the order in Redis and publishes it to `orders`, answering 202 with the order id once
//! Kafka acknowledged it, 503 when the record surely did not reach Kafka (the order is removed),
//! and 504 with the order id when Kafka may have it but did not confirm in time (the order is
//! kept: the stages will process it if it was written). Without a quote the order is not taken:
//! 504, 502 or 503 without an order id, as a gateway whose upstream timed out, failed or was away.
//! `GET /order/{id}` answers what Redis holds of an order, in a trace of its own.

use super::{OrderMessage, Service, now_ms, order_key};
use crate::http::{record_response, server_span};
use crate::kafka::{NotAcknowledged, Written};
use crate::spans::{ActiveSpan, record_exception};
use crate::store::Call;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::{Context, KeyValue};
use redis::AsyncCommands as _;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing_lab_config::{Role, contract};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
pub const MAX_ITEM_CHARS: usize = 200;
pub const MAX_QUANTITY: u32 = 10_000;
/// How long an order's record stays in Redis.
const ORDER_TTL_SECONDS: i64 = 24 * 3600;

/// A rejected request: status and a message for the JSON body.
#[derive(Debug, PartialEq)]
pub struct Rejection {
    pub status: StatusCode,
    pub message: String,
}

impl Rejection {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub item: String,
    pub quantity: u32,
}

/// Checks a request's content type and body (already limited to [`MAX_BODY_BYTES`]).
pub fn validate(content_type: Option<&str>, body: &[u8]) -> Result<NewOrder, Rejection> {
    let is_json = content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ));
    }
    let order: NewOrder = serde_json::from_slice(body).map_err(|e| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            format!(
                "body must be {{\"item\": string, \"quantity\": integer 1..={MAX_QUANTITY}}}: {e}"
            ),
        )
    })?;
    let item = order.item.trim();
    if item.is_empty() {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "item must not be empty",
        ));
    }
    if item.chars().count() > MAX_ITEM_CHARS {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            format!("item must be at most {MAX_ITEM_CHARS} characters"),
        ));
    }
    if item.chars().any(char::is_control) {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "item must not contain control characters",
        ));
    }
    if !(1..=MAX_QUANTITY).contains(&order.quantity) {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            format!("quantity must be 1..={MAX_QUANTITY}"),
        ));
    }
    Ok(NewOrder {
        item: item.to_owned(),
        quantity: order.quantity,
    })
}

pub fn routes(service: Arc<Service>) -> Router {
    Router::new()
        .route("/order", post(create_order))
        .route(contract::ORDER_LOOKUP_ROUTE, get(get_order))
        .with_state(service)
}

/// `GET /order/{id}`: the order as Redis holds it (its fields and how far it got), from one read.
async fn get_order(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    // Only a well-formed id reaches the span: the path is the client's input.
    let id = uuid::Uuid::parse_str(&id).ok();
    let path = id.map_or_else(
        || contract::ORDER_LOOKUP_ROUTE.to_owned(),
        |id| format!("/order/{id}"),
    );
    let span = server_span(
        &service,
        &headers,
        contract::ORDER_LOOKUP_SPAN,
        "GET",
        contract::ORDER_LOOKUP_ROUTE,
        path,
    );
    let response = span.within(look_up(&service, id)).await;
    record_response(&span.span(), &service.metrics, response.status());
    response
}

async fn look_up(service: &Service, id: Option<uuid::Uuid>) -> Response {
    let Some(id) = id else {
        return Rejection::new(
            StatusCode::BAD_REQUEST,
            "an order id is the UUID that POST /order answered",
        )
        .into_response();
    };
    let order_id = id.to_string();
    Context::current()
        .span()
        .set_attribute(KeyValue::new("order.id", order_id.clone()));
    let mut redis = service.store.connection();
    let read: redis::RedisResult<BTreeMap<String, String>> = service
        .store
        .traced(Call::READ_ORDER, redis.hgetall(order_key(&order_id)))
        .await;
    match read {
        Err(err) => {
            record_exception(&Context::current().span(), "RedisError", &err.to_string());
            tracing::error!(error = %err, "reading the order failed");
            Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "order store unavailable; retry later",
            )
            .into_response()
        }
        Ok(fields) if fields.is_empty() => Rejection::new(
            StatusCode::NOT_FOUND,
            format!("no order {order_id}: never taken, or older than a day"),
        )
        .into_response(),
        Ok(mut fields) => {
            fields.insert("order_id".to_owned(), order_id);
            (StatusCode::OK, axum::Json(fields)).into_response()
        }
    }
}

async fn create_order(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = server_span(
        &service,
        &headers,
        Role::Api.order_span(),
        "POST",
        "/order",
        "/order".to_owned(),
    );
    let response = span.within(handle(&service, &headers, body)).await;
    record_response(&span.span(), &service.metrics, response.status());
    response
}

async fn handle(service: &Service, headers: &HeaderMap, body: Body) -> Response {
    // The request's own checks run in `input_validation`, before its simulated work.
    let validation = ActiveSpan::child(&service.tracer, "input_validation");
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let validated = async {
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                Rejection::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body larger than {MAX_BODY_BYTES} bytes"),
                )
            })?;
        validate(content_type, &bytes)
    };
    let validated = validation.within(validated).await;
    let order = match validated {
        Ok(order) => order,
        Err(rejection) => {
            // The message may quote the user's input: it goes to the client, not onto spans or logs.
            tracing::info!(status = rejection.status.as_u16(), "order rejected");
            return rejection.into_response();
        }
    };
    if let Err(err) = service.work_in(&validation, "input_validation").await {
        return dependency_failed(&err);
    }
    drop(validation);

    let order = OrderMessage {
        order_id: uuid::Uuid::new_v4().to_string(),
        item: order.item,
        quantity: order.quantity,
        created_at_ms: now_ms(),
    };
    let cx = Context::current();
    let span = cx.span();
    span.set_attributes([
        KeyValue::new("order.id", order.order_id.clone()),
        KeyValue::new("order.quantity", i64::from(order.quantity)),
    ]);

    if let Err(err) = service.step("audit_logging").await {
        return dependency_failed(&err);
    }
    if let Some(quote) = &service.quote
        && let Err(err) = quote.quote(&service.tracer).await
    {
        record_exception(&span, "QuoteFailed", &err.to_string());
        tracing::warn!(order_id = %order.order_id, error = %err, "no quote: the order is not taken");
        return Rejection::new(err.status(), format!("{err}; the order was not taken"))
            .into_response();
    }
    service.injected_latency().await;
    if let Some(fault) = service.injected_error() {
        record_exception(&span, contract::INJECTED_FAULT, &fault.to_string());
        tracing::warn!(order_id = %order.order_id, "injected failure");
        return Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, fault.to_string())
            .into_response();
    }

    let key = order_key(&order.order_id);
    let mut redis = service.store.connection();
    let mut store = redis::pipe();
    store
        .hset_multiple(
            &key,
            &[
                ("item", order.item.clone()),
                ("quantity", order.quantity.to_string()),
                ("created_at_ms", order.created_at_ms.to_string()),
                ("status", "accepted".to_owned()),
            ],
        )
        .ignore()
        .expire(&key, ORDER_TTL_SECONDS)
        .ignore();
    let stored: redis::RedisResult<()> = service
        .store
        .traced(Call::STORE_ORDER, store.query_async(&mut redis))
        .await;
    if let Err(err) = stored {
        record_exception(&span, "RedisError", &err.to_string());
        tracing::error!(error = %err, "storing the order failed");
        return Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "order store unavailable; retry later",
        )
        .into_response();
    }

    let published = async { service.publish(&order)?.await }.await;
    if let Err(err) = published {
        tracing::error!(error = format!("{err:#}"), order_id = %order.order_id, "publishing the order failed");
        let written = err
            .downcast_ref::<NotAcknowledged>()
            .map_or(Written::Maybe, |e| e.written);
        if written == Written::Maybe {
            // The broker may have the record, and then the stages process it: keep its hash and
            // tell the client the order id instead of inviting a resend that would duplicate it.
            return (
                StatusCode::GATEWAY_TIMEOUT,
                axum::Json(json!({
                    "order_id": order.order_id,
                    "status": "unconfirmed",
                    "error": "Kafka did not confirm the order in time; it may still be processed, do not resend",
                })),
            )
                .into_response();
        }
        // The record never reached Kafka: the order was not accepted, leave no trace of it.
        let removed: redis::RedisResult<()> = service
            .store
            .traced(
                Call::REMOVE_ORDER,
                redis::cmd("DEL").arg(&key).query_async(&mut redis),
            )
            .await;
        if let Err(err) = removed {
            tracing::warn!(error = %err, "removing the unpublished order failed");
        }
        return Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "order queue (Kafka) unavailable; retry later",
        )
        .into_response();
    }
    tracing::info!(order_id = %order.order_id, "order accepted");
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "order_id": order.order_id, "status": "accepted" })),
    )
        .into_response()
}

fn dependency_failed(err: &anyhow::Error) -> Response {
    tracing::error!(error = format!("{err:#}"), "order work failed");
    Rejection::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "a dependency is unavailable; retry later",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/json");

    #[test]
    fn a_good_order_passes_trimmed() {
        let order = validate(
            Some("application/json; charset=utf-8"),
            br#"{"item": " book ", "quantity": 2}"#,
        )
        .unwrap();
        assert_eq!(
            order,
            NewOrder {
                item: "book".into(),
                quantity: 2
            }
        );
    }

    #[test]
    fn bad_orders_are_rejected_with_the_right_status() {
        let cases: [(Option<&str>, &[u8], StatusCode); 9] = [
            (
                Some("text/plain"),
                br#"{"item":"a","quantity":1}"#,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                None,
                br#"{"item":"a","quantity":1}"#,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (JSON, b"not json", StatusCode::BAD_REQUEST),
            (JSON, br#"{"item":"a"}"#, StatusCode::BAD_REQUEST),
            (
                JSON,
                br#"{"item":"  ","quantity":1}"#,
                StatusCode::BAD_REQUEST,
            ),
            (
                JSON,
                br#"{"item":"a","quantity":0}"#,
                StatusCode::BAD_REQUEST,
            ),
            (
                JSON,
                br#"{"item":"a","quantity":-3}"#,
                StatusCode::BAD_REQUEST,
            ),
            (
                JSON,
                br#"{"item":"a","quantity":1,"extra":true}"#,
                StatusCode::BAD_REQUEST,
            ),
            (
                JSON,
                br#"{"item":"a\u0007","quantity":1}"#,
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (content_type, body, status) in cases {
            let rejection = validate(content_type, body).unwrap_err();
            assert_eq!(
                rejection.status,
                status,
                "{}: {}",
                String::from_utf8_lossy(body),
                rejection.message
            );
        }
        let long = format!(
            r#"{{"item":"{}","quantity":1}}"#,
            "x".repeat(MAX_ITEM_CHARS + 1)
        );
        assert_eq!(
            validate(JSON, long.as_bytes()).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let too_many = format!(r#"{{"item":"a","quantity":{}}}"#, MAX_QUANTITY + 1);
        assert_eq!(
            validate(JSON, too_many.as_bytes()).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
