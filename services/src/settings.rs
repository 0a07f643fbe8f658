//! Process settings: the variables of [`contract::env`] the operator renders, each also a flag, so
//! that `tracing-lab-service --help` lists them. An invalid value stops the service at start with
//! a message naming the variable.

use crate::kafka::Bootstrap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;
use tracing_lab_config::contract::{self, env};
use tracing_lab_config::{LabConfig, Role};

const DRAIN_MS: u64 = contract::DRAIN_TIMEOUT.as_millis() as u64;

/// Everything a role needs besides the `OTEL_*` variables (those belong to telemetry). A flag's
/// value name is its variable's name, so that an error names the variable.
#[derive(clap::Args, Clone, Debug)]
pub struct Settings {
    /// Kafka's bootstrap servers, host:port[,host:port…].
    #[arg(long = "kafka-bootstrap-servers", env = env::KAFKA_BOOTSTRAP_SERVERS, value_name = env::KAFKA_BOOTSTRAP_SERVERS,
          default_value = "localhost:9092")]
    pub kafka_bootstrap: Bootstrap,
    /// Partitions of the topics a service creates when they do not exist yet.
    #[arg(long = "kafka-topic-partitions", env = env::KAFKA_TOPIC_PARTITIONS, value_name = env::KAFKA_TOPIC_PARTITIONS,
          default_value_t = contract::DEFAULT_TOPIC_PARTITIONS,
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub topic_partitions: i32,
    /// Redis, redis://host:port.
    #[arg(long, env = env::REDIS_URL, value_name = env::REDIS_URL,
          default_value = "redis://localhost:6379", value_parser = redis_url)]
    pub redis_url: String,
    /// Address of the HTTP server (orders, probes, metrics).
    #[arg(long, env = env::LISTEN_ADDR, value_name = env::LISTEN_ADDR,
          default_value_t = SocketAddr::from(([0, 0, 0, 0], contract::PORT)))]
    pub listen_addr: SocketAddr,
    /// Where IO workloads write their files: an absolute path.
    #[arg(long = "tmpdir", env = env::TMPDIR, value_name = env::TMPDIR, default_value = "/tmp",
          value_parser = absolute_path)]
    pub tmp_dir: PathBuf,
    /// The lab configuration document (JSON or YAML); without it, the original lab's settings.
    #[arg(long, env = env::LAB_CONFIG, value_name = env::LAB_CONFIG, value_parser = lab_config)]
    lab_config: Option<LabConfig>,
    /// The api's URL, for the load generator.
    #[arg(long = "loadgen-target-url", env = env::LOADGEN_TARGET_URL, value_name = env::LOADGEN_TARGET_URL,
          default_value = "http://localhost:8080", value_parser = http_url)]
    pub loadgen_target: String,
    /// The quote server's URL, for the role that asks for quotes (`quote.enabled`).
    #[arg(long = "quote-url", env = env::QUOTE_URL, value_name = env::QUOTE_URL,
          default_value = "http://localhost:8080", value_parser = http_url)]
    pub quote_url: String,
    /// Milliseconds that work in flight may take to finish after SIGTERM; at most the default, so
    /// that the final commit and the last spans get out before the pod's grace period ends.
    #[arg(long = "shutdown-drain-ms", env = env::SHUTDOWN_DRAIN_MS, value_name = env::SHUTDOWN_DRAIN_MS,
          default_value_t = DRAIN_MS, value_parser = clap::value_parser!(u64).range(0..=DRAIN_MS))]
    drain_ms: u64,
}

impl Settings {
    /// The lab configuration document, or the original lab's defaults when none is given.
    pub fn lab(&self) -> &LabConfig {
        static ORIGINAL: LazyLock<LabConfig> = LazyLock::new(LabConfig::default);
        self.lab_config.as_ref().unwrap_or(&ORIGINAL)
    }

    /// The settings of one service role.
    pub fn role(&self, role: Role) -> &tracing_lab_config::RoleSettings {
        self.lab().role(role)
    }

    /// How long a stopping service lets its work in flight finish.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_ms)
    }
}

fn redis_url(url: &str) -> Result<String, String> {
    redis::Client::open(url).map_err(|e| e.to_string())?;
    Ok(url.to_owned())
}

fn absolute_path(path: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(path);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err("expected an absolute path".into())
    }
}

fn http_url(url: &str) -> Result<String, String> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {
            Ok(url.trim_end_matches('/').to_owned())
        }
        _ => Err("expected an http(s) URL".into()),
    }
}

fn lab_config(path: &str) -> Result<LabConfig, String> {
    LabConfig::from_path(path.as_ref()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::io::Write;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    /// The settings of `flags`, whatever this process's environment holds.
    fn settings(flags: &[(&str, &str)]) -> Result<Settings, String> {
        let mut command = <Cli as clap::CommandFactory>::command();
        command = command.mut_args(|arg| arg.env(None::<&str>));
        let args = flags
            .iter()
            .map(|(flag, value)| format!("--{flag}={value}"));
        let matches = command
            .try_get_matches_from(std::iter::once("service".to_owned()).chain(args))
            .map_err(|e| e.to_string())?;
        Ok(<Cli as clap::FromArgMatches>::from_arg_matches(&matches)
            .unwrap()
            .settings)
    }

    #[test]
    fn every_setting_is_a_variable_of_the_contract() {
        let command = <Cli as clap::CommandFactory>::command();
        let mut vars: Vec<&str> = command
            .get_arguments()
            .filter_map(|a| a.get_env()?.to_str())
            .collect();
        vars.sort();
        assert_eq!(
            vars,
            [
                env::KAFKA_BOOTSTRAP_SERVERS,
                env::KAFKA_TOPIC_PARTITIONS,
                env::LAB_CONFIG,
                env::LISTEN_ADDR,
                env::LOADGEN_TARGET_URL,
                env::QUOTE_URL,
                env::REDIS_URL,
                env::SHUTDOWN_DRAIN_MS,
                env::TMPDIR,
            ]
        );
    }

    #[test]
    fn defaults_are_the_original_lab() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.kafka_bootstrap.servers(), "localhost:9092");
        assert_eq!(s.listen_addr.port(), contract::PORT);
        assert_eq!(s.topic_partitions, contract::DEFAULT_TOPIC_PARTITIONS);
        assert_eq!(s.lab(), &LabConfig::default());
        assert_eq!(s.tmp_dir, PathBuf::from("/tmp"));
        assert_eq!(s.drain_timeout(), contract::DRAIN_TIMEOUT);
        assert_eq!(
            settings(&[("shutdown-drain-ms", "250")])
                .unwrap()
                .drain_timeout(),
            Duration::from_millis(250)
        );
        assert_eq!(
            settings(&[("loadgen-target-url", "http://api:8080/")])
                .unwrap()
                .loadgen_target,
            "http://api:8080"
        );
    }

    #[test]
    fn invalid_values_name_their_variable() {
        for (flag, var, value) in [
            (
                "kafka-bootstrap-servers",
                env::KAFKA_BOOTSTRAP_SERVERS,
                "kafka",
            ),
            (
                "kafka-bootstrap-servers",
                env::KAFKA_BOOTSTRAP_SERVERS,
                "a:9092,b:0",
            ),
            ("kafka-topic-partitions", env::KAFKA_TOPIC_PARTITIONS, "0"),
            ("redis-url", env::REDIS_URL, "http//nope"),
            ("redis-url", env::REDIS_URL, ""),
            ("listen-addr", env::LISTEN_ADDR, "8080"),
            ("tmpdir", env::TMPDIR, "relative/dir"),
            ("loadgen-target-url", env::LOADGEN_TARGET_URL, "ftp://api"),
            ("quote-url", env::QUOTE_URL, "analytics:8080"),
            ("shutdown-drain-ms", env::SHUTDOWN_DRAIN_MS, "60000"),
            ("lab-config", env::LAB_CONFIG, "/no/such/lab-config.json"),
        ] {
            let err = settings(&[(flag, value)]).unwrap_err();
            assert!(
                err.contains(&format!("<{var}>")) && err.contains(&format!("'{value}'")),
                "{var}={value}: {err}"
            );
        }
    }

    #[test]
    fn lab_config_is_read_and_checked() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(file, r#"{{"processing": {{"concurrency": 4, "workload": {{"cpuWeight": 1, "ioWeight": 0, "intensities": ["light"]}}}}}}"#).unwrap();
        let path = file.path().to_str().unwrap();
        let s = settings(&[("lab-config", path)]).unwrap();
        assert_eq!(s.role(Role::Processing).concurrency, 4);
        assert_eq!(s.role(Role::Api), &Role::Api.defaults());

        let mut bad = tempfile::NamedTempFile::new().unwrap();
        write!(bad, r#"{{"analytics": {{"concurrency": 0, "workload": {{"cpuWeight": 1, "ioWeight": 0, "intensities": ["light"]}}}}}}"#).unwrap();
        let err = settings(&[("lab-config", bad.path().to_str().unwrap())]).unwrap_err();
        assert!(
            err.contains("LAB_CONFIG") && err.contains("analytics.concurrency"),
            "{err}"
        );
    }
}
