//! Logs by trace: every log line of a lab's pods that carries one trace id, in time order, so that
//! a trace found in Jaeger leads to what each service logged while handling it.
//!
//! Lines are read through the Kubernetes API (`pods/log`, what `kubectl logs` reads) with the
//! kubelet's timestamps, which order lines across pods whatever each program prints.

use crate::TracingLab;
use crate::render::common::lab_selector;
use anyhow::{Context as _, bail};
use futures::{AsyncBufReadExt as _, StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, LogParams};
use kube::{Client, ResourceExt as _};

/// A W3C trace id as Jaeger shows it: 32 hex digits, not all zero. Upper case is accepted and
/// lowered, as services print them lowered.
pub fn parse_trace_id(text: &str) -> Result<String, String> {
    let id = text.trim().to_ascii_lowercase();
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{text:?} is not a trace id: 32 hexadecimal digits, as Jaeger shows them"
        ));
    }
    if id.bytes().all(|b| b == b'0') {
        return Err("the all-zero trace id is invalid in W3C trace context".into());
    }
    Ok(id)
}

/// One log line, where it came from and when the kubelet received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at: Timestamp,
    /// `pod/container`, with ` (previous)` for a container's instance before its last restart.
    pub source: String,
    pub text: String,
}

impl std::fmt::Display for LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.at, self.source, self.text)
    }
}

/// The line of a timestamped log (`<RFC 3339 time> <text>`), if it carries `trace_id`.
fn carrying(trace_id: &str, source: &str, line: &str) -> Option<LogLine> {
    let (at, text) = line.split_once(' ')?;
    if !text.contains(trace_id) {
        return None;
    }
    Some(LogLine {
        at: at.parse().ok()?,
        source: source.to_owned(),
        text: text.to_owned(),
    })
}

/// Lines from several sources, merged into time order (stable: a source keeps its own order).
pub fn in_time_order(mut lines: Vec<LogLine>) -> Vec<LogLine> {
    lines.sort_by_key(|line| line.at);
    lines
}

/// Which lab of `namespace` to read: `lab` if it exists, else the only one there.
pub(crate) async fn lab_name(
    client: &Client,
    namespace: &str,
    lab: Option<&str>,
) -> anyhow::Result<String> {
    let labs: Api<TracingLab> = Api::namespaced(client.clone(), namespace);
    if let Some(name) = lab {
        return match labs.get_opt(name).await? {
            Some(_) => Ok(name.to_owned()),
            None => bail!("no TracingLab {name:?} in namespace {namespace:?}"),
        };
    }
    let names: Vec<String> = labs
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing the TracingLabs of namespace {namespace:?}"))?
        .iter()
        .map(|l| l.name_any())
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no TracingLab in namespace {namespace:?}"),
        several => bail!(
            "namespace {namespace:?} holds {} TracingLabs ({}): name one with --lab",
            several.len(),
            several.join(", ")
        ),
    }
}

/// The lines of one container's log (its previous instance's when `previous`) carrying `trace_id`.
async fn container_lines(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    previous: bool,
    trace_id: &str,
) -> anyhow::Result<Vec<LogLine>> {
    let params = LogParams {
        container: Some(container.to_owned()),
        timestamps: true,
        previous,
        ..LogParams::default()
    };
    let source = if previous {
        format!("{pod}/{container} (previous)")
    } else {
        format!("{pod}/{container}")
    };
    let log = pods
        .log_stream(pod, &params)
        .await
        .with_context(|| format!("reading the log of {source}"))?;
    log.lines()
        .try_filter_map(|line| std::future::ready(Ok(carrying(trace_id, &source, &line))))
        .try_collect()
        .await
        .with_context(|| format!("reading the log of {source}"))
}

/// Every line of the lab's pods' logs that carries `trace_id`, in time order, and the lab's name.
pub async fn of_trace(
    client: Client,
    namespace: &str,
    lab: Option<&str>,
    trace_id: &str,
) -> anyhow::Result<(String, Vec<LogLine>)> {
    let lab = lab_name(&client, namespace, lab).await?;
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let listed = pods
        .list(&ListParams::default().labels(&lab_selector(&lab)))
        .await
        .with_context(|| format!("listing the pods of lab {lab:?}"))?;
    let mut reads = Vec::new();
    for pod in &listed {
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_deref())
            .unwrap_or_default();
        // A container that never started has no log to read.
        for status in statuses.iter().filter(|s| s.container_id.is_some()) {
            reads.push((pod.name_any(), status.name.clone(), false));
            if status.restart_count > 0 {
                reads.push((pod.name_any(), status.name.clone(), true));
            }
        }
    }
    let lines: Vec<Vec<LogLine>> = futures::stream::iter(reads)
        .map(|(pod, container, previous)| {
            let pods = &pods;
            async move { container_lines(pods, &pod, &container, previous, trace_id).await }
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    Ok((lab, in_time_order(lines.into_iter().flatten().collect())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn a_trace_id_is_32_hex_digits_not_all_zero() {
        assert_eq!(parse_trace_id(ID).as_deref(), Ok(ID));
        assert_eq!(
            parse_trace_id(&ID.to_uppercase()).as_deref(),
            Ok(ID),
            "lowered"
        );
        for bad in ["", "4bf92f35", &format!("{ID}0"), &ID.replace('4', "g")] {
            let err = parse_trace_id(bad).unwrap_err();
            assert!(err.contains("32 hexadecimal digits"), "{bad}: {err}");
        }
        assert!(
            parse_trace_id(&"0".repeat(32))
                .unwrap_err()
                .contains("all-zero")
        );
    }

    #[test]
    fn only_lines_carrying_the_id_are_kept_with_their_kubelet_time() {
        let line =
            format!(r#"2026-12-04T16:00:00.5Z {{"message":"order handled","trace_id":"{ID}"}}"#);
        let kept = carrying(ID, "lab-api-1/api", &line).unwrap();
        assert_eq!(kept.at, "2026-12-04T16:00:00.5Z".parse().unwrap());
        assert_eq!(kept.source, "lab-api-1/api");
        assert_eq!(
            kept.to_string(),
            format!(
                r#"2026-12-04T16:00:00.5Z lab-api-1/api {{"message":"order handled","trace_id":"{ID}"}}"#
            )
        );
        let other = r#"2026-12-04T16:00:00.5Z {"trace_id":"00f067aa0ba902b700f067aa0ba902b7"}"#;
        assert_eq!(carrying(ID, "s", other), None);
        assert_eq!(carrying(ID, "s", ""), None);
    }

    #[test]
    fn lines_merge_by_time_not_by_text() {
        // RFC 3339 as the kubelet writes it drops trailing zeros: ".5Z" is later than ".123456789Z"
        // although it sorts before it as text.
        let line = |at: &str, source: &str| LogLine {
            at: at.parse().unwrap(),
            source: source.into(),
            text: String::new(),
        };
        let merged = in_time_order(vec![
            line("2026-12-04T16:00:00.5Z", "processing"),
            line("2026-12-04T16:00:00.123456789Z", "api"),
            line("2026-12-04T16:00:01Z", "analytics"),
            line("2026-12-04T16:00:00.5Z", "processing, later"),
        ]);
        let sources: Vec<&str> = merged.iter().map(|l| l.source.as_str()).collect();
        assert_eq!(
            sources,
            ["api", "processing", "processing, later", "analytics"]
        );
    }
}
