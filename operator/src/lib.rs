//! The TracingLab operator: turns one `TracingLab` resource into a complete distributed-tracing
//! teaching lab (Kafka, Redis, Jaeger, an OpenTelemetry Collector, four services, a load generator).
//!
//! Flow of one reconcile: [`validate`] the spec, [`render`] every object as a pure function of it,
//! [`apply`] them with server-side apply (and prune what is no longer wanted), read the
//! [`readiness`] of each workload the API server returned, name the [`blockers`] of each component
//! that is not available (from its pods and events), then compute the [`status`]. Beside the
//! reconciles, [`lag`] measures each lab's Kafka consumer lag on a short period and writes it into
//! the status. For students, [`trace_logs`] gathers the log lines of one trace from a lab's pods,
//! and [`check`] says whether an exercise's outcome shows in a lab.
//! Modules depend one way: [`crd`] only on [`quantity`], [`validate`] on the CRD, [`render`] on
//! both, [`readiness`] on [`apply`], [`blockers`] on [`readiness`]; [`controller`] strings them.

pub mod apply;
pub mod blockers;
pub mod check;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod http;
pub mod lag;
pub mod metrics;
pub mod quantity;
pub mod readiness;
pub mod reference;
pub mod render;
pub mod status;
pub mod trace_logs;
pub mod validate;

pub use controller::{Config, run};
pub use crd::{TracingLab, TracingLabSpec, TracingLabStatus};
