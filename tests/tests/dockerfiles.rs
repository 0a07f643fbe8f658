//! The two Dockerfiles, checked without Docker: multi-stage, dependencies in their own cached layer,
//! the same `cargo build --release --locked -p <package>` line `make release` runs outside Docker,
//! a small runtime base with no build tools, and a numeric non-root user.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// One instruction: keyword (upper case) and its arguments, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// One build stage: its `FROM` arguments and the instructions after it.
#[derive(Debug)]
struct Stage {
    from: String,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn name(&self) -> Option<&str> {
        let words: Vec<&str> = self.from.split_whitespace().collect();
        words
            .iter()
            .position(|w| w.eq_ignore_ascii_case("as"))
            .and_then(|i| words.get(i + 1).copied())
    }

    fn base(&self) -> &str {
        self.from
            .split_whitespace()
            .find(|w| !w.starts_with("--"))
            .unwrap_or_default()
    }

    fn all(&self, keyword: &str) -> impl Iterator<Item = &str> {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
            .map(|i| i.args.as_str())
    }

    fn position(&self, keyword: &str, needle: &str) -> Option<usize> {
        self.instructions
            .iter()
            .position(|i| i.keyword == keyword && i.args.contains(needle))
    }
}

struct Dockerfile {
    /// `ARG`s declared before the first `FROM`, with their defaults.
    global_args: Vec<(String, String)>,
    stages: Vec<Stage>,
}

fn parse(text: &str) -> Dockerfile {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') && current.is_empty() || trimmed.is_empty() {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            logical.push(std::mem::take(&mut current));
        }
    }
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (keyword, args) = line
            .split_once(char::is_whitespace)
            .unwrap_or((line.as_str(), ""));
        let keyword = keyword.to_ascii_uppercase();
        let args = args.split_whitespace().collect::<Vec<_>>().join(" ");
        match (keyword.as_str(), stages.last_mut()) {
            ("FROM", _) => stages.push(Stage {
                from: args,
                instructions: Vec::new(),
            }),
            ("ARG", None) => {
                let (name, default) = args.split_once('=').unwrap_or((args.as_str(), ""));
                global_args.push((name.to_string(), default.trim_matches('"').to_string()));
            }
            (_, Some(stage)) => stage.instructions.push(Instruction { keyword, args }),
            (_, None) => panic!("{keyword} before the first FROM"),
        }
    }
    Dockerfile {
        global_args,
        stages,
    }
}

/// Tools that must stay in the build stages.
const BUILD_TOOLS: [&str; 8] = [
    "cargo",
    "rustc",
    "rustup",
    "cmake",
    "g++",
    "gcc",
    "build-essential",
    "-dev",
];

fn check_image(dockerfile: &str, package: &str, binary: &str) {
    let path = root().join(dockerfile);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = parse(&text);
    let at = |what: &str| format!("{dockerfile}: {what}");

    assert!(file.stages.len() >= 2, "{}", at("must be multi-stage"));
    let runtime = file.stages.last().expect("at least one stage");
    let builder = file
        .stages
        .iter()
        .find(|s| s.all("RUN").any(|r| r.starts_with("cargo build")))
        .unwrap_or_else(|| panic!("{}", at("no stage runs `cargo build`")));

    // The build line: exactly what `make release` runs outside Docker.
    let build_line = format!("cargo build --release --locked -p {package}");
    let build_at = builder
        .position("RUN", &build_line)
        .unwrap_or_else(|| panic!("{}", at(&format!("the builder must run `{build_line}`"))));
    assert!(
        text.lines()
            .any(|l| l.trim() == format!("RUN {build_line}")),
        "{}",
        at("the cargo build line must be one physical line so `make release` finds it")
    );

    // Dependencies are built from the manifests alone, before the sources are copied in.
    let cook_at = builder
        .position("RUN", "cargo chef cook")
        .unwrap_or_else(|| panic!("{}", at("no cached dependency layer (`cargo chef cook`)")));
    let cook = &builder.instructions[cook_at].args;
    assert!(
        cook.contains("--release") && cook.contains("--locked"),
        "{}",
        at("cook like the build")
    );
    assert!(
        cook.contains(&format!("-p {package}")),
        "{}",
        at("cook the same package")
    );
    let sources_at = builder
        .position("COPY", ". .")
        .unwrap_or_else(|| panic!("{}", at("no COPY of the sources")));
    assert!(
        cook_at < sources_at && sources_at < build_at,
        "{}",
        at("order must be cook, COPY . ., build")
    );

    // librdkafka is compiled from source.
    let setup: String = file
        .stages
        .iter()
        .flat_map(|s| s.all("RUN"))
        .collect::<Vec<_>>()
        .join("\n");
    for tool in ["cmake", "g++", "libcurl4-openssl-dev"] {
        assert!(
            setup.contains(tool),
            "{}",
            at(&format!("the build stages must install {tool}"))
        );
    }
    let rust_version = file
        .global_args
        .iter()
        .find(|(name, _)| name == "RUST_VERSION")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{}", at("ARG RUST_VERSION pins the toolchain")));
    assert!(
        version_at_least(&rust_version, &workspace_rust_version()),
        "{}",
        at(&format!(
            "RUST_VERSION {rust_version} is older than the workspace's rust-version"
        ))
    );

    // The runtime stage: small base, no toolchain, the binary only, numeric non-root user.
    assert!(
        ["debian:bookworm-slim", "gcr.io/distroless/cc-debian12"]
            .iter()
            .any(|b| runtime.base().starts_with(b)),
        "{}",
        at(&format!(
            "runtime base {} is not a small runtime image",
            runtime.base()
        ))
    );
    for run in runtime.all("RUN") {
        for tool in BUILD_TOOLS {
            assert!(
                !run.contains(tool),
                "{}",
                at(&format!("runtime stage installs or runs {tool}: {run}"))
            );
        }
    }
    let builder_name = builder
        .name()
        .unwrap_or_else(|| panic!("{}", at("builder stage needs a name")));
    let copied: Vec<&str> = runtime.all("COPY").collect();
    assert_eq!(
        copied.len(),
        1,
        "{}",
        at("the runtime stage copies the binary and nothing else")
    );
    assert!(
        copied[0].starts_with(&format!("--from={builder_name} "))
            && copied[0].contains(&format!("target/release/{binary} ")),
        "{}",
        at(&format!(
            "runtime must copy target/release/{binary} from {builder_name}: {}",
            copied[0]
        ))
    );
    let user: Vec<&str> = runtime.all("USER").collect();
    let uid = user
        .last()
        .unwrap_or_else(|| panic!("{}", at("runtime stage sets no USER")));
    let uid: u32 = uid
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "{}",
                at(&format!("USER {uid} must be numeric (runAsNonRoot)"))
            )
        });
    assert_ne!(uid, 0, "{}", at("USER must not be root"));
    let entrypoint: Vec<&str> = runtime.all("ENTRYPOINT").collect();
    assert!(
        entrypoint
            .last()
            .is_some_and(|e| e.contains(&format!("/{binary}\""))),
        "{}",
        at(&format!("ENTRYPOINT must run {binary} (exec form)"))
    );

    // The package exists and builds that binary.
    let manifest = std::fs::read_to_string(root().join(dockerfile).with_file_name("Cargo.toml"))
        .unwrap_or_else(|e| panic!("{}", at(&format!("no Cargo.toml beside it: {e}"))));
    assert!(
        manifest.contains(&format!("name = \"{package}\"")),
        "{}",
        at(&format!("{package} is not this crate"))
    );
    assert_eq!(
        package,
        binary,
        "{}",
        at("the package's default binary has the package's name")
    );
}

fn workspace_rust_version() -> String {
    let manifest =
        std::fs::read_to_string(root().join("Cargo.toml")).expect("workspace Cargo.toml");
    manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("the workspace declares rust-version")
}

fn version_at_least(have: &str, need: &str) -> bool {
    let parts = |v: &str| {
        v.split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    parts(have) >= parts(need)
}

#[test]
fn operator_image_is_multi_stage_cached_small_and_non_root() {
    check_image(
        "operator/Dockerfile",
        "tracing-lab-operator",
        "tracing-lab-operator",
    );
}

#[test]
fn service_image_is_multi_stage_cached_small_and_non_root() {
    check_image(
        "services/Dockerfile",
        "tracing-lab-service",
        "tracing-lab-service",
    );
}

#[test]
fn docker_context_leaves_out_build_output_and_history() {
    let ignore =
        std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore at the root");
    let entries: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for needed in ["target", ".git"] {
        assert!(
            entries.contains(&needed),
            ".dockerignore must exclude {needed}"
        );
    }
    // Every workspace member must stay in the context, or cargo cannot load the workspace.
    for member in [
        "lab-config",
        "telemetry",
        "operator",
        "services",
        "tests",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        assert!(
            !entries.contains(&member),
            ".dockerignore must keep {member}"
        );
    }
}

#[test]
fn parser_reads_stages_continuations_and_global_args() {
    let file = parse("ARG V=1.2\n# note\nFROM a:1 AS one\nRUN x \\\n  && y\nFROM one\nUSER 7:7\n");
    assert_eq!(file.global_args, vec![("V".to_string(), "1.2".to_string())]);
    assert_eq!(file.stages.len(), 2);
    assert_eq!(file.stages[0].name(), Some("one"));
    assert_eq!(
        file.stages[0].all("RUN").collect::<Vec<_>>(),
        vec!["x && y"]
    );
    assert_eq!(file.stages[1].base(), "one");
    assert!(version_at_least("1.95", "1.88") && !version_at_least("1.87", "1.88"));
}
