//! The instrumented lab services (api, processing, notification, analytics) and the load
//! generator; the binary `tracing-lab-service` picks one by subcommand.

pub mod app;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod propagation;
pub mod quote;
pub mod resources;
pub mod roles;
pub mod settings;
pub mod spans;
pub mod store;
pub mod workload;
