//! Test harness: starts REAL servers on 127.0.0.1 for integration tests and benchmarks, each on
//! free ports, waits until they are truly ready (failing with the tail of the server's log), and
//! stops them (whole process group, temporary folders removed) on drop.
//!
//! - [`apiserver::TestCluster`]: etcd + a current kube-apiserver (TLS, RBAC, ServiceAccount tokens).
//! - [`broker::KafkaBroker`]: Apache Kafka started from the rendered Kafka container as the image
//!   starts it, with topic/produce/commit helpers.
//! - [`jaeger::TraceBackend`]: the rendered Jaeger v2 and OpenTelemetry Collector, and Jaeger's
//!   query API.
//! - [`kubelet`]: what a kubelet does to a rendered container (environment, volumes, probes) and
//!   the lab's in-cluster addresses mapped to loopback ports.
//! - [`node::RealNode`]: a real single-node Kubernetes of host processes (control plane,
//!   containerd, kubelet, kube-proxy, CNI bridge, CoreDNS), one per machine at a time.
//! - [`node_lab::NodeLab`]: the operator installed by `make install` on a real node (see
//!   [`node`]), labs applied to it, read through `kubectl` and the lab's NodePorts.
//! - [`operator_env::OperatorEnv`]: the operator in-process against a real API server with the
//!   CRD installed; labs created and patched, their children read back, no pods.
//! - [`runner::LabRunner`]: a lab applied to a real API server, reconciled by the operator binary,
//!   its containers run by a kubelet stand-in that follows `kubectl scale`.
//! - [`services_lab::Lab`]: the four services as child processes over a broker, Redis, the
//!   Collector and Jaeger, with a lab configuration of the test's own.
//! - [`redis::RedisServer`]: redis-server without persistence.
//! - [`otlp::OtlpReceiver`]: in-process OTLP/gRPC + OTLP/HTTP receiver that keeps every span, for
//!   tests of what one program exports.
//! - [`process`]: the project's own binaries (and the servers above) as child processes.
//! - [`pods`]: pods and events as a kubelet and a scheduler write them, for a control plane without.
//! - [`poll::eventually`]: polls a condition until it holds, for what the API server settles on.
//! - [`procfs`]: CPU time per thread and memory of processes, for benchmarks.
//!
//! External programs come from `tests/env/setup.sh` (see [`assets`]).

pub mod apiserver;
pub mod assets;
pub mod broker;
pub mod jaeger;
pub mod kubelet;
pub mod lab;
pub mod node;
pub mod node_lab;
pub mod operator_env;
pub mod otlp;
pub mod pods;
pub mod poll;
pub mod ports;
pub mod process;
pub mod procfs;
pub mod redis;
pub mod runner;
pub mod services_lab;

pub use apiserver::TestCluster;
pub use broker::KafkaBroker;
pub use jaeger::TraceBackend;
pub use otlp::OtlpReceiver;
pub use process::ChildProcess;
pub use redis::RedisServer;
