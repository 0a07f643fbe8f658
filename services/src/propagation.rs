//! W3C trace context and baggage across the two kinds of hops: HTTP headers and Kafka message
//! headers, through the globally installed propagator.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::global;
use opentelemetry::propagation::{Extractor, Injector};
use rdkafka::message::{Header, Headers, OwnedHeaders};

/// Writes `cx` into HTTP request headers.
pub fn inject_http(cx: &Context, headers: &mut HeaderMap) {
    global::get_text_map_propagator(|p| p.inject_context(cx, &mut HttpInjector(headers)));
}

/// Reads the caller's context from HTTP request headers (an empty context when there is none).
pub fn extract_http(headers: &HeaderMap) -> Context {
    global::get_text_map_propagator(|p| p.extract(&HttpExtractor(headers)))
}

/// Kafka headers holding `cx`.
pub fn kafka_headers(cx: &Context) -> OwnedHeaders {
    let mut fields = KafkaInjector(Vec::new());
    global::get_text_map_propagator(|p| p.inject_context(cx, &mut fields));
    fields.0.iter().fold(
        OwnedHeaders::new_with_capacity(fields.0.len()),
        |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        },
    )
}

/// Reads the producer's context from Kafka message headers.
pub fn extract_kafka<H: Headers>(headers: Option<&H>) -> Context {
    match headers {
        None => Context::new(),
        Some(headers) => global::get_text_map_propagator(|p| p.extract(&KafkaExtractor(headers))),
    }
}

struct HttpInjector<'a>(&'a mut HeaderMap);

impl Injector for HttpInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HttpExtractor<'a>(&'a HeaderMap);

impl Extractor for HttpExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct KafkaInjector(Vec<(String, String)>);

impl Injector for KafkaInjector {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

struct KafkaExtractor<'a, H>(&'a H);

impl<H: Headers> Extractor for KafkaExtractor<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        // W3C header names are case-insensitive; the last occurrence wins, as in HTTP.
        self.0
            .iter()
            .filter(|h| h.key.eq_ignore_ascii_case(key))
            .last()
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.key).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::propagation::TextMapCompositePropagator;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

    fn install_propagator() {
        global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]));
    }

    fn sample_context() -> Context {
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        Context::new()
            .with_remote_span_context(sc)
            .with_baggage(vec![KeyValue::new("lab.order_id", "o-1")])
    }

    fn assert_same(extracted: &Context) {
        let sc = extracted.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(
            extracted
                .baggage()
                .get("lab.order_id")
                .map(|v| v.as_str().to_string()),
            Some("o-1".into())
        );
    }

    #[test]
    fn http_round_trip_keeps_trace_and_baggage() {
        install_propagator();
        let mut headers = HeaderMap::new();
        inject_http(&sample_context(), &mut headers);
        assert_eq!(
            headers["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_same(&extract_http(&headers));
    }

    #[test]
    fn kafka_round_trip_keeps_trace_and_baggage() {
        install_propagator();
        let headers = kafka_headers(&sample_context());
        assert!(headers.iter().any(|h| h.key == "traceparent"));
        assert_same(&extract_kafka(Some(&headers)));
    }

    #[test]
    fn missing_or_garbled_headers_give_no_parent() {
        install_propagator();
        assert!(
            !extract_kafka::<OwnedHeaders>(None)
                .span()
                .span_context()
                .is_valid()
        );
        let garbled = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some(&b"00-zz"[..]),
        });
        assert!(
            !extract_kafka(Some(&garbled))
                .span()
                .span_context()
                .is_valid()
        );
        let mut http = HeaderMap::new();
        http.insert("traceparent", HeaderValue::from_static("garbage"));
        assert!(!extract_http(&http).span().span_context().is_valid());
    }
}
