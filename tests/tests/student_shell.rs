//! What a student or instructor runs (`make lab` with every step it depends on, `make bundle`,
//! `make trace-logs`, `make check`, `make class`, `make clean`, and the scripts they call) is POSIX sh: macOS ships bash 3.2 and
//! make 3.81, which ignores `.SHELLFLAGS`, and Debian's `sh` is dash. ShellCheck reads the recipes
//! as make would run them (`make -n`), and `make prerequisites` runs under posh, a shell with
//! nothing beyond POSIX.

use std::path::{Path, PathBuf};
use std::process::Command;

use tracing_lab_tests::process::make;

/// The targets a student or instructor types; `make -n` prints their prerequisites' recipes too.
const STUDENT_TARGETS: [&str; 6] = ["lab", "bundle", "trace-logs", "check", "class", "clean"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

#[test]
fn student_recipes_and_scripts_have_no_bashisms() {
    let recipes = make()
        .unwrap()
        .arg("--dry-run")
        .args(STUDENT_TARGETS)
        .output()
        .expect("make runs");
    assert!(
        recipes.status.success(),
        "{}",
        String::from_utf8_lossy(&recipes.stderr)
    );
    let text = String::from_utf8(recipes.stdout).unwrap();
    for step in [
        "kind create cluster",
        "scripts/bundle.sh",
        "kind load image-archive",
        "helm upgrade --install",
        "scripts/class.sh",
        "kind get kubeconfig --internal",
    ] {
        assert!(text.contains(step), "make -n lab runs no {step}:\n{text}");
    }
    let dir = tempfile::tempdir().unwrap();
    let recipes = dir.path().join("recipes.sh");
    std::fs::write(&recipes, text).unwrap();
    let scripts: Vec<PathBuf> = std::fs::read_dir(root().join("scripts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    assert!(!scripts.is_empty());
    // Warnings and errors: POSIX mode reports every bashism (SC3xxx) as a warning.
    let check = Command::new("shellcheck")
        .args(["--shell=sh", "--severity=warning", "--format=gcc"])
        .arg(&recipes)
        .args(&scripts)
        .output()
        .expect("shellcheck (tests/env/packages.sh installs it)");
    assert!(
        check.status.success(),
        "not POSIX sh:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

/// `make prerequisites` run by posh, with only `programs` (and the text tools make and the script
/// use) on PATH; its standard error.
fn prerequisites_with(programs: &[&str], env: &[(&str, String)]) -> String {
    let bin = tempfile::tempdir().unwrap();
    for program in programs.iter().chain(&["sed", "head"]) {
        std::os::unix::fs::symlink(which(program), bin.path().join(program)).unwrap();
    }
    let out = make()
        .unwrap()
        .args(["prerequisites", "SHELL=/bin/posh"])
        .env("PATH", bin.path())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("make runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("make lab needs what is named above"),
        "{stderr}"
    );
    stderr
}

/// What the check reported, one problem per line.
fn problems(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.starts_with("make") && !l.contains("make lab needs"))
        .collect()
}

#[test]
fn make_prerequisites_under_posh_names_each_missing_program_and_where_to_get_it() {
    let stderr = prerequisites_with(&[], &[]);
    assert_eq!(
        problems(&stderr),
        [
            "missing: docker (install: https://docs.docker.com/engine/install/)",
            "missing: kind (install: https://kind.sigs.k8s.io/docs/user/quick-start/#installation)",
            "missing: kubectl (install: https://kubernetes.io/docs/tasks/tools/)",
            "missing: helm (install: https://helm.sh/docs/intro/install/)",
        ],
        "{stderr}"
    );
}

/// With the real kubectl and helm (1.35 and 4 here) and a Docker client whose daemon is not
/// there: their versions pass, the daemon and kind are named.
#[test]
fn make_prerequisites_under_posh_reads_real_versions_and_names_a_silent_docker_daemon() {
    let nowhere = tempfile::tempdir().unwrap();
    let socket = format!("unix://{}/docker.sock", nowhere.path().display());
    let stderr = prerequisites_with(&["docker", "kubectl", "helm"], &[("DOCKER_HOST", socket)]);
    assert_eq!(
        problems(&stderr),
        [
            "docker: the daemon does not answer: start Docker, or give this user access to it",
            "missing: kind (install: https://kind.sigs.k8s.io/docs/user/quick-start/#installation)",
        ],
        "{stderr}"
    );
}

fn which(program: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{program} on PATH"))
}
