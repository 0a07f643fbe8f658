//! Prometheus metrics of the operator, and whether it is ready to serve.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};

/// State shared by the controller and the HTTP endpoints.
pub struct Shared {
    registry: Registry,
    /// Reconciles started.
    pub reconciles: Counter,
    /// Reconciles that failed.
    pub errors: Counter,
    /// Reconcile duration in seconds.
    pub duration: Histogram,
    /// Kafka lag measurements of one lab.
    pub lag_measurements: Counter,
    /// Lag measurements that failed (broker unreachable, timeout, protocol error).
    pub lag_failures: Counter,
    /// Time one sweep over every lab took, in seconds.
    pub lag_sweep_duration: Histogram,
    ready: AtomicBool,
}

impl Default for Shared {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tracinglab");
        let reconciles = Counter::default();
        let errors = Counter::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register(
            "reconciles",
            "TracingLab reconciles started",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "TracingLab reconciles that failed",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one TracingLab reconcile took",
            duration.clone(),
        );
        let lag_measurements = Counter::default();
        let lag_failures = Counter::default();
        let lag_sweep_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "lag_measurements",
            "Kafka lag measurements of one lab",
            lag_measurements.clone(),
        );
        registry.register(
            "lag_measurement_failures",
            "Kafka lag measurements that failed",
            lag_failures.clone(),
        );
        registry.register(
            "lag_sweep_duration_seconds",
            "Time one lag sweep over every lab took",
            lag_sweep_duration.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            duration,
            lag_measurements,
            lag_failures,
            lag_sweep_duration,
            ready: AtomicBool::new(false),
        }
    }
}

impl Shared {
    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// True once the controller has listed the labs it watches.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_the_text_format() {
        let s = Shared::default();
        s.reconciles.inc();
        s.duration.observe(0.02);
        let text = s.encode();
        assert!(text.contains("tracinglab_reconciles_total 1"), "{text}");
        assert!(
            text.contains("tracinglab_reconcile_errors_total 0"),
            "{text}"
        );
        assert!(
            text.contains("tracinglab_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("tracinglab_lag_measurement_failures_total 0"),
            "{text}"
        );
    }
}
