//! The operator and the services agree: the four service containers the operator renders run, as
//! rendered (arguments, every environment variable, the lab configuration document from the
//! ConfigMap), against a real broker, Redis and OTLP receiver; only the in-cluster addresses are
//! pointed at the local servers. An order then crosses all four services as one trace carrying the
//! resource attributes the operator set, and topics get the lab's partition count.

use k8s_openapi::api::core::v1::{Container, EnvVar};
use std::collections::BTreeMap;
use std::time::Duration;
use tracing_lab_config::Role;
use tracing_lab_operator::TracingLab;
use tracing_lab_operator::render::{self, LabRef};
use tracing_lab_tests::process::project_command;
use tracing_lab_tests::{ChildProcess, KafkaBroker, OtlpReceiver, RedisServer, ports};

const LAB: &str = "shop";
const NAMESPACE: &str = "class-1";

fn lab() -> TracingLab {
    let light = serde_json::json!({"cpuWeight": 1, "ioWeight": 1, "intensities": ["light"]});
    serde_json::from_value(serde_json::json!({
        "apiVersion": "tracinglab.dev/v1alpha1", "kind": "TracingLab",
        "metadata": {"name": LAB, "namespace": NAMESPACE, "uid": "0000-1111"},
        "spec": {
            "kafka": {"partitions": 4},
            "sampling": {
                "head": {"sampler": "parentbased_traceidratio", "ratio": 1.0},
                "perService": {"processing": {"sampler": "parentbased_always_on"}},
            },
            "services": {
                "api": {"workload": light},
                "processing": {"workload": light, "concurrency": 2},
                "notification": {"workload": light},
                "analytics": {"workload": light},
            },
        },
    }))
    .expect("a TracingLab")
}

/// The container's environment as the kubelet would give it: field references filled in for a
/// pod of the given name, `$(VAR)` references expanded from earlier variables.
fn kubelet_env(env: &[EnvVar], pod: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for var in env {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                let path = &from
                    .field_ref
                    .as_ref()
                    .expect("only field references")
                    .field_path;
                match path.as_str() {
                    "metadata.name" => pod.to_string(),
                    "metadata.namespace" => NAMESPACE.to_string(),
                    other => panic!("unexpected field reference {other}"),
                }
            }
            (None, None) => String::new(),
        };
        let expanded = out.iter().fold(value, |v, (name, val)| {
            v.replace(&format!("$({name})"), val)
        });
        out.push((var.name.clone(), expanded));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_service_containers_run_and_trace_an_order() {
    let broker = KafkaBroker::start().await.unwrap();
    let redis = RedisServer::start().await.unwrap();
    let otlp = OtlpReceiver::start().await.unwrap();
    let lab = lab();
    let children = render::render(&LabRef::new(&lab).unwrap(), &lab.spec);

    let config_dir = tempfile::tempdir().unwrap();
    let config_map = children
        .config_maps
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some("shop-config"))
        .expect("the lab configuration ConfigMap");
    let document = &config_map.data.as_ref().unwrap()[tracing_lab_config::FILE_NAME];
    let config_path = config_dir.path().join(tracing_lab_config::FILE_NAME);
    std::fs::write(&config_path, document).unwrap();

    let api_port = ports::free_port();
    let mut services = BTreeMap::new();
    for role in Role::ALL {
        let name = format!("{LAB}-{role}");
        let deployment = children
            .deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(&name))
            .unwrap_or_else(|| panic!("{name} rendered"));
        let pod = deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        let container: &Container = &pod.containers[0];
        let mut env = kubelet_env(
            container.env.as_deref().unwrap_or_default(),
            &format!("{name}-0"),
        );
        let port = if role == Role::Api {
            api_port
        } else {
            ports::free_port()
        };
        // In-cluster addresses become the local servers; everything else runs as rendered.
        let local: BTreeMap<&str, String> = BTreeMap::from([
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("REDIS_URL", redis.url()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.grpc_endpoint()),
            ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
            (
                tracing_lab_config::ENV_VAR,
                config_path.display().to_string(),
            ),
            ("TMPDIR", config_dir.path().display().to_string()),
        ]);
        for (key, value) in &local {
            let slot = env.iter_mut().find(|(k, _)| k == key);
            slot.unwrap_or_else(|| panic!("{name} is rendered without {key}"))
                .1 = value.clone();
        }
        let mut command = project_command("tracing-lab-service").unwrap();
        command
            .args(container.args.as_deref().unwrap_or_default())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env);
        let mut process = ChildProcess::spawn(role.name(), command).unwrap();
        process
            .wait_http_ok(
                &format!("http://127.0.0.1:{port}/ready"),
                Duration::from_secs(60),
            )
            .await
            .unwrap_or_else(|e| panic!("{name} as rendered does not become ready: {e:#}"));
        services.insert(role, process);
    }

    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{api_port}/order"))
        .json(&serde_json::json!({"item": "contract", "quantity": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        202,
        "{}",
        response.text().await.unwrap()
    );
    let spans = otlp
        .wait_for(
            |spans| spans.iter().any(|s| s.name == "analyze_order"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let analyze = spans.iter().find(|s| s.name == "analyze_order").unwrap();
    let trace: Vec<_> = spans
        .iter()
        .filter(|s| s.trace_id == analyze.trace_id)
        .collect();
    for role in Role::ALL {
        let span = trace
            .iter()
            .find(|s| s.service_name == role.name())
            .unwrap_or_else(|| panic!("no {role} span in the order's trace"));
        let resource = |key: &str| {
            span.resource
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        assert_eq!(resource("service.namespace").as_deref(), Some(LAB));
        assert_eq!(resource("k8s.namespace.name").as_deref(), Some(NAMESPACE));
        assert_eq!(resource("k8s.pod.name"), Some(format!("{LAB}-{role}-0")));
    }
    let partitions = broker.end_offsets("orders").await.unwrap().len();
    assert_eq!(partitions, 4, "topics get spec.kafka.partitions");
    drop(services);
}
