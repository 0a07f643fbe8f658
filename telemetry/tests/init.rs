//! `init` installs process-wide state, so each case runs in a child process (this test binary,
//! re-run on one test with `TELEMETRY_TEST_CASE` set) and the parent inspects its output.

use std::process::{Command, Output};

const CASE_VAR: &str = "TELEMETRY_TEST_CASE";

fn run_child(test_name: &str, envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary path"));
    cmd.args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE_VAR, "1")
        .env_remove("RUST_LOG");
    for key in [
        "OTEL_SDK_DISABLED",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
    ] {
        cmd.env_remove(key);
    }
    cmd.envs(envs.iter().copied());
    cmd.output().expect("child test process runs")
}

fn in_child() -> bool {
    std::env::var_os(CASE_VAR).is_some()
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| {
            l.find('{')
                .and_then(|start| serde_json::from_str(&l[start..]).ok())
        })
        .collect()
}

#[test]
fn log_lines_carry_the_ids_of_the_current_span() {
    if in_child() {
        let guard = tracing_lab_telemetry::init("unit").expect("init");
        let span = tracing::info_span!("create_order");
        span.in_scope(|| tracing::warn!(quantity = 3, "inside"));
        tracing::info!("outside");
        guard.shutdown().expect("shutdown");
        return;
    }
    let out = run_child("log_lines_carry_the_ids_of_the_current_span", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    let inside = lines
        .iter()
        .find(|l| l["message"] == "inside")
        .expect("inside line");
    assert_eq!(inside["level"], "WARN");
    assert_eq!(inside["quantity"], 3);
    assert_eq!(inside["span"], "create_order");
    let trace_id = inside["trace_id"].as_str().expect("trace_id");
    let span_id = inside["span_id"].as_str().expect("span_id");
    assert_eq!(trace_id.len(), 32);
    assert_eq!(span_id.len(), 16);
    assert_ne!(trace_id, "0".repeat(32));
    let outside = lines
        .iter()
        .find(|l| l["message"] == "outside")
        .expect("outside line");
    assert!(outside.get("trace_id").is_none(), "{outside}");
}

#[test]
fn ids_survive_a_stricter_log_level() {
    if in_child() {
        let _guard = tracing_lab_telemetry::init("unit").expect("init");
        tracing::info_span!("process_order").in_scope(|| tracing::warn!("slow"));
        return;
    }
    let out = run_child("ids_survive_a_stricter_log_level", &[("RUST_LOG", "warn")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    let slow = lines
        .iter()
        .find(|l| l["message"] == "slow")
        .expect("slow line");
    assert!(slow["trace_id"].is_string(), "{slow}");
}

#[test]
fn invalid_variables_stop_init_with_their_name() {
    if in_child() {
        let err = tracing_lab_telemetry::init("unit")
            .err()
            .expect("init must fail");
        println!("ERROR: {err:#}");
        return;
    }
    for (var, value) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_TRACES_SAMPLER", "maybe"),
        ("RUST_LOG", "info,[[["),
    ] {
        let out = run_child(
            "invalid_variables_stop_init_with_their_name",
            &[(var, value)],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.contains("ERROR: "))
            .unwrap_or_default();
        assert!(line.contains(var), "{var}: {stdout}");
    }
}

#[test]
fn disabled_sdk_still_logs() {
    if in_child() {
        let guard = tracing_lab_telemetry::init("unit").expect("init");
        assert!(!guard.tracing_enabled());
        tracing::info_span!("x").in_scope(|| tracing::info!("still here"));
        return;
    }
    let out = run_child("disabled_sdk_still_logs", &[("OTEL_SDK_DISABLED", "true")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    let line = lines
        .iter()
        .find(|l| l["message"] == "still here")
        .expect("line");
    assert!(line.get("trace_id").is_none());
}
