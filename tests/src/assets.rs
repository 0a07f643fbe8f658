//! Locates the external programs the harness runs (kube-apiserver, etcd, kubectl, helm, Apache
//! Kafka, the OpenTelemetry Collector, Jaeger, redis-server), installed by `tests/env/setup.sh`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The folder `tests/env/setup.sh` installs into: `${XDG_CACHE_HOME:-$HOME/.cache}/tracing-lab/assets`.
pub fn cache_dir() -> Option<PathBuf> {
    let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
    };
    Some(cache.join("tracing-lab").join("assets"))
}

/// Full path of the program `name`, searched in `$KUBEBUILDER_ASSETS`, then [`cache_dir`], then `$PATH`.
pub fn find(name: &str) -> Result<PathBuf> {
    let kubebuilder = std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let folders = kubebuilder
        .into_iter()
        .chain(cache_dir())
        .chain(std::env::split_paths(&path));
    for folder in folders {
        let candidate = folder.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    bail!(
        "`{name}` not found in $KUBEBUILDER_ASSETS, {} or $PATH: run `bash tests/env/setup.sh` first",
        cache_dir().map_or_else(|| "the asset cache".to_owned(), |d| d.display().to_string())
    )
}

/// The folder `name` of the asset cache (e.g. `kafka`, with the broker's libraries), searched in
/// `$KUBEBUILDER_ASSETS`, then [`cache_dir`].
pub fn find_dir(name: &str) -> Result<PathBuf> {
    let kubebuilder = std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from);
    kubebuilder
        .into_iter()
        .chain(cache_dir())
        .map(|folder| folder.join(name))
        .find(|candidate| candidate.is_dir())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "`{name}` not found in $KUBEBUILDER_ASSETS or the asset cache: run `bash tests/env/setup.sh` first"
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_on_path_and_names_the_setup_script_otherwise() {
        assert!(find("sh").is_ok());
        let err = find("no-such-program-anywhere").unwrap_err().to_string();
        assert!(err.contains("tests/env/setup.sh"), "{err}");
    }
}
