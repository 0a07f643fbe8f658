//! The lab's default images are the versions the tests run: the Kafka libraries, the Collector
//! and Jaeger the harness starts report the versions that the operator's image tags name.

use std::process::Command;

use tracing_lab_operator::render::{collector, jaeger, kafka};
use tracing_lab_tests::assets;

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
