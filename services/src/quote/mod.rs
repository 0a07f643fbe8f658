//! The synchronous hop (`spec.quote`): the api's [`client`] asks analytics' [`server`] for the
//! parts of a quote over HTTP within the order's request, each call a client span whose context
//! travels in the request headers, each answer a server span in analytics: the one place in the
//! lab where a caller waits for another service, so Jaeger's critical path follows it.

pub mod client;
pub mod server;

pub use client::{QuoteClient, QuoteError};
