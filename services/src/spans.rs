//! The services' spans, made with the OpenTelemetry API itself rather than through `tracing`:
//! cheaper per span (`make bench`: span cost), and the SDK decides sampling when a span starts,
//! so the spans of an unsampled order are neither recorded nor exported, while a bridged
//! `tracing` span does most of its work either way. Log lines still carry the trace and span id:
//! `tracing_lab_telemetry` reads them from the current OpenTelemetry context, which
//! [`ActiveSpan::within`] sets.

use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::trace::WithContext;
use opentelemetry::trace::{FutureExt as _, SpanKind, SpanRef, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_semantic_conventions::attribute as semconv;
use std::borrow::Cow;
use std::future::Future;

/// The tracer of the globally installed provider (a no-op one when the SDK is disabled).
pub fn tracer() -> BoxedTracer {
    global::tracer(tracing_lab_telemetry::INSTRUMENTATION_SCOPE)
}

/// A started span; it ends when dropped.
#[must_use = "the span ends when dropped"]
pub struct ActiveSpan(Context);

impl ActiveSpan {
    /// Starts a span under `parent` (an extracted remote context, or the current one).
    pub fn start(
        tracer: &BoxedTracer,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: &Context,
        attributes: Vec<KeyValue>,
    ) -> Self {
        let span = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(tracer, parent);
        Self(parent.with_span(span))
    }

    /// An internal span under the current one.
    pub fn child(tracer: &BoxedTracer, name: &'static str) -> Self {
        Self::start(
            tracer,
            name,
            SpanKind::Internal,
            &Context::current(),
            Vec::new(),
        )
    }

    /// The context holding this span: the parent of its children, and what travels in headers.
    pub fn context(&self) -> &Context {
        &self.0
    }

    pub fn span(&self) -> SpanRef<'_> {
        self.0.span()
    }

    /// Runs `future` with this span current: spans it starts are children, logs carry its ids.
    pub fn within<F: Future>(&self, future: F) -> WithContext<F> {
        future.with_context(self.0.clone())
    }
}

impl Drop for ActiveSpan {
    fn drop(&mut self) {
        self.0.span().end();
    }
}

/// Marks `span` failed and records the exception event the OTel conventions describe.
pub fn record_exception(span: &SpanRef<'_>, kind: &str, message: &str) {
    span.set_status(Status::error(message.to_owned()));
    span.add_event(
        "exception",
        vec![
            KeyValue::new(semconv::EXCEPTION_TYPE, kind.to_owned()),
            KeyValue::new(semconv::EXCEPTION_MESSAGE, message.to_owned()),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

    #[tokio::test]
    async fn children_of_the_current_span_and_ends_on_drop() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = BoxedTracer::new(Box::new(provider.tracer("test")));
        let parent = ActiveSpan::start(
            &tracer,
            "parent",
            SpanKind::Server,
            &Context::new(),
            vec![KeyValue::new("a", 1)],
        );
        parent
            .within(async {
                let child = ActiveSpan::child(&tracer, "child");
                record_exception(&child.span(), "Kind", "went wrong");
            })
            .await;
        assert_eq!(
            exporter.get_finished_spans().unwrap().len(),
            1,
            "the child ended"
        );
        drop(parent);
        let spans = exporter.get_finished_spans().unwrap();
        let (child, parent) = (&spans[0], &spans[1]);
        assert_eq!(child.parent_span_id, parent.span_context.span_id());
        assert_eq!(
            child.span_context.trace_id(),
            parent.span_context.trace_id()
        );
        assert_eq!(child.status, Status::error("went wrong"));
        assert_eq!(child.events.events[0].name, "exception");
        assert_eq!(parent.span_kind, SpanKind::Server);
        assert_eq!(parent.attributes, vec![KeyValue::new("a", 1)]);
    }
}
