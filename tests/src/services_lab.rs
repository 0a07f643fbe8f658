//! A whole lab on 127.0.0.1 for end-to-end tests and benchmarks: Apache Kafka, Redis, the
//! Collector and Jaeger as a default lab renders them, and the four services as child processes
//! with a lab configuration of the test's own, for the services tests and the services benchmark.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::lab::{rendered, stored};
use crate::process::project_command;
use crate::{ChildProcess, KafkaBroker, RedisServer, TraceBackend, poll, ports};
use anyhow::{Context, Result, bail};
use tracing_lab_config::{Intensity, LabConfig, Role, WorkloadMix, contract};

pub const BINARY: &str = "tracing-lab-service";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Light, quick work for every role, so tests run fast and still carry workload spans.
pub fn light_config() -> LabConfig {
    let mut config = LabConfig::default();
    for role in Role::ALL {
        config.role_mut(role).workload =
            WorkloadMix::new(50, 50, &[Intensity::Light, Intensity::Medium]);
    }
    config
}

pub struct Lab {
    pub broker: KafkaBroker,
    pub redis: RedisServer,
    pub traces: TraceBackend,
    pub services: BTreeMap<Role, ChildProcess>,
    pub api_url: String,
    ports: BTreeMap<Role, u16>,
    config_dir: tempfile::TempDir,
    extra_env: Vec<(String, String)>,
}

impl Lab {
    /// Starts broker, Redis, Collector and Jaeger and the four services (`extra_env` added to
    /// each), and waits until every service is ready.
    pub async fn start(config: &LabConfig, extra_env: &[(&str, &str)]) -> Result<Self> {
        let (children, loopback) = rendered(&stored("e2e", "e2e", serde_json::json!({}))?)?;
        let broker = KafkaBroker::start_rendered(&children, &loopback).await?;
        let redis = RedisServer::start().await?;
        let traces = TraceBackend::start_rendered(&children, &loopback).await?;
        let config_dir = tempfile::tempdir()?;
        std::fs::write(
            config_dir.path().join(tracing_lab_config::FILE_NAME),
            config.to_json(),
        )?;
        let ports: BTreeMap<Role, u16> = Role::ALL
            .into_iter()
            .map(|r| (r, ports::free_port()))
            .collect();
        let api_url = format!("http://127.0.0.1:{}", ports[&Role::Api]);
        let mut lab = Self {
            broker,
            redis,
            traces,
            services: BTreeMap::new(),
            api_url,
            ports,
            config_dir,
            extra_env: extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        for role in Role::ALL {
            let process = ChildProcess::spawn(role.name(), lab.command(role)?)?;
            lab.services.insert(role, process);
        }
        for role in Role::ALL {
            lab.wait_ready(role).await?;
        }
        Ok(lab)
    }

    /// The command line of one service, with the environment the operator would give it.
    pub fn command(&self, role: Role) -> Result<Command> {
        let mut command = self.base_command(role.name())?;
        command.env("LISTEN_ADDR", format!("127.0.0.1:{}", self.ports[&role]));
        Ok(command)
    }

    /// The load generator aimed at the api, its probes on `listen_port`.
    pub fn loadgen_command(&self, listen_port: u16) -> Result<Command> {
        let mut command = self.base_command("loadgen")?;
        command
            .env("LISTEN_ADDR", format!("127.0.0.1:{listen_port}"))
            .env("LOADGEN_TARGET_URL", &self.api_url);
        Ok(command)
    }

    fn base_command(&self, name: &str) -> Result<Command> {
        let mut command = project_command(BINARY)?;
        command
            .arg(name)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OTEL_SERVICE_NAME", name)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", self.traces.otlp_endpoint())
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .env("OTEL_RESOURCE_ATTRIBUTES", "service.namespace=e2e")
            .env("KAFKA_BOOTSTRAP_SERVERS", self.broker.bootstrap())
            // The drills' partition counts and timings were measured with three partitions.
            .env(contract::env::KAFKA_TOPIC_PARTITIONS, "3")
            .env("REDIS_URL", self.redis.url())
            .env(
                "LAB_CONFIG",
                self.config_dir.path().join(tracing_lab_config::FILE_NAME),
            )
            .env("TMPDIR", self.config_dir.path())
            .env("RUST_LOG", "info")
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Ok(command)
    }

    pub fn url(&self, role: Role, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[&role])
    }

    pub async fn wait_ready(&mut self, role: Role) -> Result<()> {
        let url = self.url(role, "/ready");
        let process = self
            .services
            .get_mut(&role)
            .context("service not started")?;
        process.wait_http_ok(&url, READY_TIMEOUT).await
    }

    pub fn service(&mut self, role: Role) -> &mut ChildProcess {
        self.services.get_mut(&role).expect("every role runs")
    }

    pub async fn redis(&self) -> Result<redis::aio::MultiplexedConnection> {
        Ok(redis::Client::open(self.redis.url())?
            .get_multiplexed_async_connection()
            .await?)
    }

    /// Orders analysed at least once (the analytics service counts each order once).
    pub async fn analyzed(&self) -> Result<i64> {
        let mut redis = self.redis().await?;
        let count: Option<i64> = redis::cmd("GET")
            .arg("orders:analyzed")
            .query_async(&mut redis)
            .await?;
        Ok(count.unwrap_or(0))
    }

    /// Where the orders are: each consumer group's committed offsets against its topic's end.
    pub async fn progress(&self) -> String {
        let mut stages = Vec::new();
        for role in Role::CONSUMERS {
            let (Some(topic), Some(group)) = (role.input_topic(), role.consumer_group()) else {
                continue;
            };
            let ends = self.broker.end_offsets(topic).await;
            let committed = self.broker.committed_offsets(group, topic).await;
            stages.push(format!(
                "{group} committed {committed:?} of {topic} ending at {ends:?}"
            ));
        }
        stages.join("; ")
    }

    /// Waits until `n` orders were analysed.
    pub async fn wait_analyzed(&self, n: i64, timeout: Duration) -> Result<()> {
        let waited = poll::within(timeout, Duration::from_millis(100), async || {
            match self.analyzed().await? {
                count if count >= n => Ok(()),
                count => bail!("{count} of {n} orders analysed after {timeout:?}"),
            }
        })
        .await;
        if let Err(last) = waited {
            bail!("{last:#}; {}", self.progress().await);
        }
        Ok(())
    }
}

/// Posts one order; returns the status and the JSON body.
pub async fn post_order(
    http: &reqwest::Client,
    api_url: &str,
    item: &str,
    quantity: i64,
) -> Result<(u16, serde_json::Value)> {
    post_order_with(http, api_url, item, quantity, &[]).await
}

/// Posts one order with extra request headers (`traceparent`, `baggage`).
pub async fn post_order_with(
    http: &reqwest::Client,
    api_url: &str,
    item: &str,
    quantity: i64,
    headers: &[(&str, &str)],
) -> Result<(u16, serde_json::Value)> {
    let mut request = http
        .post(format!("{api_url}/order"))
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .body(serde_json::json!({"item": item, "quantity": quantity}).to_string())
        .send()
        .await?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    Ok((status, body))
}

/// The JSON log lines of `process` whose message is `message`.
pub fn log_lines(process: &ChildProcess, message: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(process.log_path())
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["message"] == message)
        .collect()
}

/// Partition and offset of a log line that names them.
pub fn position(line: &serde_json::Value) -> Option<(i32, i64)> {
    let partition = line["partition"].as_i64()?;
    Some((i32::try_from(partition).ok()?, line["offset"].as_i64()?))
}
