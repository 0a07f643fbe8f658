//! Every collector configuration the operator can render is one that the lab's collector release
//! accepts: `otelcol validate` on the defaults, tail sampling off and on, and each policy alone,
//! each with span metrics off and on.

use std::process::Command;

use tracing_lab_operator::TracingLab;
use tracing_lab_operator::crd::{AttributeMatch, SpanMetricsSpec, TailSampling};
use tracing_lab_operator::render::{LabRef, collector};
use tracing_lab_tests::assets;
use tracing_lab_tests::lab::stored;

fn tail(
    enabled: bool,
    keep_errors: bool,
    latency_threshold_ms: i64,
    percentage: f64,
) -> TailSampling {
    TailSampling {
        enabled,
        keep_errors,
        latency_threshold_ms,
        percentage,
        ..TailSampling::default()
    }
}

/// Two attribute rules: the premium tier, and one attribute with two values.
fn attribute_rules() -> Vec<AttributeMatch> {
    vec![
        AttributeMatch {
            key: "customer.tier".into(),
            values: vec!["premium".into()],
        },
        AttributeMatch {
            key: "http.request.method".into(),
            values: vec!["PUT".into(), "DELETE".into()],
        },
    ]
}

fn lab() -> TracingLab {
    stored("shop", "class-1", serde_json::json!({})).unwrap()
}

/// `otelcol validate` on `config`: Err with what the collector said when it refuses it.
fn validate(config: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let output = Command::new(assets::find("otelcol").unwrap())
        .arg("validate")
        .arg(format!("--config={}", path.display()))
        .output()
        .unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn the_collector_accepts_every_config_the_operator_renders() {
    let lab = lab();
    let lab_ref = LabRef::new(&lab).unwrap();
    let cases = [
        ("defaults", lab.spec.sampling.tail.clone()),
        ("tail sampling off", tail(false, true, 1000, 10.0)),
        (
            "every tail policy",
            TailSampling {
                keep_attributes: attribute_rules(),
                spans_per_second: 100,
                ..tail(true, true, 1000, 10.0)
            },
        ),
        ("errors only", tail(true, true, 0, 0.0)),
        ("latency only", tail(true, false, 2000, 0.0)),
        (
            "attributes only",
            TailSampling {
                keep_attributes: attribute_rules(),
                ..tail(true, false, 0, 0.0)
            },
        ),
        ("percentage only", tail(true, false, 0, 25.0)),
        (
            "budget only",
            TailSampling {
                spans_per_second: 20,
                ..tail(true, false, 0, 0.0)
            },
        ),
    ];
    let metrics = |enabled| SpanMetricsSpec {
        enabled,
        ..Default::default()
    };
    for (name, tail) in cases {
        for span_metrics in [false, true] {
            let config = collector::config(&lab_ref, &tail, &metrics(span_metrics));
            if let Err(refusal) = validate(&config) {
                panic!(
                    "{name}, span metrics {span_metrics}: the collector refuses\n{config}\n{refusal}"
                );
            }
            assert_eq!(config.contains("span_metrics"), span_metrics, "{name}");
        }
        let config = collector::config(&lab_ref, &tail, &metrics(false));
        let policies = collector::tail_policies(&tail).len();
        assert_eq!(
            config.contains("tail_sampling"),
            tail.enabled,
            "{name}: tail sampling in the pipeline exactly when enabled"
        );
        assert_eq!(
            config.matches("type: ").count(),
            if tail.enabled { policies } else { 0 },
            "{name}"
        );
    }
}

#[test]
fn the_collector_refuses_a_policy_setting_it_does_not_know() {
    let lab = lab();
    let config = collector::config(
        &LabRef::new(&lab).unwrap(),
        &tail(true, true, 1000, 10.0),
        &SpanMetricsSpec::default(),
    );
    let broken = config.replace("threshold_ms:", "threshold_msec:");
    assert_ne!(broken, config);
    let refusal = validate(&broken).expect_err("an unknown policy setting is refused");
    assert!(refusal.contains("threshold_msec"), "{refusal}");
}
