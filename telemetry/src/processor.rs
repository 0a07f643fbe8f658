//! The lab's one span processor: it sets the allowed [`baggage`](crate::baggage) entries on each
//! span as it starts, counts the spans that end recorded, and hands them to the batch exporter.
//! One processor rather than a chain of three: the SDK gives each processor of a chain its own
//! copy of every ended span (name, attributes, events), while a lone processor gets the span
//! itself, so the chain cost a copy per processor on every span of every order.

use crate::baggage;
use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Span, SpanData, SpanProcessor};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Debug)]
pub(crate) struct LabSpans {
    /// `None` without an exporter: spans still get ids for the logs, and are counted.
    pub export: Option<BatchSpanProcessor>,
}

impl SpanProcessor for LabSpans {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        baggage::set_on(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        crate::SPANS_RECORDED.fetch_add(1, Ordering::Relaxed);
        if let Some(export) = &self.export {
            export.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.export.as_ref().map_or(Ok(()), |e| e.force_flush())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.export
            .as_ref()
            .map_or(Ok(()), |e| e.shutdown_with_timeout(timeout))
    }

    /// The exporter puts the resource (`service.name`, the pod) on what it sends.
    fn set_resource(&mut self, resource: &Resource) {
        if let Some(export) = &mut self.export {
            export.set_resource(resource);
        }
    }
}
