//! Process settings from the environment. Every invalid value stops the service at start with a
//! message naming the variable (or the lab configuration field).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tracing_lab_config::{LabConfig, Role};

/// Default number of partitions of a topic the services create (when it does not exist yet).
const DEFAULT_TOPIC_PARTITIONS: i32 = 3;
/// How long a stopping service lets its work in flight finish before cancelling it. Shorter than
/// the pod's `terminationGracePeriodSeconds` (30 s, set by the operator), so the final commit and
/// the last spans get out before the kubelet's SIGKILL.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything a role needs besides the `OTEL_*` variables (those belong to telemetry).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `KAFKA_BOOTSTRAP_SERVERS`, default `localhost:9092`.
    pub kafka_bootstrap: String,
    /// `KAFKA_TOPIC_PARTITIONS`: partitions of topics created at start, default 3.
    pub topic_partitions: i32,
    /// `REDIS_URL`, default `redis://localhost:6379`.
    pub redis_url: String,
    /// `LISTEN_ADDR`, default `0.0.0.0:8080`.
    pub listen_addr: SocketAddr,
    /// `TMPDIR`, default `/tmp`: where IO workloads write their files.
    pub tmp_dir: PathBuf,
    /// The document at `LAB_CONFIG`, or the original lab's defaults when unset.
    pub lab: LabConfig,
    /// `LOADGEN_TARGET_URL` (loadgen only), default `http://localhost:8080`.
    pub loadgen_target: String,
    /// `SHUTDOWN_DRAIN_MS`: how long work in flight may finish after SIGTERM, default
    /// [`DEFAULT_DRAIN_TIMEOUT`].
    pub drain_timeout: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SettingsError {
    #[error("{variable}={value:?} is invalid: {reason}")]
    Invalid {
        variable: &'static str,
        value: String,
        reason: String,
    },
    #[error("{variable}: {reason}")]
    LabConfig {
        variable: &'static str,
        reason: String,
    },
}

fn invalid(variable: &'static str, value: &str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        variable,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

impl Settings {
    /// Reads the settings through `var` (`std::env::var` in production). Empty counts as unset.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let kafka_bootstrap =
            get("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|| "localhost:9092".into());
        if kafka_bootstrap
            .split(',')
            .any(|server| !is_host_port(server.trim()))
        {
            return Err(invalid(
                "KAFKA_BOOTSTRAP_SERVERS",
                &kafka_bootstrap,
                "expected a comma-separated list of host:port",
            ));
        }
        let topic_partitions = match get(tracing_lab_config::TOPIC_PARTITIONS_ENV_VAR) {
            None => DEFAULT_TOPIC_PARTITIONS,
            Some(v) => match v.parse::<i32>() {
                Ok(n) if (1..=1000).contains(&n) => n,
                _ => {
                    return Err(invalid(
                        tracing_lab_config::TOPIC_PARTITIONS_ENV_VAR,
                        &v,
                        "expected an integer in 1..=1000",
                    ));
                }
            },
        };

        let redis_url = get("REDIS_URL").unwrap_or_else(|| "redis://localhost:6379".into());
        redis::Client::open(redis_url.as_str())
            .map_err(|e| invalid("REDIS_URL", &redis_url, e.to_string()))?;

        let listen = get("LISTEN_ADDR").unwrap_or_else(|| "0.0.0.0:8080".into());
        let listen_addr = listen.parse().map_err(|_| {
            invalid(
                "LISTEN_ADDR",
                &listen,
                "expected ip:port, e.g. 0.0.0.0:8080",
            )
        })?;

        let tmp_dir = PathBuf::from(get("TMPDIR").unwrap_or_else(|| "/tmp".into()));
        if !tmp_dir.is_absolute() {
            return Err(invalid(
                "TMPDIR",
                &tmp_dir.display().to_string(),
                "expected an absolute path",
            ));
        }

        let lab = match get(tracing_lab_config::ENV_VAR) {
            None => LabConfig::default(),
            Some(path) => {
                LabConfig::from_path(path.as_ref()).map_err(|e| SettingsError::LabConfig {
                    variable: tracing_lab_config::ENV_VAR,
                    reason: e.to_string(),
                })?
            }
        };

        let loadgen_target =
            get("LOADGEN_TARGET_URL").unwrap_or_else(|| "http://localhost:8080".into());
        match reqwest::Url::parse(&loadgen_target) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => {
                return Err(invalid(
                    "LOADGEN_TARGET_URL",
                    &loadgen_target,
                    "expected an http(s) URL",
                ));
            }
        }

        let drain_timeout = match get("SHUTDOWN_DRAIN_MS") {
            None => DEFAULT_DRAIN_TIMEOUT,
            Some(v) => match v.parse::<u64>() {
                Ok(ms) if ms <= DEFAULT_DRAIN_TIMEOUT.as_millis() as u64 => {
                    Duration::from_millis(ms)
                }
                _ => {
                    return Err(invalid(
                        "SHUTDOWN_DRAIN_MS",
                        &v,
                        format!(
                            "expected milliseconds in 0..={} (the pod's grace period is longer)",
                            DEFAULT_DRAIN_TIMEOUT.as_millis()
                        ),
                    ));
                }
            },
        };

        Ok(Self {
            kafka_bootstrap,
            drain_timeout,
            topic_partitions,
            redis_url,
            listen_addr,
            tmp_dir,
            lab,
            loadgen_target: loadgen_target.trim_end_matches('/').to_owned(),
        })
    }

    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The settings of one service role.
    pub fn role(&self, role: Role) -> &tracing_lab_config::RoleSettings {
        self.lab.role(role)
    }
}

fn is_host_port(server: &str) -> bool {
    match server.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Write;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_the_original_lab() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.kafka_bootstrap, "localhost:9092");
        assert_eq!(s.listen_addr.port(), 8080);
        assert_eq!(s.topic_partitions, 3);
        assert_eq!(s.lab, LabConfig::default());
        assert_eq!(s.tmp_dir, PathBuf::from("/tmp"));
        assert_eq!(s.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
        assert_eq!(
            settings(&[("SHUTDOWN_DRAIN_MS", "250")])
                .unwrap()
                .drain_timeout,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn invalid_values_name_their_variable() {
        for (var, value) in [
            ("KAFKA_BOOTSTRAP_SERVERS", "kafka"),
            ("KAFKA_BOOTSTRAP_SERVERS", "a:9092,b:0"),
            ("KAFKA_TOPIC_PARTITIONS", "0"),
            ("REDIS_URL", "http//nope"),
            ("LISTEN_ADDR", "8080"),
            ("TMPDIR", "relative/dir"),
            ("LOADGEN_TARGET_URL", "ftp://api"),
            ("SHUTDOWN_DRAIN_MS", "60000"),
            ("LAB_CONFIG", "/no/such/lab-config.json"),
        ] {
            let err = settings(&[(var, value)]).unwrap_err().to_string();
            assert!(err.starts_with(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn lab_config_is_read_and_checked() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(file, r#"{{"processing": {{"concurrency": 4, "workload": {{"cpuWeight": 1, "ioWeight": 0, "intensities": ["light"]}}}}}}"#).unwrap();
        let path = file.path().to_str().unwrap();
        let s = settings(&[("LAB_CONFIG", path)]).unwrap();
        assert_eq!(s.role(Role::Processing).concurrency, 4);
        assert_eq!(s.role(Role::Api), &Role::Api.defaults());

        let mut bad = tempfile::NamedTempFile::new().unwrap();
        write!(bad, r#"{{"analytics": {{"concurrency": 0, "workload": {{"cpuWeight": 1, "ioWeight": 0, "intensities": ["light"]}}}}}}"#).unwrap();
        let err = settings(&[("LAB_CONFIG", bad.path().to_str().unwrap())])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("LAB_CONFIG") && err.contains("analytics.concurrency"),
            "{err}"
        );
    }
}
