//! Test harness: starts REAL servers on 127.0.0.1 for integration tests and benchmarks, each on
//! free ports, waits until they are truly ready (failing with the tail of the server's log), and
//! stops them (whole process group, temporary folders removed) on drop.
//!
//! - [`apiserver::TestCluster`]: etcd + kube-apiserver 1.20 (TLS, RBAC, ServiceAccount tokens).
//! - [`broker::KafkaBroker`]: a Kafka-protocol broker (tansu), with topic/produce/commit helpers.
//! - [`redis::RedisServer`]: redis-server without persistence.
//! - [`otlp::OtlpReceiver`]: in-process OTLP/gRPC + OTLP/HTTP receiver that keeps every span.
//! - [`process`]: the project's own binaries (and the servers above) as child processes.
//! - [`poll::eventually`]: polls a condition until it holds, for what the API server settles on.
//! - [`procfs`]: CPU time per thread and memory of processes, for benchmarks.
//!
//! External programs come from `tests/env/setup.sh` (see [`assets`]).

pub mod apiserver;
pub mod assets;
pub mod broker;
pub mod jaeger;
pub mod kubelet;
pub mod otlp;
pub mod poll;
pub mod ports;
pub mod process;
pub mod procfs;
pub mod redis;

pub use apiserver::TestCluster;
pub use broker::KafkaBroker;
pub use jaeger::TraceBackend;
pub use otlp::OtlpReceiver;
pub use process::ChildProcess;
pub use redis::RedisServer;
