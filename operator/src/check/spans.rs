//! A lab's spans as Jaeger's query API (`/api/v3`) answers them, OTLP JSON, reduced to what the
//! exercises' criteria read.

use anyhow::Context as _;
use serde_json::Value;
use std::collections::BTreeMap;

/// One span of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// `service.name` of the resource that recorded it.
    pub service: String,
    pub name: String,
    /// Status ERROR.
    pub error: bool,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: BTreeMap<String, Value>,
    /// Its events, by name, with their attributes.
    pub events: Vec<(String, BTreeMap<String, Value>)>,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key)?.as_str()
    }

    pub fn duration_ms(&self) -> f64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos) as f64 / 1e6
    }
}

/// The spans of a `/api/v3/traces` answer: `{"result": {"resourceSpans": [...]}}`.
pub fn of_answer(answer: &Value) -> anyhow::Result<Vec<Span>> {
    let resource_spans = answer
        .pointer("/result/resourceSpans")
        .and_then(Value::as_array)
        .context("no result.resourceSpans in Jaeger's answer")?;
    let mut spans = Vec::new();
    for resource_spans in resource_spans {
        let resource = attributes(resource_spans.pointer("/resource/attributes"));
        let service = resource
            .get("service.name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let scope_spans = resource_spans["scopeSpans"]
            .as_array()
            .into_iter()
            .flatten();
        for span in scope_spans.flat_map(|s| s["spans"].as_array().into_iter().flatten()) {
            spans.push(one(span, service).with_context(|| format!("a span in {span}"))?);
        }
    }
    Ok(spans)
}

fn one(span: &Value, service: &str) -> anyhow::Result<Span> {
    let text = |key: &str| span[key].as_str().unwrap_or_default().to_owned();
    let nanos = |key: &str| match &span[key] {
        Value::String(n) => n.parse().ok(),
        n => n.as_u64(),
    };
    let id = text("traceId");
    anyhow::ensure!(!id.is_empty(), "no traceId");
    let code = &span["status"]["code"];
    Ok(Span {
        trace_id: id,
        span_id: text("spanId"),
        service: service.to_owned(),
        name: text("name"),
        error: code.as_i64() == Some(2) || code.as_str() == Some("STATUS_CODE_ERROR"),
        start_unix_nanos: nanos("startTimeUnixNano").unwrap_or_default(),
        end_unix_nanos: nanos("endTimeUnixNano").unwrap_or_default(),
        attributes: attributes(span.get("attributes")),
        events: span["events"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let name = e["name"].as_str().unwrap_or_default().to_owned();
                (name, attributes(e.get("attributes")))
            })
            .collect(),
    })
}

/// OTLP JSON key-values (`[{"key": k, "value": {"stringValue": v}}]`) as plain JSON values.
fn attributes(list: Option<&Value>) -> BTreeMap<String, Value> {
    let plain = |value: &Value| match value {
        Value::Object(typed) => match typed.iter().next() {
            Some((kind, Value::String(n))) if kind == "intValue" => n
                .parse::<i64>()
                .map_or_else(|_| Value::String(n.clone()), Value::from),
            Some((_, v)) => v.clone(),
            None => Value::Null,
        },
        other => other.clone(),
    };
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv["key"].as_str()?.to_owned(), plain(&kv["value"]))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn otlp_json_becomes_spans() {
        let answer = json!({"result": {"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "notification"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
                "parentSpanId": "", "name": "notify_order",
                "startTimeUnixNano": "1000000", "endTimeUnixNano": "3500000",
                "status": {"code": 2},
                "attributes": [{"key": "order.id", "value": {"stringValue": "o-1"}},
                               {"key": "messaging.queue_wait_ms", "value": {"intValue": "12"}}],
                "events": [{"name": "exception", "attributes": [
                    {"key": "exception.type", "value": {"stringValue": "InjectedFault"}}]}]
            }]}]
        }]}});
        let spans = of_answer(&answer).unwrap();
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert_eq!(span.service, "notification");
        assert!(span.error);
        assert_eq!(span.attr("order.id"), Some("o-1"));
        assert_eq!(span.attributes["messaging.queue_wait_ms"], json!(12));
        assert_eq!(span.duration_ms(), 2.5);
        assert_eq!(span.events[0].1["exception.type"], json!("InjectedFault"));
    }

    #[test]
    fn an_answer_without_spans_is_an_error() {
        assert!(of_answer(&json!({"error": {"message": "no traces"}})).is_err());
    }
}
