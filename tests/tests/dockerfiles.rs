//! The Dockerfile, read without Docker: one builder for both images, dependencies in their own
//! cached layer, the same `cargo build` line `make release` runs outside Docker, and per target a
//! small runtime base with no build tools, its binary only, and a numeric non-root user. The
//! images themselves are built and run on a real node by `real_node.rs`.

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

/// The lab's two binaries: each the default binary of its package, each one target of the Dockerfile.
const TARGETS: [(&str, &str); 2] = [
    ("operator", "tracing-lab-operator"),
    ("service", "tracing-lab-service"),
];

fn dockerfile() -> (String, Dockerfile) {
    let path = root().join("Dockerfile");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = parse(&text);
    (text, file)
}

fn stage<'a>(file: &'a Dockerfile, name: &str) -> &'a Stage {
    file.stages
        .iter()
        .find(|s| s.name() == Some(name))
        .unwrap_or_else(|| panic!("Dockerfile: no stage named {name}"))
}

/// The stage and every stage it is built `FROM`, nearest first.
fn lineage<'a>(file: &'a Dockerfile, name: &str) -> Vec<&'a Stage> {
    let mut chain = vec![stage(file, name)];
    while let Some(parent) = file
        .stages
        .iter()
        .find(|s| s.name() == Some(chain.last().expect("not empty").base()))
    {
        chain.push(parent);
    }
    chain
}

#[test]
fn one_builder_compiles_both_binaries_and_caches_their_dependencies() {
    let (text, file) = dockerfile();
    let builders: Vec<&Stage> = file
        .stages
        .iter()
        .filter(|s| s.all("RUN").any(|r| r.starts_with("cargo build")))
        .collect();
    assert_eq!(builders.len(), 1, "one stage runs `cargo build`");
    let builder = builders[0];
    let packages: String = TARGETS.iter().map(|(_, p)| format!(" -p {p}")).collect();

    // The build line: exactly what `make release` runs outside Docker.
    let build_line = format!("cargo build --release --locked{packages}");
    let build_at = builder
        .position("RUN", &build_line)
        .unwrap_or_else(|| panic!("the builder must run `{build_line}`"));
    assert!(
        text.lines()
            .any(|l| l.trim() == format!("RUN {build_line}")),
        "the cargo build line must be one physical line so `make release` finds it"
    );

    // Dependencies are built from the manifests alone, before the sources are copied in.
    let cook_at = builder
        .position("RUN", "cargo chef cook")
        .expect("a cached dependency layer (`cargo chef cook`)");
    let cook = &builder.instructions[cook_at].args;
    assert!(
        cook.contains(&format!("cargo chef cook --release --locked{packages}")),
        "cook like the build: {cook}"
    );
    // Then the sources of every workspace crate but the tests (the binaries do not depend on
    // them), so that a change to a test does not rebuild the images: the tests crate needs only
    // its manifest there, beside the placeholder sources cook leaves.
    let copied: Vec<(usize, &str)> = builder
        .instructions
        .iter()
        .enumerate()
        .filter(|(_, i)| i.keyword == "COPY" && !i.args.starts_with("--from"))
        .map(|(at, i)| (at, i.args.as_str()))
        .collect();
    assert!(
        copied.iter().all(|(at, _)| cook_at < *at && *at < build_at),
        "order must be cook, COPY the sources, build: {copied:?}"
    );
    let sources: Vec<&str> = copied
        .iter()
        .flat_map(|(_, args)| {
            let words: Vec<&str> = args.split_whitespace().collect();
            words[..words.len() - 1].to_vec()
        })
        .collect();
    let mut wanted = vec!["Cargo.toml", "Cargo.lock", "tests/Cargo.toml"];
    let members = workspace_members();
    wanted.extend(members.iter().map(String::as_str).filter(|m| *m != "tests"));
    let mut sorted = sources.clone();
    sorted.sort();
    wanted.sort();
    assert_eq!(sorted, wanted, "what the builder copies after cook");

    // librdkafka is compiled from source.
    let setup: String = lineage(&file, builder.name().expect("a named builder"))
        .iter()
        .flat_map(|s| s.all("RUN"))
        .collect::<Vec<_>>()
        .join("\n");
    for tool in ["cmake", "g++", "libcurl4-openssl-dev"] {
        assert!(setup.contains(tool), "the build stages must install {tool}");
    }
    let rust_version = file
        .global_args
        .iter()
        .find(|(name, _)| name == "RUST_VERSION")
        .map(|(_, v)| v.clone())
        .expect("ARG RUST_VERSION pins the toolchain");
    assert!(
        version_at_least(&rust_version, &workspace_rust_version()),
        "RUST_VERSION {rust_version} is older than the workspace's rust-version"
    );
}

#[test]
fn each_image_is_its_binary_on_a_small_base_as_a_numeric_non_root_user() {
    let (_, file) = dockerfile();
    let builder = file
        .stages
        .iter()
        .find(|s| s.all("RUN").any(|r| r.starts_with("cargo build")))
        .and_then(Stage::name)
        .expect("a named builder stage");
    for (target, binary) in TARGETS {
        let at = |what: &str| format!("Dockerfile target {target}: {what}");
        let chain = lineage(&file, target);
        let base = chain.last().expect("not empty").base();
        assert!(
            ["debian:bookworm-slim", "gcr.io/distroless/cc-debian12"]
                .iter()
                .any(|b| base.starts_with(b)),
            "{}",
            at(&format!("base {base} is not a small runtime image"))
        );
        for run in chain.iter().flat_map(|s| s.all("RUN")) {
            for tool in BUILD_TOOLS {
                assert!(
                    !run.contains(tool),
                    "{}",
                    at(&format!("installs or runs {tool}: {run}"))
                );
            }
        }
        let copied: Vec<&str> = chain.iter().flat_map(|s| s.all("COPY")).collect();
        assert_eq!(
            copied,
            [format!(
                "--from={builder} /src/target/release/{binary} /usr/local/bin/{binary}"
            )],
            "{}",
            at("copies its binary and nothing else")
        );
        // The nearest USER and ENTRYPOINT are the image's.
        let last = |keyword: &str| chain.iter().find_map(|s| s.all(keyword).last());
        let user = last("USER").unwrap_or_else(|| panic!("{}", at("sets no USER")));
        let uid: u32 = user
            .split(':')
            .next()
            .and_then(|u| u.parse().ok())
            .unwrap_or_else(|| panic!("{}", at(&format!("USER {user} must be numeric"))));
        assert_ne!(uid, 0, "{}", at("USER must not be root"));
        assert_eq!(
            last("ENTRYPOINT"),
            Some(format!("[\"/usr/local/bin/{binary}\"]").as_str()),
            "{}",
            at("ENTRYPOINT must run its binary (exec form)")
        );
        let manifest =
            std::fs::read_to_string(root().join(target_folder(binary)).join("Cargo.toml"))
                .unwrap_or_else(|e| panic!("{}", at(&format!("no Cargo.toml of {binary}: {e}"))));
        assert!(
            manifest.contains(&format!("name = \"{binary}\"")),
            "{}",
            at(&format!("{binary} is the package's default binary"))
        );
    }
}

/// The workspace member that holds `package`.
fn target_folder(package: &str) -> &'static str {
    match package {
        "tracing-lab-operator" => "operator",
        "tracing-lab-service" => "services",
        other => panic!("not a workspace package: {other}"),
    }
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

/// The workspace's member folders, from `members = [...]` in the root manifest.
fn workspace_members() -> Vec<String> {
    let manifest =
        std::fs::read_to_string(root().join("Cargo.toml")).expect("workspace Cargo.toml");
    let list = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("members = "))
        .expect("the workspace lists its members on one line");
    list.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect()
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
fn docker_context_leaves_out_build_output_and_history() {
    let ignore =
        std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore at the root");
    let entries: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    // tests/tests too: a new integration test would otherwise change cook's recipe.
    for needed in ["target", ".git", "tests/tests"] {
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
