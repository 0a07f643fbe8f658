//! The labs in `examples/`: complete, known fields only (a typo would be silently dropped), free of
//! the problems the operator reports, consistent with `kind-config.yaml` and the workshop guide,
//! setting everything their exercise depends on, and loaded as their comments state (utilisation
//! from the workload targets) and as their exercise needs; and against a real API server, accepted
//! by the CRD schema (server-side dry run) and reconciled by the operator into the objects each
//! exercise needs, applied one after another like the workshop does.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing_lab_config::{LabConfig, Role};
use tracing_lab_operator::render::Requests;
use tracing_lab_operator::{TracingLab, TracingLabSpec, validate};
use tracing_lab_service::roles::stage;
use tracing_lab_tests::apiserver::TestCluster;
use tracing_lab_tests::lab::{rendered, stored};
use tracing_lab_tests::poll::eventually;
use tracing_lab_tests::{ChildProcess, ports, process};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// The workshop's order: the baseline first, then the exercises.
const EXAMPLES: [&str; 13] = [
    "baseline",
    "head-of-line-blocking",
    "scaled-consumers",
    "severe-workloads",
    "severe-oom",
    "tail-sampling",
    "tail-sampling-budget",
    "head-sampling",
    "remote-sampling",
    "fault-injection",
    "broken-propagation",
    "synchronous-hop",
    "tracing-cost",
];

fn example_path(name: &str) -> PathBuf {
    root().join("examples").join(format!("{name}.yaml"))
}

/// The example as written, as JSON.
fn raw(name: &str) -> Value {
    let text = std::fs::read_to_string(example_path(name))
        .unwrap_or_else(|e| panic!("examples/{name}.yaml: {e}"));
    serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("examples/{name}.yaml is not YAML: {e}"))
}

/// Paths of every scalar, list and empty map under `v`, with their values.
fn leaves(v: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                leaves(child, &format!("{prefix}.{k}"), out);
            }
        }
        _ => out.push((prefix.to_string(), v.clone())),
    }
}

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.trim_start_matches('.')
        .split('.')
        .try_fold(v, |v, k| v.get(k))
}

/// Numbers compare by value, in lists and their maps too: `2` written in YAML may come back as
/// `2.0` from a float field.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| same(x, y)))
        }
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

/// Leaves of `written` missing or changed in `kept`, e.g. fields a schema or a type dropped.
fn lost(written: &Value, kept: &Value) -> Vec<String> {
    let mut out = Vec::new();
    leaves(written, "", &mut out);
    out.into_iter()
        .filter(|(path, v)| !at(kept, path).is_some_and(|k| same(k, v)))
        .map(|(path, v)| format!("{path} = {v}"))
        .collect()
}

#[test]
fn examples_folder_holds_exactly_the_workshop_labs() {
    let mut found: Vec<String> = std::fs::read_dir(root().join("examples"))
        .expect("examples/")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    found.sort();
    let mut expected: Vec<String> = EXAMPLES.iter().map(|n| format!("{n}.yaml")).collect();
    expected.sort();
    assert_eq!(
        found, expected,
        "a new example needs a place in the workshop order above"
    );
}

#[test]
fn every_example_is_a_valid_lab_with_known_fields_only() {
    for name in EXAMPLES {
        let written = raw(name);
        assert_eq!(written["apiVersion"], "tracinglab.dev/v1alpha1", "{name}");
        assert_eq!(written["kind"], "TracingLab", "{name}");
        assert_eq!(
            written["metadata"]["name"], "lab",
            "{name}: every example reconfigures the same lab"
        );
        assert!(
            written["metadata"]["namespace"].is_null(),
            "{name}: the namespace is the user's choice"
        );

        let lab: TracingLab =
            serde_json::from_value(written.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let typed = serde_json::to_value(&lab).expect("serialises");
        let dropped = lost(&written["spec"], &typed["spec"]);
        assert!(
            dropped.is_empty(),
            "{name}: fields the TracingLab type does not know: {dropped:?}"
        );
        if let Err(problems) = validate::validated(&lab.spec) {
            panic!("{name}: the operator would report {problems:?}");
        }
    }
}

#[test]
fn examples_use_the_node_ports_kind_config_maps() {
    let kind = std::fs::read_to_string(root().join("kind-config.yaml")).expect("kind-config.yaml");
    let kind: Value = serde_saphyr::from_str(&kind).expect("kind-config.yaml is YAML");
    let mappings = kind["nodes"][0]["extraPortMappings"]
        .as_array()
        .expect("extraPortMappings");
    let host_port = |container: i64| {
        mappings
            .iter()
            .find(|m| m["containerPort"] == container)
            .and_then(|m| m["hostPort"].as_i64())
            .unwrap_or_else(|| panic!("kind-config.yaml maps no containerPort {container}"))
    };
    for name in EXAMPLES {
        let ports = &raw(name)["spec"]["access"]["nodePorts"];
        let api = ports["api"]
            .as_i64()
            .unwrap_or_else(|| panic!("{name}: access.nodePorts.api"));
        let ui = ports["jaegerUi"]
            .as_i64()
            .unwrap_or_else(|| panic!("{name}: access.nodePorts.jaegerUi"));
        assert_eq!(
            host_port(api),
            8080,
            "{name}: the api must answer on localhost:8080"
        );
        assert_eq!(
            host_port(ui),
            16686,
            "{name}: the Jaeger UI must answer on localhost:16686"
        );
    }
}

#[test]
fn workshop_guide_uses_every_example_and_only_existing_ones() {
    let guide = std::fs::read_to_string(root().join("docs/workshop.md")).expect("docs/workshop.md");
    for name in EXAMPLES {
        assert!(
            guide.contains(&format!("{name}.yaml")),
            "docs/workshop.md never uses examples/{name}.yaml"
        );
    }
    for (i, _) in guide.match_indices("examples/") {
        let rest = &guide[i + "examples/".len()..];
        let file: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
            .collect();
        let file = file.trim_end_matches('.');
        if file.ends_with(".yaml") {
            assert!(
                root().join("examples").join(file).is_file(),
                "docs/workshop.md names missing examples/{file}"
            );
        }
    }
}

fn typed(name: &str) -> TracingLab {
    serde_json::from_value(raw(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_example_sets_what_its_exercise_depends_on() {
    for name in EXAMPLES {
        let spec = &raw(name)["spec"];
        let generator = &spec["loadGenerator"];
        assert!(
            generator["enabled"].is_boolean(),
            "{name}: loadGenerator.enabled, so the example does not inherit the last one's"
        );
        if generator["enabled"] == true {
            assert!(
                generator["ordersPerSecond"].is_number(),
                "{name}: ordersPerSecond"
            );
        }
        for role in Role::ALL {
            let replicas = &spec["services"][role.name()]["replicas"];
            if (name, role) == ("head-of-line-blocking", Role::Processing) {
                // Left to `kubectl scale`, which the operator only respects while it is unset.
                assert!(
                    replicas.is_null(),
                    "{name}: {role} replicas must stay unset"
                );
            } else {
                assert!(replicas.is_i64(), "{name}: {role} replicas");
            }
        }
    }
    // The reset: nothing of an exercise survives it.
    let baseline = typed("baseline").spec;
    assert!(!baseline.load_generator.enabled);
    assert_eq!(baseline.sampling, Default::default());
    assert_eq!(baseline.quote, Default::default());
    assert_eq!(baseline.span_metrics, Default::default());
    for role in Role::ALL {
        let service = baseline.services.get(role);
        assert_eq!(service.replicas, Some(1), "baseline: {role}");
        assert!(service.resources.is_none(), "baseline: {role}");
        let settings = service.overrides.resolve(role);
        assert_eq!(settings.faults, Default::default(), "baseline: {role}");
        assert_eq!(settings.concurrency, 1, "baseline: {role}");
    }
}

/// A kind node as the README sizes it: Docker's VM with 4 CPUs and 8 GB.
const KIND_NODE: Requests = Requests {
    cpu_millis: 4000,
    memory_mib: 8192,
};
/// What kind's own pods (kubeadm's control plane, CoreDNS, kindnet) and the operator request.
const KIND_SYSTEM: Requests = Requests {
    cpu_millis: 950 + 50,
    memory_mib: 290 + 64,
};

/// What a lab of `spec` requests, as the operator renders it.
fn requests(spec: Value) -> Requests {
    let lab = stored("lab", "student", spec).unwrap();
    rendered(&lab).unwrap().0.requests()
}

/// How many such labs fit one kind node, and the resource that binds first.
fn labs_per_node(lab: Requests) -> (u64, &'static str) {
    let by_cpu = (KIND_NODE.cpu_millis - KIND_SYSTEM.cpu_millis) / lab.cpu_millis;
    let by_memory = (KIND_NODE.memory_mib - KIND_SYSTEM.memory_mib) / lab.memory_mib;
    if by_cpu <= by_memory {
        (by_cpu, "CPU")
    } else {
        (by_memory, "memory")
    }
}

#[test]
fn readme_states_what_one_lab_requests_and_how_many_fit_a_kind_node() {
    let one = requests(serde_json::json!({}));
    let with_loadgen = requests(serde_json::json!({"loadGenerator": {"enabled": true}}));
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let stated = format!(
        "One lab requests {}m CPU and {} MiB of memory ({}m and {} MiB with the load generator)",
        one.cpu_millis, one.memory_mib, with_loadgen.cpu_millis, with_loadgen.memory_mib
    );
    assert!(readme.contains(&stated), "README.md must say: {stated}");
    let (fits, binding) = labs_per_node(with_loadgen);
    let stated = format!("{fits} labs fit: {binding} binds first");
    assert!(readme.contains(&stated), "README.md must say: {stated}");
}

#[test]
fn readme_sizes_every_example_for_a_kind_node() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let table: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("| `") && l.contains(".yaml` |"))
        .collect();
    let expected: Vec<String> = EXAMPLES
        .iter()
        .map(|name| {
            let lab = requests(raw(name)["spec"].clone());
            let (fits, binding) = labs_per_node(lab);
            format!(
                "| `{name}.yaml` | {}m | {} MiB | {fits} ({binding}) |",
                lab.cpu_millis, lab.memory_mib
            )
        })
        .collect();
    assert_eq!(
        table, expected,
        "README.md's sizing table, in the workshop's order"
    );
}

/// Orders per second a student posts by hand while the load generator is off.
const BY_HAND: f64 = 1.0;

/// How busy one consumer service's consumers are: orders/s reaching it × cost per order ÷
/// consumers.
#[derive(Debug, PartialEq)]
struct Utilisation {
    rate: f64,
    /// Seconds of work per order: the steps' expected wall time (from the workload targets) plus
    /// injected latency.
    cost: f64,
    consumers: u32,
}

impl Utilisation {
    fn percent(&self) -> f64 {
        self.rate * self.cost / f64::from(self.consumers) * 100.0
    }
}

/// `role`'s utilisation in `spec`, with `replicas` pods (else the spec's, else 1). Orders failed
/// on purpose upstream never reach it; consumers beyond the partitions get no messages.
fn utilisation(spec: &TracingLabSpec, role: Role, replicas: Option<i32>) -> Utilisation {
    let config = spec.lab_config();
    let offered = if spec.load_generator.enabled {
        spec.load_generator.orders_per_second
    } else {
        BY_HAND
    };
    let upstream = Role::ALL.iter().take_while(|r| **r != role);
    let rate = upstream.fold(offered, |rate, r| {
        rate * (1.0 - config.role(*r).faults.error_rate)
    });
    let settings = config.role(role);
    let steps = stage::steps(role).1.len() as f64;
    let cost = (steps * settings.workload.expected_wall_ms()
        + settings.faults.extra_latency_ms as f64)
        / 1000.0;
    let pods = replicas
        .or(spec.services.get(role).replicas)
        .unwrap_or(1)
        .min(spec.kafka.partitions);
    Utilisation {
        rate,
        cost,
        consumers: u32::try_from(pods).unwrap_or(0) * settings.concurrency,
    }
}

/// The example's `# utilisation[ after scaling to N replicas]: <service> R orders/s × C s ÷ N
/// consumers = P %` comment lines: (service, replicas, figures, percent).
fn stated_utilisations(name: &str) -> Vec<(Role, Option<i32>, Utilisation, f64)> {
    let text = std::fs::read_to_string(example_path(name)).expect("example");
    let line = regex::Regex::new(
        r"^# utilisation(?: after scaling to (\d+) replicas)?: (\w+) ([\d.]+) orders?/s × ([\d.]+) s ÷ (\d+) consumers? = (\d+) %$",
    )
    .expect("regex");
    text.lines()
        .filter(|l| l.starts_with("# utilisation"))
        .map(|l| {
            let c = line
                .captures(l)
                .unwrap_or_else(|| panic!("{name}: malformed utilisation comment {l:?}"));
            let number = |i: usize| c[i].parse::<f64>().expect("a number");
            (
                c[2].parse::<Role>()
                    .unwrap_or_else(|e| panic!("{name}: {e}")),
                c.get(1).map(|r| r.as_str().parse().expect("replicas")),
                Utilisation {
                    rate: number(3),
                    cost: number(4),
                    consumers: c[5].parse().expect("consumers"),
                },
                number(6),
            )
        })
        .collect()
}

#[test]
fn every_example_states_the_utilisation_its_exercise_needs() {
    for name in EXAMPLES {
        let spec = typed(name).spec;
        let stated = stated_utilisations(name);
        for role in Role::CONSUMERS {
            assert!(
                stated
                    .iter()
                    .any(|(r, scaled, ..)| *r == role && scaled.is_none()),
                "{name}: no `# utilisation: {role} ...` comment"
            );
        }
        for (role, replicas, said, percent) in &stated {
            let real = utilisation(&spec, *role, *replicas);
            let close = (said.rate - real.rate).abs() < 0.005
                && (said.cost - real.cost).abs() <= (real.cost * 0.005).max(0.0006)
                && said.consumers == real.consumers
                && (percent - real.percent()).abs() <= 1.0;
            assert!(
                close,
                "{name}: the comment says {role} {said:?} = {percent} %, the spec and the \
                 workload targets give {real:?} = {:.1} %",
                real.percent()
            );
        }

        let busiest = Role::CONSUMERS
            .iter()
            .map(|r| utilisation(&spec, *r, None).percent())
            .fold(0.0, f64::max);
        match name {
            // Nothing queues, so the waiting in the next exercise stands out.
            "baseline" => assert!(busiest < 10.0, "{name}: {busiest:.0} %"),
            "head-of-line-blocking" => {
                // One pod: lag grows steadily. Three: it drains within a minute.
                let one = utilisation(&spec, Role::Processing, None).percent();
                let three = utilisation(&spec, Role::Processing, Some(3)).percent();
                assert!(one >= 125.0, "{name}: processing {one:.0} % with one pod");
                assert!(
                    three < 70.0,
                    "{name}: processing {three:.0} % with three pods"
                );
                for role in [Role::Notification, Role::Analytics] {
                    let u = utilisation(&spec, role, None).percent();
                    assert!(
                        u < 10.0,
                        "{name}: only processing may block, {role} {u:.0} %"
                    );
                }
            }
            // Queues must not grow, or every trace turns slow and is kept.
            "tail-sampling" => assert!(busiest < 50.0, "{name}: {busiest:.0} %"),
            "severe-workloads" => assert!(busiest < 80.0, "{name}: {busiest:.0} %"),
            // Orders are posted by hand in a burst: processing must hold two severe calls at once.
            "severe-oom" => assert!(busiest >= 100.0, "{name}: {busiest:.0} %"),
            _ => assert!(busiest < 70.0, "{name}: {busiest:.0} %"),
        }
    }
}

#[test]
fn utilisation_follows_rate_cost_errors_and_consumers() {
    let spec: TracingLabSpec = serde_json::from_value(serde_json::json!({
        "kafka": {"partitions": 2},
        "loadGenerator": {"enabled": true, "ordersPerSecond": 2.0},
        "services": {
            "processing": {"replicas": 4, "concurrency": 3, "workload": {"cpuWeight": 1, "ioWeight": 0, "intensities": ["heavy"]}},
            "notification": {"faults": {"errorRate": 0.5}, "workload": {"cpuWeight": 0, "ioWeight": 1, "intensities": ["heavy"]}},
            "analytics": {"faults": {"extraLatencyMs": 500}, "workload": {"enabled": false}},
        },
    }))
    .expect("a spec");
    // Two steps of 2 s; four pods but two partitions: two pods × three messages.
    let processing = utilisation(&spec, Role::Processing, None);
    assert_eq!(
        processing,
        Utilisation {
            rate: 2.0,
            cost: 4.0,
            consumers: 6
        }
    );
    assert!((processing.percent() - 133.3).abs() < 0.1);
    assert_eq!(utilisation(&spec, Role::Processing, Some(1)).consumers, 3);
    // Half the orders fail in notification and never reach analytics.
    let analytics = utilisation(&spec, Role::Analytics, None);
    assert_eq!((analytics.rate, analytics.cost), (1.0, 0.5));
}

#[test]
fn lost_fields_are_detected() {
    let written = serde_json::json!({"a": {"b": 1, "c": [1, 2], "d": {}}, "e": 2, "f": [{"r": 1}]});
    assert!(
        lost(
            &written,
            &serde_json::json!({"a": {"b": 1.0, "c": [1, 2.0], "d": {}}, "e": 2, "f": [{"r": 1.0}]})
        )
        .is_empty()
    );
    assert_eq!(
        lost(
            &written,
            &serde_json::json!({"a": {"b": 1, "c": [1, 2], "d": {}}, "e": 2, "f": [{"r": 1, "s": 2}]})
        ),
        vec![r#".f = [{"r":1}]"#]
    );
    assert_eq!(
        lost(
            &written,
            &serde_json::json!({"a": {"b": 1, "c": [1, 2], "d": {}}, "f": [{"r": 1}]})
        ),
        vec![".e = 2"]
    );
    assert_eq!(
        lost(
            &written,
            &serde_json::json!({"a": {"c": [1], "d": {}}, "e": 2, "f": [{"r": 1}]})
        )
        .len(),
        2
    );
}

// ---- against a real API server and the operator ----------------------------------------------

const NS: &str = "workshop";
const TIMEOUT: Duration = Duration::from_secs(30);

/// What the operator must have made of one example.
async fn check_reconciled(client: &Client, name: &str, lab: &TracingLab) {
    let spec = &lab.spec;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let mut want: Vec<String> = [
        "analytics",
        "api",
        "collector",
        "jaeger",
        "notification",
        "processing",
        "redis",
    ]
    .iter()
    .map(|c| format!("lab-{c}"))
    .collect();
    if spec.load_generator.enabled {
        want.push("lab-loadgen".into());
    }
    if spec.span_metrics.enabled {
        want.push("lab-prometheus".into());
    }
    want.sort();
    eventually(
        &format!("{name}: the lab's Deployments"),
        TIMEOUT,
        || async {
            let lp = ListParams::default().labels("app.kubernetes.io/instance=lab");
            let mut names: Vec<String> = deployments
                .list(&lp)
                .await
                .map_err(|e| e.to_string())?
                .items
                .iter()
                .map(|d| d.name_any())
                .collect();
            names.sort();
            (names == want)
                .then_some(())
                .ok_or_else(|| format!("{names:?}"))
        },
    )
    .await;

    // The services' configuration document is the example's, resolved.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let config = config_maps
        .get("lab-config")
        .await
        .expect("lab-config ConfigMap");
    let document = config
        .data
        .unwrap_or_default()
        .remove(tracing_lab_config::FILE_NAME)
        .expect("lab-config.json");
    let config = LabConfig::parse(&document).expect("the operator writes a valid document");
    assert_eq!(config, spec.lab_config(), "{name}: lab-config.json");

    for role in Role::ALL {
        let d = deployments
            .get(&format!("lab-{role}"))
            .await
            .expect("service Deployment");
        if let Some(replicas) = spec.services.get(role).replicas {
            assert_eq!(
                d.spec.and_then(|s| s.replicas),
                Some(replicas),
                "{name}: {role} replicas"
            );
        }
    }
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let api = services.get("lab-api").await.expect("api Service");
    let node_port = api
        .spec
        .and_then(|s| s.ports)
        .and_then(|p| p.first().and_then(|p| p.node_port));
    assert_eq!(
        node_port,
        spec.access.node_ports.as_ref().map(|p| p.api),
        "{name}: api node port"
    );
    let collector = config_maps
        .get("lab-collector-config")
        .await
        .expect("collector ConfigMap");
    let collector = collector
        .data
        .unwrap_or_default()
        .into_values()
        .collect::<String>();
    assert_eq!(
        collector.contains("tail_sampling"),
        spec.sampling.tail.enabled,
        "{name}: tail sampling in the collector"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_example_is_accepted_by_the_api_server_and_reconciled_in_workshop_order() {
    let workshop = Workshop::start(&[NS]).await;
    // Server-side apply, as `kubectl apply --server-side` would: each example replaces the last.
    for name in EXAMPLES {
        let lab = workshop.apply(NS, name).await;
        let status = lab.status.as_ref().expect("status");
        let degraded = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded")
            .expect("Degraded condition");
        assert_eq!(degraded.status, "False", "{name}: {}", degraded.message);
        check_reconciled(&workshop.cluster.client(), name, &lab).await;
    }
}

/// An API server with the CRD and the namespaces, and the operator binary reconciling them.
struct Workshop {
    _operator: ChildProcess,
    cluster: TestCluster,
}

impl Workshop {
    async fn start(namespaces: &[&str]) -> Self {
        let cluster = TestCluster::start().await.expect("API server starts");
        cluster.install_lab_crd().await.expect("the CRD installs");
        for ns in namespaces {
            cluster.create_namespace(ns).await.expect("namespace");
        }
        let listen = format!("127.0.0.1:{}", ports::free_port());
        let mut command =
            process::project_command("tracing-lab-operator").expect("operator binary");
        command
            .args(["run", "--listen-addr", &listen])
            .env("KUBECONFIG", cluster.kubeconfig());
        let mut operator = ChildProcess::spawn("operator", command).expect("operator starts");
        operator
            .wait_http_ok(&format!("http://{listen}/readyz"), TIMEOUT)
            .await
            .expect("operator ready");
        Self {
            _operator: operator,
            cluster,
        }
    }

    /// Applies example `name` into `ns` server-side, as the workshop does, after checking that the
    /// schema keeps every field it sets; returns the lab once the operator reconciled it.
    async fn apply(&self, ns: &str, name: &str) -> TracingLab {
        self.apply_written(ns, name, raw(name)).await
    }

    async fn apply_written(&self, ns: &str, name: &str, written: Value) -> TracingLab {
        let client = self.cluster.client();
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<TracingLab>(&()));
        let labs: Api<TracingLab> = Api::namespaced(client, ns);
        let object: DynamicObject = serde_json::from_value(written.clone()).expect("an object");
        let params = PatchParams::apply("workshop").force();

        // A field the schema lacks would be pruned silently: every field must come back.
        let dry = api
            .patch("lab", &params.clone().dry_run(), &Patch::Apply(&object))
            .await;
        let dry = dry.unwrap_or_else(|e| panic!("{name}: the API server rejects it: {e}"));
        let dropped = lost(&written["spec"], &dry.data["spec"]);
        assert!(
            dropped.is_empty(),
            "{name}: the CRD schema drops {dropped:?}"
        );

        let applied = api
            .patch("lab", &params, &Patch::Apply(&object))
            .await
            .expect("applied");
        let generation = applied.metadata.generation.expect("generation");
        eventually(
            &format!("{name}: status of generation {generation}"),
            TIMEOUT,
            || async {
                let lab = labs.get("lab").await.map_err(|e| e.to_string())?;
                let seen = lab.status.as_ref().and_then(|s| s.observed_generation);
                (seen == Some(generation))
                    .then_some(lab)
                    .ok_or_else(|| format!("observedGeneration {seen:?}"))
            },
        )
        .await
    }

    /// What runs in `ns`: each workload's replicas and pod template, each ConfigMap's data, with
    /// the namespace's name taken out so that two namespaces compare.
    async fn running(&self, ns: &str) -> Value {
        let client = self.cluster.client();
        let params = ListParams::default().labels("app.kubernetes.io/instance=lab");
        let mut out = serde_json::Map::new();
        for d in Api::<Deployment>::namespaced(client.clone(), ns)
            .list(&params)
            .await
            .unwrap()
        {
            let spec = d.spec.clone().unwrap_or_default();
            out.insert(
                d.name_any(),
                serde_json::json!([spec.replicas, spec.template]),
            );
        }
        for s in Api::<StatefulSet>::namespaced(client.clone(), ns)
            .list(&params)
            .await
            .unwrap()
        {
            let spec = s.spec.clone().unwrap_or_default();
            out.insert(
                s.name_any(),
                serde_json::json!([spec.replicas, spec.template]),
            );
        }
        for m in Api::<ConfigMap>::namespaced(client, ns)
            .list(&params)
            .await
            .unwrap()
        {
            out.insert(m.name_any(), serde_json::json!(m.data));
        }
        let text = Value::Object(out).to_string().replace(ns, "NAMESPACE");
        serde_json::from_str(&text).unwrap()
    }
}

/// Paths where `a` and `b` differ, with both values.
fn differences(a: &Value, b: &Value, path: &str) -> Vec<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .keys()
            .chain(y.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .flat_map(|k| {
                let null = Value::Null;
                let (l, r) = (x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null));
                differences(l, r, &format!("{path}.{k}"))
            })
            .collect(),
        _ if a == b => Vec::new(),
        _ => vec![format!("{path}: {a} vs {b}")],
    }
}

/// Whatever example came before, applying one gives the same lab as applying it to a new
/// namespace: every example sets what its exercise depends on, and the operator drops what an
/// earlier one set (head-of-line blocking's processing replicas return to the default 1).
#[tokio::test]
async fn applying_an_example_gives_the_same_lab_whatever_came_before() {
    let fresh: Vec<String> = EXAMPLES.iter().map(|n| format!("fresh-{n}")).collect();
    let mut namespaces: Vec<&str> = fresh.iter().map(String::as_str).collect();
    namespaces.push(NS);
    let workshop = Workshop::start(&namespaces).await;
    let mut alone = std::collections::BTreeMap::new();
    for (name, ns) in EXAMPLES.iter().zip(&fresh) {
        // Node ports are the cluster's: only the workshop's namespace may claim them.
        let mut written = raw(name);
        written["spec"]
            .as_object_mut()
            .expect("a spec")
            .remove("access");
        workshop.apply_written(ns, name, written).await;
        alone.insert(*name, workshop.running(ns).await);
    }
    for before in EXAMPLES {
        for name in EXAMPLES.iter().filter(|n| **n != before) {
            workshop.apply(NS, before).await;
            workshop.apply(NS, name).await;
            let running = workshop.running(NS).await;
            assert!(
                running == alone[name],
                "{name} applied after {before} differs from {name} applied alone: {}",
                differences(&alone[name], &running, "").join("; ")
            );
        }
    }
}

/// A class strips node ports with `sed '/^  access:/,$d'` (README, "A class on one cluster"), so
/// `access` must close every example.
#[test]
fn access_is_the_last_block_of_every_example() {
    for name in EXAMPLES {
        let text = std::fs::read_to_string(example_path(name)).unwrap();
        let at = text
            .find("\n  access:\n")
            .unwrap_or_else(|| panic!("{name}: no `access` block"));
        let after: Vec<&str> = text[at + 1..].lines().skip(1).collect();
        assert!(
            after
                .iter()
                .all(|l| l.starts_with("    ") || l.trim().is_empty()),
            "{name}: something follows `access`: {after:?}"
        );
    }
}
