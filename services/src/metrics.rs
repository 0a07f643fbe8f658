//! Prometheus metrics of one service, served at `GET /metrics`.

use crate::resources::{ResourceMonitor, process_cpu_time};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkloadLabels {
    pub operation: &'static str,
    pub intensity: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// HTTP answers of `POST /order` (api) or of the orders sent (loadgen), by status.
    pub http_responses: Family<StatusLabel, Counter>,
    /// Kafka messages handled, by outcome: `ok`, `failed` (injected fault), `invalid` (malformed,
    /// skipped), `skipped` (permanent error), `retried` (temporary error).
    pub messages: Family<OutcomeLabel, Counter>,
    pub queue_wait_seconds: Histogram,
    pub workload_seconds: Family<WorkloadLabels, Histogram>,
    cpu_percent: Gauge<f64, AtomicU64>,
    resident_bytes: Gauge,
    monitor: Arc<ResourceMonitor>,
}

impl Metrics {
    pub fn new(monitor: Arc<ResourceMonitor>) -> Self {
        let mut registry = Registry::with_prefix("tracing_lab");
        let http_responses = Family::<StatusLabel, Counter>::default();
        registry.register(
            "http_responses",
            "HTTP responses of order requests by status",
            http_responses.clone(),
        );
        let messages = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "messages_handled",
            "Kafka messages handled by outcome",
            messages.clone(),
        );
        let queue_wait_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 18));
        registry.register(
            "message_queue_wait_seconds",
            "Time messages waited in Kafka before processing started",
            queue_wait_seconds.clone(),
        );
        let workload_seconds = Family::<WorkloadLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "workload_seconds",
            "Duration of simulated work by operation",
            workload_seconds.clone(),
        );
        registry.register_collector(Box::new(Spans));
        let cpu_percent = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "process_cpu_percent",
            "Process CPU at the last sample, 100 = one core",
            cpu_percent.clone(),
        );
        registry.register_collector(Box::new(ProcessCpu));
        let resident_bytes = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory at the last sample",
            resident_bytes.clone(),
        );
        Self {
            registry,
            http_responses,
            messages,
            queue_wait_seconds,
            workload_seconds,
            cpu_percent,
            resident_bytes,
            monitor,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        if let Some(sample) = self.monitor.latest() {
            self.cpu_percent.set(sample.cpu_percent);
            self.resident_bytes
                .set((sample.rss_mb * 1024.0 * 1024.0) as i64);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The spans telemetry recorded and failed to export, read at each scrape: recorded spans per
/// message is what tracing costs in work, as the sampler decides it.
#[derive(Debug)]
struct Spans;

impl Collector for Spans {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, count) in [
            (
                "spans_recorded",
                "Spans recorded (sampled) and handed to the exporter",
                tracing_lab_telemetry::spans_recorded(),
            ),
            (
                "spans_dropped",
                "Spans the exporter could not deliver (Collector unreachable)",
                tracing_lab_telemetry::spans_dropped(),
            ),
        ] {
            let counter = ConstCounter::new(count);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

/// The process's CPU time, read at each scrape: divided by the messages handled (or the orders
/// answered) between two scrapes, it gives the CPU each one cost, tracing included.
#[derive(Debug)]
struct ProcessCpu;

impl Collector for ProcessCpu {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let seconds = ConstCounter::new(process_cpu_time().as_secs_f64());
        let metric = encoder.encode_descriptor(
            "process_cpu_seconds",
            "CPU time the process used, all threads",
            None,
            seconds.metric_type(),
        )?;
        seconds.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_cpu_counter_counts_the_work_done_between_two_scrapes() {
        let mut registry = Registry::with_prefix("tracing_lab");
        registry.register_collector(Box::new(ProcessCpu));
        let scrape = || {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix("tracing_lab_process_cpu_seconds_total "))
                .unwrap_or_else(|| panic!("no CPU counter in {text}"));
            line.parse::<f64>().unwrap()
        };
        let before = scrape();
        let started = process_cpu_time();
        while process_cpu_time() - started < Duration::from_millis(100) {
            std::hint::black_box(started);
        }
        let used = scrape() - before;
        assert!((0.1..10.0).contains(&used), "{used} s for 0.1 s of CPU");
    }
}
