//! `tracing-lab-operator check EXERCISE`: whether an exercise's outcome shows in a student's lab,
//! by the criteria of the workshop's scenario tests (`criteria`), read as the student would: the
//! lab and its pods through the Kubernetes API, its traces from Jaeger's query API through the
//! API server's service proxy (or at an address given, such as a port-forward's).

mod criteria;
mod spans;

pub use criteria::{Exercise, Outcome};
pub use spans::Span;

use crate::TracingLab;
use crate::render::common::{child_name, lab_selector};
use crate::render::jaeger;
use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt as _};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// Traces Jaeger returns per service and search: more than a workshop window holds.
const SEARCH_LIMIT: usize = 1000;

/// Where Jaeger's query API is read.
pub enum Jaeger {
    /// Through the API server's proxy to the lab's Jaeger Service: the student's credentials
    /// suffice (`get` on `services/proxy`).
    Proxy { client: Client, base: String },
    /// At an address, e.g. `http://localhost:16686` behind `kubectl port-forward`.
    Direct { http: reqwest::Client, base: String },
}

impl Jaeger {
    pub fn proxy(client: Client, namespace: &str, lab: &str) -> Self {
        let service = child_name(lab, jaeger::JAEGER.suffix);
        let base = format!(
            "/api/v1/namespaces/{namespace}/services/{service}:{}/proxy",
            jaeger::UI_PORT
        );
        Self::Proxy { client, base }
    }

    pub fn at(url: &str) -> Self {
        Self::Direct {
            http: reqwest::Client::new(),
            base: url.trim_end_matches('/').to_owned(),
        }
    }

    /// `GET` on the query API: the JSON answer, or `None` for 404 (Jaeger's "nothing found").
    async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Option<Value>> {
        let mut url = reqwest::Url::parse("http://jaeger")?;
        url.set_path(path);
        url.query_pairs_mut().extend_pairs(query);
        let path_and_query = format!("{}?{}", url.path(), url.query().unwrap_or_default());
        let text = match self {
            Self::Proxy { client, base } => {
                let request =
                    axum::http::Request::get(format!("{base}{path_and_query}")).body(Vec::new())?;
                match client.request_text(request).await {
                    Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
                    answer => answer.with_context(|| format!("reading {path} from {self}"))?,
                }
            }
            Self::Direct { http, base } => {
                let answer = http
                    .get(format!("{base}{path_and_query}"))
                    .send()
                    .await
                    .with_context(|| format!("reading {path} from {self}"))?;
                if answer.status() == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                answer.error_for_status()?.text().await?
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("Jaeger's answer to {path} is not JSON"))
    }

    /// Every span of the traces that began in the last `since`, of every service.
    pub async fn spans(&self, since: Duration) -> anyhow::Result<Vec<Span>> {
        // Jaeger answers an empty list, never 404: a 404 is the API server's, or not Jaeger.
        let services = self.get("/api/v3/services", &[]).await?.with_context(|| {
            format!("{self} answered 404 for /api/v3/services: is the lab's Jaeger there?")
        })?;
        let now = SystemTime::now();
        let rfc3339 = |t: SystemTime| humantime::format_rfc3339_micros(t).to_string();
        let mut all = BTreeMap::new();
        for service in services["services"].as_array().into_iter().flatten() {
            let service = service.as_str().unwrap_or_default();
            let query = [
                ("query.service_name", service.to_owned()),
                ("query.start_time_min", rfc3339(now - since)),
                (
                    "query.start_time_max",
                    rfc3339(now + Duration::from_secs(60)),
                ),
                ("query.num_traces", SEARCH_LIMIT.to_string()),
            ];
            if let Some(answer) = self.get("/api/v3/traces", &query).await? {
                for span in spans::of_answer(&answer)? {
                    all.insert((span.trace_id.clone(), span.span_id.clone()), span);
                }
            }
        }
        Ok(all.into_values().collect())
    }
}

impl std::fmt::Display for Jaeger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Proxy { base, .. } => write!(f, "Jaeger through the API server's proxy ({base})"),
            Self::Direct { base, .. } => write!(f, "Jaeger at {base}"),
        }
    }
}

/// Whether `exercise`'s outcome shows in lab `lab` of `namespace` (the only one there when not
/// named), its traces read from `jaeger` (the lab's own through the API server when `None`) over
/// the last `since`. Returns the lab's name and the outcome.
pub async fn check(
    client: Client,
    namespace: &str,
    lab: Option<&str>,
    exercise: Exercise,
    since: Duration,
    jaeger: Option<Jaeger>,
) -> anyhow::Result<(String, Outcome)> {
    let lab = crate::trace_logs::lab_name(&client, namespace, lab).await?;
    let traced = async || {
        let jaeger = jaeger.unwrap_or_else(|| Jaeger::proxy(client.clone(), namespace, &lab));
        jaeger.spans(since).await
    };
    let outcome = match exercise {
        Exercise::BasicTracing => criteria::basic_tracing(&traced().await?),
        Exercise::BrokenPropagation => criteria::broken_propagation(&traced().await?),
        Exercise::FaultInjection => criteria::fault_injection(&traced().await?),
        Exercise::SynchronousHop => criteria::synchronous_hop(&traced().await?),
        Exercise::SevereOom => {
            let stored = Api::<TracingLab>::namespaced(client.clone(), namespace)
                .get(&lab)
                .await?;
            let pods = Api::<Pod>::namespaced(client.clone(), namespace)
                .list(&ListParams::default().labels(&lab_selector(&lab)))
                .await
                .with_context(|| format!("listing the pods of lab {lab:?}"))?;
            let components = stored.status.map(|s| s.components).unwrap_or_default();
            criteria::severe_oom(&components, &last_terminations(&pods.items))
        }
    };
    Ok((lab, outcome))
}

/// `pod/container` and the reason of each container's last termination.
fn last_terminations(pods: &[Pod]) -> Vec<(String, String)> {
    pods.iter()
        .flat_map(|pod| {
            let statuses = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref());
            statuses.into_iter().flatten().filter_map(move |c| {
                let reason = c.last_state.as_ref()?.terminated.as_ref()?.reason.clone()?;
                Some((format!("{}/{}", pod.name_any(), c.name), reason))
            })
        })
        .collect()
}
