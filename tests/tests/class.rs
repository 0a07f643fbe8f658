//! `make class`: per student a namespace whose account runs every workshop command there and
//! nothing next door, a quota that holds one lab with the exercises' scaling, and a kubeconfig.
//! Run by posh against the real API server, as an instructor runs it; the student's commands are
//! kubectl with the kubeconfig it wrote.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Api, PostParams};
use serde_json::json;
use tracing_lab_operator::quantity;
use tracing_lab_tests::lab::{rendered, stored};
use tracing_lab_tests::process::make;
use tracing_lab_tests::{TestCluster, assets};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// PATH with the test kubectl first.
fn path() -> std::ffi::OsString {
    let kubectl = assets::find("kubectl").expect("kubectl");
    let bin = kubectl.parent().unwrap().to_path_buf();
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&rest))).unwrap()
}

/// `kubectl ARGS` with `kubeconfig`, `stdin` fed to it.
fn kubectl(kubeconfig: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(assets::find("kubectl").unwrap())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn make_class(cluster: &TestCluster, folder: &Path, students: u32) {
    let out = make()
        .unwrap()
        .arg("class")
        .arg(format!("STUDENTS={students}"))
        .arg(format!("CLASS_FOLDER={}", folder.display()))
        .arg("SHELL=/bin/posh")
        .env("PATH", path())
        .env("KUBECONFIG", cluster.kubeconfig())
        .output()
        .unwrap();
    assert!(out.status.success(), "make class: {}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_students_kubeconfig_runs_the_workshop_at_home_and_is_refused_next_door() {
    let cluster = TestCluster::start().await.unwrap();
    cluster.install_lab_crd().await.unwrap();
    let folder = tempfile::tempdir().unwrap();
    make_class(&cluster, folder.path(), 2);
    // Again, as an instructor adds students or renews tokens: nothing conflicts.
    make_class(&cluster, folder.path(), 2);
    let student = folder.path().join("student-1.kubeconfig");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&student).unwrap().permissions(),
    );
    assert_eq!(
        mode & 0o077,
        0,
        "a kubeconfig holds a token: only its owner reads it"
    );

    // A class lab has no node ports (the quota allows none): the example without `access`.
    let example = Command::new("sed")
        .args(["/^  access:/,$d"])
        .arg(root().join("examples/baseline.yaml"))
        .output()
        .unwrap();
    assert!(example.status.success());
    let applied = kubectl(
        &student,
        &["apply", "--server-side", "-f", "-"],
        &example.stdout,
    );
    assert!(applied.status.success(), "{}", text(&applied));
    let got = kubectl(&student, &["get", "tlab"], b"");
    assert!(got.status.success(), "{}", text(&got));
    assert!(text(&got).contains("\nlab "), "{}", text(&got));

    // `kubectl scale`, as Exercises 3 and 6 do, on a Deployment the operator would have made.
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "lab-processing"},
        "spec": {"replicas": 1,
                 "selector": {"matchLabels": {"app": "x"}},
                 "template": {"metadata": {"labels": {"app": "x"}},
                              "spec": {"containers": [{"name": "x", "image": "x"}]}}}
    }))
    .unwrap();
    for ns in ["student-1", "student-2"] {
        Api::<Deployment>::namespaced(cluster.client(), ns)
            .create(&PostParams::default(), &deployment)
            .await
            .unwrap();
    }
    let scaled = kubectl(
        &student,
        &["scale", "deployment/lab-processing", "--replicas=3"],
        b"",
    );
    assert!(scaled.status.success(), "{}", text(&scaled));

    // `kubectl auth can-i` asks the API server's authorizer; RESOURCE/SUB names a subresource.
    let can = |namespace: &str, verb: &str, resource: &str| {
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, sub)) => (r, format!("--subresource={sub}")),
            None => (resource, String::new()),
        };
        let mut args = vec!["auth", "can-i", verb, resource, "--namespace", namespace];
        if !subresource.is_empty() {
            args.push(&subresource);
        }
        let out = kubectl(&student, &args, b"");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // Every workshop command at home: tlab CRUD, scale, logs, exec (into Kafka), port-forward,
    // deleting a pod (Kafka's, in the storage drill), events and the quota.
    for (verb, resource) in [
        ("create", "tracinglabs.tracinglab.dev"),
        ("patch", "tracinglabs.tracinglab.dev"),
        ("delete", "tracinglabs.tracinglab.dev"),
        ("watch", "tracinglabs.tracinglab.dev"),
        ("patch", "deployments.apps/scale"),
        ("get", "pods/log"),
        ("create", "pods/exec"),
        ("create", "pods/portforward"),
        ("delete", "pods"),
        ("list", "events"),
        ("get", "resourcequotas"),
    ] {
        assert_eq!(
            can("student-1", verb, resource),
            "yes",
            "{verb} {resource} at home"
        );
        assert_eq!(
            can("student-2", verb, resource),
            "no",
            "{verb} {resource} next door"
        );
    }
    // Nothing that would lift the limits or reach past the namespace.
    for (verb, resource) in [
        ("delete", "resourcequotas"),
        ("create", "roles.rbac.authorization.k8s.io"),
        ("create", "secrets"),
        ("patch", "deployments.apps"),
        ("create", "pods"),
    ] {
        assert_eq!(can("student-1", verb, resource), "no", "{verb} {resource}");
    }
    for args in [
        &["get", "tlab", "--namespace", "student-2"][..],
        &["get", "tlab", "--all-namespaces"],
        &[
            "scale",
            "deployment/lab-processing",
            "--replicas=3",
            "--namespace",
            "student-2",
        ],
    ] {
        let out = kubectl(&student, args, b"");
        assert!(!out.status.success(), "kubectl {args:?} worked next door");
        assert!(
            text(&out).contains("Forbidden") || text(&out).contains("forbidden"),
            "{}",
            text(&out)
        );
    }
    // `tracing-lab-operator logs` (`make trace-logs`) in the kubeconfig's namespace: it finds the
    // lab and reads its pods (none run here, so no line carries the trace); next door, refused.
    let trace_logs = |namespace: Option<&str>| {
        let mut command = Command::new(
            tracing_lab_tests::process::project_binary("tracing-lab-operator").unwrap(),
        );
        command.args(["logs", "4bf92f3577b34da6a3ce929d0e0e4736"]);
        if let Some(namespace) = namespace {
            command.args(["--namespace", namespace]);
        }
        command.env("KUBECONFIG", &student).output().unwrap()
    };
    let home = trace_logs(None);
    assert!(
        !home.status.success()
            && text(&home).contains(r#"no log line of lab "lab" in namespace "student-1""#),
        "{}",
        text(&home)
    );
    let next_door = trace_logs(Some("student-2"));
    assert!(
        !next_door.status.success() && text(&next_door).contains("forbidden"),
        "{}",
        text(&next_door)
    );
    // `tracing-lab-operator check` (`make check`) reads Jaeger through the API server's proxy:
    // let through at home (where no pod runs to answer), refused next door.
    let check = |namespace: &str| {
        Command::new(tracing_lab_tests::process::project_binary("tracing-lab-operator").unwrap())
            .args(["check", "basic-tracing", "--namespace", namespace])
            .env("KUBECONFIG", &student)
            .output()
            .unwrap()
    };
    let home = check("student-1");
    assert!(
        !home.status.success()
            && !text(&home).contains("forbidden")
            && text(&home).contains("proxy"),
        "{}",
        text(&home)
    );
    let next_door = check("student-2");
    assert!(
        !next_door.status.success() && text(&next_door).contains("forbidden"),
        "{}",
        text(&next_door)
    );

    // The quota holds one lab of every example, and Exercise 6's 8 processing pods, but not a
    // second lab beside it.
    let quota = Api::<ResourceQuota>::namespaced(cluster.client(), "student-1")
        .get("one-lab")
        .await
        .unwrap();
    let hard = quota.spec.unwrap().hard.unwrap();
    let hard = |key: &str| quantity::nanos(&hard[key].0).unwrap();
    let mut labs: Vec<(String, serde_json::Value)> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let lab: serde_json::Value =
                serde_saphyr::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.display().to_string(), lab["spec"].clone())
        })
        .collect();
    let mut exercise6 = labs
        .iter()
        .find(|(name, _)| name.ends_with("scaled-consumers.yaml"))
        .expect("Exercise 6's example")
        .1
        .clone();
    exercise6["services"]["processing"]["replicas"] = json!(8);
    labs.push((
        "scaled-consumers.yaml with 8 processing pods".into(),
        exercise6,
    ));
    for (name, spec) in labs {
        let (cpu, memory, pods) = requests(spec);
        assert!(cpu <= hard("requests.cpu"), "{name}: {cpu} CPU nanos");
        assert!(
            memory <= hard("requests.memory"),
            "{name}: {memory} memory nanos"
        );
        assert!(pods <= hard("pods"), "{name}: {pods} pods nanos");
    }
    let one = requests(json!({"loadGenerator": {"enabled": true}}));
    assert!(
        2 * one.0 > hard("requests.cpu") || 2 * one.1 > hard("requests.memory"),
        "two labs fit: {one:?}"
    );
}

/// CPU, memory (nanos of their units) and pods the lab `spec` requests, as the operator renders it.
fn requests(spec: serde_json::Value) -> (i128, i128, i128) {
    let (children, _) = rendered(&stored("lab", "student-1", spec).unwrap()).unwrap();
    let (mut cpu, mut memory, mut pods) = (0, 0, 0);
    let replicas = children
        .deployments
        .iter()
        .map(|d| {
            (
                &d.spec.as_ref().unwrap().template,
                d.spec.as_ref().unwrap().replicas.unwrap_or(1),
            )
        })
        .chain(children.stateful_sets.iter().map(|s| {
            (
                &s.spec.as_ref().unwrap().template,
                s.spec.as_ref().unwrap().replicas.unwrap_or(1),
            )
        }));
    for (template, n) in replicas {
        let n = i128::from(n);
        pods += n * 1_000_000_000;
        for container in &template.spec.as_ref().unwrap().containers {
            let r = container
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap();
            cpu += n * quantity::nanos(&r["cpu"].0).unwrap();
            memory += n * quantity::nanos(&r["memory"].0).unwrap();
        }
    }
    (cpu, memory, pods)
}
