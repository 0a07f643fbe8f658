//! The Helm chart `charts/tracing-lab`: `helm lint --strict` and `helm template` with the defaults and
//! every `ci/*-values.yaml`, its values schema, the CRD it ships (the very file in `crds/`), and,
//! installed into a real API server, RBAC that lets the operator do everything it does (the operator
//! runs with the chart's ServiceAccount token).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tracing_lab_operator::TracingLab;
use tracing_lab_tests::apiserver::TestCluster;
use tracing_lab_tests::poll::eventually;
use tracing_lab_tests::{ChildProcess, assets, pods, ports, process};

const RELEASE: &str = "tlab";
const RELEASE_NS: &str = "tracing-lab-system";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

fn chart() -> PathBuf {
    root().join("charts/tracing-lab")
}

/// helm with private cache/config/data folders, so tests never touch the user's helm setup.
struct Helm {
    bin: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    /// helm 4, what `make install` runs here.
    fn new() -> Self {
        Self::named("helm")
    }

    /// helm 3: the chart supports both.
    fn v3() -> Self {
        let helm = Self::named("helm3");
        let version = helm.ok(&["version", "--template", "{{.Version}}"]);
        assert!(version.starts_with("v3."), "{version}");
        helm
    }

    fn named(binary: &str) -> Self {
        Self {
            bin: assets::find(binary).expect(binary),
            home: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .env("HELM_CACHE_HOME", self.home.path().join("cache"))
            .env("HELM_CONFIG_HOME", self.home.path().join("config"))
            .env("HELM_DATA_HOME", self.home.path().join("data"))
            .output()
            .expect("running helm")
    }

    /// Stdout of a helm command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "helm {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("helm prints UTF-8")
    }
}

/// The ci/ values files: each documented option set to something other than its default.
fn values_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .expect("charts/tracing-lab/ci")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    files
}

/// `helm template` output as JSON objects, one per rendered document.
fn render(helm: &Helm, extra: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().expect("UTF-8 path"),
        "--namespace",
        RELEASE_NS,
    ];
    args.extend_from_slice(extra);
    let text = helm.ok(&args);
    serde_saphyr::from_multiple::<Value>(&text)
        .expect("helm template prints YAML")
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(objects, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, got {}", found.len());
    found[0]
}

fn values_of(file: &Path) -> Value {
    let text = std::fs::read_to_string(file).expect("values file");
    serde_saphyr::from_str(&text).expect("values file is YAML")
}

/// What every rendering must satisfy, whatever the values.
fn check_invariants(objects: &[Value], values: &Value, what: &str) {
    let deployment = one(objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "{what}");
    let c = &containers[0];
    let port = values["httpPort"].as_i64().unwrap_or(8080);

    assert_eq!(
        deployment["spec"]["replicas"], 1,
        "{what}: one operator per release"
    );
    assert_eq!(c["args"][0], "run", "{what}");
    assert!(
        c["args"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("--listen-addr=0.0.0.0:{port}"))),
        "{what}"
    );
    assert_eq!(c["ports"][0]["containerPort"], port, "{what}");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{what}");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{what}");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "http", "{what}");

    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{what}"
    );
    for key in ["requests", "limits"] {
        assert!(
            c["resources"][key]["cpu"].is_string() && c["resources"][key]["memory"].is_string(),
            "{what}: {key}"
        );
    }

    // Pods are selected by the stable selector labels, which the pod template carries.
    let selector = deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("selector");
    for (k, v) in selector {
        assert_eq!(
            &deployment["spec"]["template"]["metadata"]["labels"][k], v,
            "{what}: pod label {k}"
        );
    }
    // Recommended labels on every object the release owns.
    for o in objects.iter().filter(|o| o["kind"] != "TracingLab") {
        let labels = &o["metadata"]["labels"];
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "helm.sh/chart",
        ] {
            assert!(
                labels[key].is_string(),
                "{what}: {} {} lacks label {key}",
                o["kind"],
                o["metadata"]["name"]
            );
        }
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{what}");
    }

    // The operator's watch scope, its RBAC and the flag agree.
    let watch = values["watchNamespace"].as_str().unwrap_or_default();
    let args = c["args"].as_array().unwrap();
    assert_eq!(
        args.contains(&json!(format!("--namespace={watch}"))),
        !watch.is_empty(),
        "{what}"
    );
    let sa = pod["serviceAccountName"]
        .as_str()
        .expect("serviceAccountName");
    if values["rbac"]["create"] != false {
        let (role_kind, binding_kind) = if watch.is_empty() {
            ("ClusterRole", "ClusterRoleBinding")
        } else {
            ("Role", "RoleBinding")
        };
        let role = one(objects, role_kind);
        let binding = one(objects, binding_kind);
        assert_eq!(
            role["rules"],
            expected_rules(),
            "{what}: RBAC drifted from what the operator calls"
        );
        assert_eq!(binding["roleRef"]["kind"], role_kind, "{what}");
        assert_eq!(
            binding["roleRef"]["name"], role["metadata"]["name"],
            "{what}"
        );
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": sa, "namespace": RELEASE_NS}]),
            "{what}"
        );
        if !watch.is_empty() {
            assert_eq!(role["metadata"]["namespace"], watch, "{what}");
            assert_eq!(binding["metadata"]["namespace"], watch, "{what}");
            assert!(
                of_kind(objects, "ClusterRole").is_empty(),
                "{what}: no cluster-wide rights in namespaced mode"
            );
        }
    } else {
        assert!(
            of_kind(objects, "ClusterRole").is_empty() && of_kind(objects, "Role").is_empty(),
            "{what}"
        );
    }
    let service_accounts = of_kind(objects, "ServiceAccount");
    if values["serviceAccount"]["create"] == false {
        assert!(service_accounts.is_empty(), "{what}");
    } else {
        assert_eq!(
            one(objects, "ServiceAccount")["metadata"]["name"],
            sa,
            "{what}"
        );
    }

    let services = of_kind(objects, "Service");
    if values["metrics"]["service"]["enabled"] == false {
        assert!(services.is_empty(), "{what}");
    } else {
        let svc = one(objects, "Service");
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http", "{what}");
        assert_eq!(
            svc["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"],
            "{what}"
        );
    }

    let labs = of_kind(objects, "TracingLab");
    if values["sampleLab"]["enabled"] == true {
        let lab = one(objects, "TracingLab");
        let ns = if watch.is_empty() { RELEASE_NS } else { watch };
        assert_eq!(
            lab["metadata"]["namespace"], ns,
            "{what}: the sample lab must be where the operator looks"
        );
        assert_eq!(lab["apiVersion"], "tracinglab.dev/v1alpha1", "{what}");
        let spec = &values["sampleLab"]["spec"];
        assert_eq!(
            lab["spec"],
            if spec.is_null() {
                json!({})
            } else {
                spec.clone()
            },
            "{what}"
        );
    } else {
        assert!(labs.is_empty(), "{what}");
    }
}

/// The rules the operator needs: see the chart's `tracing-lab.rbacRules`.
fn expected_rules() -> Value {
    let children = json!(["list", "watch", "create", "patch", "delete"]);
    json!([
        {"apiGroups": ["tracinglab.dev"], "resources": ["tracinglabs"], "verbs": ["list", "watch"]},
        {"apiGroups": ["tracinglab.dev"], "resources": ["tracinglabs/status"], "verbs": ["patch"]},
        {"apiGroups": ["tracinglab.dev"], "resources": ["tracinglabs/finalizers"], "verbs": ["update"]},
        {"apiGroups": [""], "resources": ["configmaps", "services"], "verbs": children},
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": children},
        {"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ])
}

#[test]
fn lints_strictly_with_defaults_and_every_values_file_with_helm_4_and_3() {
    for helm in [Helm::new(), Helm::v3()] {
        let chart = chart();
        let chart = chart.to_str().unwrap();
        let out = helm.ok(&["lint", "--strict", chart]);
        assert!(out.contains("0 chart(s) failed"), "{out}");
        for file in values_files() {
            let out = helm.ok(&["lint", "--strict", chart, "-f", file.to_str().unwrap()]);
            assert!(
                out.contains("0 chart(s) failed"),
                "{}: {out}",
                file.display()
            );
        }
    }
}

#[test]
fn renders_with_defaults() {
    let helm = Helm::new();
    let objects = render(&helm, &[]);
    check_invariants(&objects, &json!({}), "defaults");
    let app_version = std::fs::read_to_string(chart().join("Chart.yaml"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("appVersion: ")
                .map(|v| v.trim_matches('"').to_string())
        })
        .expect("Chart.yaml appVersion");
    // The images `make images` builds and the operator's default service image carry the crate
    // version; the chart must default to the same tag.
    assert_eq!(
        app_version,
        tracing_lab_operator::render::services::default_image()
            .rsplit(':')
            .next()
            .unwrap(),
        "Chart.yaml appVersion must equal the workspace version"
    );
    let c = &one(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"],
        format!("tracing-lab-operator:{app_version}"),
        "image tag defaults to appVersion"
    );
    assert_eq!(
        one(&objects, "ClusterRole")["metadata"]["name"],
        "tlab-tracing-lab"
    );
    assert!(
        of_kind(&objects, "CustomResourceDefinition").is_empty(),
        "the CRD comes from crds/, not templates/"
    );
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 5, "{kinds:?}");
}

#[test]
fn renders_with_every_values_file() {
    let helm = Helm::new();
    let files = values_files();
    assert!(files.len() >= 3, "ci/ holds the documented option sets");
    for file in files {
        let path = file.to_str().unwrap();
        let objects = render(&helm, &["-f", path]);
        check_invariants(&objects, &values_of(&file), path);
    }
}

#[test]
fn every_documented_value_is_exercised_by_a_values_file() {
    // A key in values.yaml that no ci/ file changes is an option nobody renders.
    let defaults = values_of(&chart().join("values.yaml"));
    let files: Vec<Value> = values_files().iter().map(|f| values_of(f)).collect();
    let mut untested = Vec::new();
    walk_leaves(&defaults, "", &mut |path, default| {
        let changed = files
            .iter()
            .any(|f| lookup(f, path).is_some_and(|v| v != default));
        if !changed {
            untested.push(path.to_string());
        }
    });
    // extraArgs has no safe non-default: any extra flag is for a future operator version.
    untested.retain(|p| p != "extraArgs");
    assert!(
        untested.is_empty(),
        "values no ci/*-values.yaml sets to a non-default: {untested:?}"
    );
}

/// Values whose content is free-form Kubernetes or TracingLab YAML: compared as a whole.
const FREE_FORM: [&str; 4] = [
    "podSecurityContext",
    "securityContext",
    "affinity",
    "sampleLab.spec",
];

fn walk_leaves(v: &Value, prefix: &str, f: &mut dyn FnMut(&str, &Value)) {
    match v.as_object() {
        Some(map) if !map.is_empty() && !FREE_FORM.contains(&prefix) => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk_leaves(child, &path, f);
            }
        }
        _ => f(prefix, v),
    }
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

#[test]
fn values_schema_rejects_nonsense_naming_the_value() {
    let helm = Helm::new();
    let chart = chart();
    let chart = chart.to_str().unwrap();
    // Helm 4 names a value by its JSON pointer, an unknown one by its name in quotes.
    for (set, named) in [
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("httpPort=0", "/httpPort"),
        ("watchNamespace=Not_A_Namespace", "/watchNamespace"),
        ("sampleLab.name=Lab!", "/sampleLab/name"),
        ("metrics.service.type=Ingress", "/metrics/service/type"),
        ("resources.limits.cpu=lots", "/resources/limits/cpu"),
        ("otlpEndpoint=collector:4317", "/otlpEndpoint"),
        ("replicas=2", "'replicas' not allowed"),
    ] {
        let out = helm.run(&["template", RELEASE, chart, "--set", set]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(
            stderr.contains(named),
            "--set {set}: the error does not name {named}: {stderr}"
        );
    }
}

/// The NOTES `helm install` prints, rendered without a cluster.
fn notes(helm: &Helm, sets: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        "install",
        RELEASE,
        chart.to_str().unwrap(),
        "--dry-run=client",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = helm.ok(&args);
    out.split_once("NOTES:")
        .expect("NOTES in the output")
        .1
        .to_owned()
}

#[test]
fn notes_give_the_addresses_the_sample_lab_really_has() {
    let helm = Helm::new();
    // The sample lab has no node ports by default: port-forwards to ports kind leaves free.
    let plain = notes(&helm, &["sampleLab.enabled=true", "sampleLab.name=shop"]);
    for expected in [
        "port-forward svc/shop-api 18080:8080",
        "port-forward svc/shop-jaeger 26686:16686",
        "http://localhost:18080/order",
    ] {
        assert!(plain.contains(expected), "{expected:?} missing:\n{plain}");
    }
    assert!(!plain.contains("localhost:8080"), "{plain}");
    let with_node_ports = notes(
        &helm,
        &[
            "sampleLab.enabled=true",
            "sampleLab.spec.access.nodePorts.api=30080",
        ],
    );
    assert!(
        with_node_ports.contains("http://localhost:8080/order"),
        "{with_node_ports}"
    );
    let without_lab = notes(&helm, &[]);
    assert!(
        without_lab.contains("kubectl apply --server-side -f examples/baseline.yaml"),
        "the workshop applies server-side:\n{without_lab}"
    );
    // No port-forward takes a local port that kind-config.yaml maps (8080, 16686).
    for text in [&plain, &with_node_ports, &without_lab] {
        for line in text.lines().filter(|l| l.contains(" port-forward svc/")) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let service = words.iter().position(|w| w.starts_with("svc/"));
            let local = service
                .and_then(|i| words.get(i + 1))
                .map(|ports| ports.split(':').next().unwrap_or(ports));
            assert!(
                local.is_some_and(|p| p != "8080" && p != "16686"),
                "{line:?} takes a port kind maps:\n{text}"
            );
        }
    }
}

#[test]
fn ships_the_checked_in_crd_not_a_copy() {
    let checked_in = root().join("crds/tracinglab.yaml");
    let shipped = chart().join("crds/tracinglab.yaml");
    let link =
        std::fs::read_link(&shipped).expect("the chart's CRD is a symlink to crds/tracinglab.yaml");
    assert_eq!(link, Path::new("../../../crds/tracinglab.yaml"));
    assert_eq!(
        shipped.canonicalize().unwrap(),
        checked_in.canonicalize().unwrap()
    );

    let expected = std::fs::read_to_string(&checked_in).unwrap();
    let helm = Helm::new();
    let chart = chart();
    let shown = helm.ok(&["show", "crds", chart.to_str().unwrap()]);
    assert_eq!(
        shown.trim_start_matches("---\n").trim_end(),
        expected.trim_end(),
        "helm reads the checked-in CRD"
    );

    // The packaged chart holds the file's content, not a dangling link.
    let out = tempfile::tempdir().unwrap();
    helm.ok(&[
        "package",
        chart.to_str().unwrap(),
        "-d",
        out.path().to_str().unwrap(),
    ]);
    let package = std::fs::read_dir(out.path())
        .unwrap()
        .next()
        .expect("a package")
        .unwrap()
        .path();
    let shown = helm.ok(&["show", "crds", package.to_str().unwrap()]);
    assert_eq!(
        shown.trim_start_matches("---\n").trim_end(),
        expected.trim_end(),
        "the packaged chart carries the CRD"
    );
}

// ---- installed into a real API server -------------------------------------------------------

const LAB: &str = "lab";
const TIMEOUT: Duration = Duration::from_secs(30);

async fn deployment_names(client: &Client, ns: &str) -> Vec<String> {
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={LAB}"));
    let mut names: Vec<String> = Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .map(|l| l.items.iter().map(|d| d.name_any()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Installs the chart, runs the operator binary with the chart's ServiceAccount token, and has it
/// do everything it does: apply a lab's children, write status, prune, publish an event.
async fn operator_under_the_charts_account(watch: Option<&str>, helm: Helm) {
    let cluster = TestCluster::start().await.expect("API server starts");
    let admin = cluster.client();
    let lab_ns = watch.unwrap_or("workshop");
    cluster
        .create_namespace(lab_ns)
        .await
        .expect("lab namespace");

    let chart = chart();
    let kubeconfig = cluster
        .kubeconfig()
        .to_str()
        .expect("UTF-8 path")
        .to_string();
    let watch_value = format!("watchNamespace={}", watch.unwrap_or_default());
    let out = helm.ok(&[
        "install",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        RELEASE_NS,
        "--create-namespace",
        "--kubeconfig",
        &kubeconfig,
        "--set",
        &watch_value,
    ]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(
        out.contains(&format!(
            "kubectl -n {RELEASE_NS} rollout status deployment/tlab-tracing-lab"
        )),
        "NOTES: {out}"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    eventually("the chart's CRD to be Established", TIMEOUT, || async {
        let crd = crds
            .get("tracinglabs.tracinglab.dev")
            .await
            .map_err(|e| e.to_string())?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        established
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;

    let token = cluster
        .mint_service_account_token(RELEASE_NS, "tlab-tracing-lab")
        .await
        .expect("a token for the chart's ServiceAccount");
    let operator_kubeconfig = cluster.kubeconfig_for_token(&token).expect("kubeconfig");

    // Least privilege: nothing beyond what the operator calls, nowhere beyond its scope.
    let as_operator = cluster.client_for_token(&token).await.expect("client");
    let forbidden =
        |r: Result<_, kube::Error>| matches!(r, Err(kube::Error::Api(s)) if s.code == 403);
    let secrets: Api<Secret> = Api::namespaced(as_operator.clone(), lab_ns);
    assert!(
        forbidden(secrets.list(&ListParams::default()).await.map(|_| ())),
        "the operator may read Secrets"
    );
    let labs: Api<TracingLab> = Api::namespaced(as_operator.clone(), lab_ns);
    assert!(
        forbidden(labs.delete(LAB, &Default::default()).await.map(|_| ())),
        "the operator may delete labs"
    );
    if watch.is_some() {
        let elsewhere: Api<ConfigMap> = Api::namespaced(as_operator.clone(), "default");
        assert!(
            forbidden(elsewhere.list(&ListParams::default()).await.map(|_| ())),
            "rights leak out of {lab_ns}"
        );
    }

    let listen = format!("127.0.0.1:{}", ports::free_port());
    let mut command = process::project_command("tracing-lab-operator").expect("operator binary");
    command
        .args(["run", "--listen-addr", &listen])
        .env("KUBECONFIG", &operator_kubeconfig)
        .env("RUST_LOG", "info");
    if let Some(ns) = watch {
        command.args(["--namespace", ns]);
    }
    let mut operator = ChildProcess::spawn("operator", command).expect("operator starts");
    operator
        .wait_http_ok(&format!("http://{listen}/readyz"), TIMEOUT)
        .await
        .expect("operator ready");

    // A lab with the load generator: every child is created and the status written.
    let api: Api<TracingLab> = Api::namespaced(admin.clone(), lab_ns);
    let lab: TracingLab = serde_json::from_value(json!({
        "apiVersion": "tracinglab.dev/v1alpha1", "kind": "TracingLab",
        "metadata": {"name": LAB}, "spec": {"loadGenerator": {"enabled": true}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &lab)
        .await
        .expect("lab created");
    let all = [
        "lab-analytics",
        "lab-api",
        "lab-collector",
        "lab-jaeger",
        "lab-loadgen",
        "lab-notification",
        "lab-processing",
        "lab-prometheus",
        "lab-redis",
    ];
    eventually("the lab's Deployments", TIMEOUT, || async {
        let names = deployment_names(&admin, lab_ns).await;
        (names == all)
            .then_some(())
            .ok_or_else(|| format!("{names:?}"))
    })
    .await;
    let wait_status = |generation: i64| {
        let api = api.clone();
        async move {
            eventually("status of the current generation", TIMEOUT, || async {
                let lab = api.get(LAB).await.map_err(|e| e.to_string())?;
                let seen = lab.status.as_ref().and_then(|s| s.observed_generation);
                (seen == Some(generation))
                    .then_some(lab)
                    .ok_or_else(|| format!("observedGeneration {seen:?}"))
            })
            .await
        }
    };
    let lab = wait_status(1).await;
    let status = lab.status.expect("status");
    assert!(
        status.conditions.iter().any(|c| c.type_ == "Ready"),
        "{status:?}"
    );
    // Readiness read back from every workload the operator applied.
    let mut components: Vec<(String, String)> = status
        .components
        .values()
        .map(|c| (c.kind.clone(), c.name.clone()))
        .collect();
    components.sort();
    let mut expected: Vec<(String, String)> = all
        .iter()
        .map(|n| ("Deployment".to_string(), n.to_string()))
        .chain([("StatefulSet".to_string(), "lab-kafka".to_string())])
        .collect();
    expected.sort();
    assert_eq!(components, expected, "{status:?}");

    // Under the chart's account the operator reads pods and events: a crash is reported.
    let mut crashed = pods::status(
        "Running",
        false,
        vec![pods::container(
            "kafka",
            "apache/kafka",
            false,
            2,
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
        )],
    );
    crashed["containerStatuses"][0]["lastState"] =
        json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}});
    pods::create(&admin, lab_ns, LAB, "kafka", "lab-kafka-0", crashed)
        .await
        .expect("pod created");
    eventually("the crash in the Ready condition", TIMEOUT, || async {
        let lab = api.get(LAB).await.map_err(|e| e.to_string())?;
        let ready = lab
            .status
            .iter()
            .flat_map(|s| &s.conditions)
            .find(|c| c.type_ == "Ready")
            .map(|c| c.message.clone());
        ready
            .as_deref()
            .is_some_and(|m| m.starts_with("kafka: OOMKilled (exit 137), 2 restarts"))
            .then_some(())
            .ok_or_else(|| format!("{ready:?}"))
    })
    .await;

    // Turning the load generator off prunes its Deployment.
    let merge = |spec: Value| Patch::Merge(json!({ "spec": spec }));
    api.patch(
        LAB,
        &PatchParams::default(),
        &merge(json!({"loadGenerator": {"enabled": false}})),
    )
    .await
    .expect("lab patched");
    eventually(
        "the load generator's Deployment to be pruned",
        TIMEOUT,
        || async {
            let names = deployment_names(&admin, lab_ns).await;
            (!names.iter().any(|n| n == "lab-loadgen"))
                .then_some(())
                .ok_or_else(|| format!("{names:?}"))
        },
    )
    .await;
    wait_status(2).await;

    // A spec the schema accepts but the operator cannot run: a Warning event, published as the operator.
    api.patch(
        LAB,
        &PatchParams::default(),
        &merge(json!({"services": {"processing": {"workload": {"cpuWeight": 0, "ioWeight": 0, "intensities": ["light"]}}}})),
    )
    .await
    .expect("lab patched");
    let events: Api<Event> = Api::namespaced(admin.clone(), lab_ns);
    let event = eventually("a Warning event about the lab", TIMEOUT, || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .into_iter()
            .find(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(LAB)
                    && e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("InvalidSpec")
            })
            .ok_or_else(|| "no event yet".to_string())
    })
    .await;
    assert_eq!(
        event.reporting_controller.as_deref(),
        Some("tracing-lab-operator")
    );
    assert!(event.note.unwrap_or_default().contains("cpuWeight"));

    let log = operator.log_tail(400);
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator was refused something:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn installed_chart_lets_the_operator_run_a_lab_in_every_namespace() {
    operator_under_the_charts_account(None, Helm::new()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn installed_chart_lets_the_operator_run_a_lab_in_its_one_namespace() {
    operator_under_the_charts_account(Some("students"), Helm::new()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn installed_with_helm_3_the_chart_lets_the_operator_run_a_lab() {
    operator_under_the_charts_account(Some("students"), Helm::v3()).await;
}
