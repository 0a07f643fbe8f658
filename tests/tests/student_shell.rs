//! What a student runs (`make lab` with every step it depends on, `make clean`, and the scripts
//! they call) is POSIX sh: macOS ships bash 3.2 and make 3.81, which ignores `.SHELLFLAGS`, and
//! Debian's `sh` is dash. ShellCheck reads the recipes as make would run them (`make -n`), and
//! `make prerequisites` runs under posh, a shell with nothing beyond POSIX.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The targets a student types; `make -n` prints their prerequisites' recipes too.
const STUDENT_TARGETS: [&str; 2] = ["lab", "clean"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

#[test]
fn student_recipes_and_scripts_have_no_bashisms() {
    let recipes = Command::new("make")
        .current_dir(root())
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
        "scripts/load-images.sh",
        "helm upgrade --install",
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

#[test]
fn make_prerequisites_under_posh_names_each_missing_program_and_where_to_get_it() {
    let make = which("make");
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(make)
        .current_dir(root())
        .args(["prerequisites", "SHELL=/bin/posh"])
        .env("PATH", empty.path())
        .output()
        .expect("make runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for (tool, url) in [
        ("docker", "https://docs.docker.com/engine/install/"),
        (
            "kind",
            "https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
        ),
        ("kubectl", "https://kubernetes.io/docs/tasks/tools/"),
        ("helm", "https://helm.sh/docs/intro/install/"),
    ] {
        assert!(
            stderr.contains(&format!("missing: {tool} (install: {url})")),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains("make lab needs the programs above on PATH"),
        "{stderr}"
    );
}

fn which(program: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{program} on PATH"))
}
