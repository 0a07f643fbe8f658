//! The lab's default images are the versions the tests run: the Kafka libraries, the Collector,
//! Jaeger and Prometheus the harness starts report the versions that the operator's image tags
//! name. The operator names every image a lab runs, each pinned, for pulling them once for a
//! class.

use std::process::Command;

use tracing_lab_operator::render::{
    DEFAULT_IMAGES, collector, jaeger, kafka, prometheus, services,
};
use tracing_lab_tests::assets;
use tracing_lab_tests::process::project_command;

fn tag(image: &str) -> &str {
    image.rsplit_once(':').expect("a pinned tag").1
}

fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(assets::find(program).unwrap())
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn kafka_libraries_are_the_release_of_the_image() {
    let libs = assets::find_dir("kafka").unwrap().join("libs");
    let jar = format!("kafka_2.13-{}.jar", tag(kafka::IMAGE));
    assert!(libs.join(&jar).is_file(), "{jar} not in {}", libs.display());
}

#[test]
fn the_collector_is_the_release_of_the_image() {
    let version = output("otelcol", &["--version"]);
    assert!(
        version
            .trim_end()
            .ends_with(&format!("version {}", tag(collector::IMAGE))),
        "{version}"
    );
}

#[test]
fn jaeger_is_the_release_of_the_image() {
    let version: serde_json::Value = serde_json::from_str(&output("jaeger", &["version"])).unwrap();
    assert_eq!(
        version["gitVersion"].as_str(),
        Some(format!("v{}", tag(jaeger::IMAGE)).as_str())
    );
}

#[test]
fn prometheus_is_the_release_of_the_image() {
    let version = output("prometheus", &["--version"]);
    let release = tag(prometheus::IMAGE).trim_start_matches('v');
    assert!(
        version.starts_with(&format!("prometheus, version {release} ")),
        "{version}"
    );
}

/// `tracing-lab-operator images -f FILE` (or `-f -` with the manifest on standard input).
fn operator_images(file: &str, stdin: Option<&str>) -> std::process::Output {
    use std::io::Write as _;
    let mut child = project_command("tracing-lab-operator")
        .unwrap()
        .args(["images", "-f", file])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn the_operator_names_every_image_a_lab_runs_each_pinned() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/head-of-line-blocking.yaml");
    let from_file = operator_images(example.to_str().unwrap(), None);
    assert!(from_file.status.success(), "{from_file:?}");
    let listed = String::from_utf8(from_file.stdout).unwrap();
    let mut expected: Vec<String> = DEFAULT_IMAGES.iter().map(|i| i.image.to_owned()).collect();
    expected.push(services::default_image());
    expected.sort();
    assert_eq!(listed.lines().collect::<Vec<_>>(), expected);
    for image in listed.lines() {
        assert!(
            !tag(image).is_empty() && tag(image) != "latest",
            "{image} is not pinned"
        );
    }
    let manifest = std::fs::read_to_string(&example).unwrap();
    let from_stdin = operator_images("-", Some(&manifest));
    assert_eq!(String::from_utf8(from_stdin.stdout).unwrap(), listed);

    // Several labs, as `make load` passes every example: each image once.
    let custom = manifest.replace("spec:\n", "spec:\n  redis:\n    image: redis:7.4\n");
    let both = operator_images("-", Some(&format!("---\n{manifest}---\n{custom}")));
    let both = String::from_utf8(both.stdout).unwrap();
    let mut union: Vec<&str> = listed.lines().chain(["redis:7.4"]).collect();
    union.sort();
    assert_eq!(both.lines().collect::<Vec<_>>(), union);

    let custom = operator_images("-", Some(&custom));
    assert!(
        String::from_utf8(custom.stdout)
            .unwrap()
            .contains("redis:7.4\n")
    );

    let refused = operator_images("-", Some("kind: NotALab\nspec: 3\n"));
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("is not a TracingLab"), "{stderr}");
}
