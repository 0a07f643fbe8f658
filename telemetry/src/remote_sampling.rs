//! Around the SDK's Jaeger remote sampler, which makes every decision:
//! - [`JaegerStrategies`], its HTTP client. Jaeger v2 answers `/sampling` in Jaeger's legacy
//!   encoding, where the strategy type is a number (0 probabilistic, 1 rate limiting); the SDK reads
//!   it only by name and would keep its initial ratio forever. The client names the number and
//!   leaves the rest of the answer to the SDK. It also says in the log when no strategy can be had,
//!   which the SDK reports only at debug level: the sampler then goes on with the last strategy it
//!   read, or the initial ratio.
//! - [`Reporting`], which puts on each root span it keeps the strategy that kept it
//!   (`sampler.type`, `sampler.param`), as Jaeger's own clients do: Jaeger's adaptive sampling
//!   counts a service's traffic by them, and a student sees in the trace which rule kept it.

use opentelemetry::trace::{Link, SpanKind, TraceContextExt as _, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// The span attributes of Jaeger's clients that name the strategy a trace was kept by.
const SAMPLER_TYPE: &str = "sampler.type";
const SAMPLER_PARAM: &str = "sampler.param";

#[derive(Debug)]
pub(crate) struct JaegerStrategies {
    client: reqwest::Client,
    /// Whether the last request failed, so that a failure is logged once, not at every poll.
    failing: AtomicBool,
    served: Served,
}

impl JaegerStrategies {
    pub(crate) fn new(client: reqwest::Client, served: Served) -> Self {
        Self {
            client,
            failing: AtomicBool::new(false),
            served,
        }
    }
}

/// The strategy Jaeger last served, shared by the client that reads it and the sampler that
/// reports it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Served(Arc<RwLock<Option<Strategy>>>);

#[derive(Debug, Clone, PartialEq)]
enum Strategy {
    /// A ratio per operation, and one for the others.
    Probabilistic {
        default: f64,
        operations: HashMap<String, f64>,
    },
    RateLimiting(f64),
}

impl Strategy {
    /// Reads an answer (either encoding); `None` when it holds no strategy the SDK would use.
    fn of(answer: &serde_json::Value) -> Option<Self> {
        let rate = |v: &serde_json::Value| v["samplingRate"].as_f64();
        if let Some(per_operation) = answer.get("operationSampling").filter(|v| !v.is_null()) {
            let operations = per_operation["perOperationStrategies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| {
                    Some((
                        o["operation"].as_str()?.to_owned(),
                        rate(&o["probabilisticSampling"])?,
                    ))
                })
                .collect();
            return Some(Self::Probabilistic {
                default: per_operation["defaultSamplingProbability"].as_f64()?,
                operations,
            });
        }
        if let Some(limit) = answer["rateLimitingSampling"]["maxTracesPerSecond"].as_f64() {
            return Some(Self::RateLimiting(limit));
        }
        Some(Self::Probabilistic {
            default: rate(&answer["probabilisticSampling"])?,
            operations: HashMap::new(),
        })
    }

    fn attributes(&self, operation: &str) -> [KeyValue; 2] {
        match self {
            Self::Probabilistic {
                default,
                operations,
            } => [
                KeyValue::new(SAMPLER_TYPE, "probabilistic"),
                KeyValue::new(SAMPLER_PARAM, *operations.get(operation).unwrap_or(default)),
            ],
            Self::RateLimiting(limit) => [
                KeyValue::new(SAMPLER_TYPE, "ratelimiting"),
                KeyValue::new(SAMPLER_PARAM, *limit),
            ],
        }
    }
}

/// The SDK's remote sampler (parent-based or not), reporting on each root span it keeps the
/// strategy that kept it: what Jaeger last served, or until then the initial ratio.
#[derive(Debug, Clone)]
pub(crate) struct Reporting {
    pub(crate) sampler: Sampler,
    pub(crate) served: Served,
    pub(crate) initial: f64,
}

impl ShouldSample for Reporting {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let mut result = self.sampler.should_sample(
            parent_context,
            trace_id,
            name,
            span_kind,
            attributes,
            links,
        );
        let root = parent_context.is_none_or(|cx| !cx.span().span_context().is_valid());
        if root && result.decision == SamplingDecision::RecordAndSample {
            let served = self.served.0.read().ok().and_then(|s| s.clone());
            let strategy = served.unwrap_or(Strategy::Probabilistic {
                default: self.initial,
                operations: HashMap::new(),
            });
            result.attributes.extend(strategy.attributes(name));
        }
        result
    }
}

#[async_trait::async_trait]
impl HttpClient for JaegerStrategies {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let uri = request.uri().to_string();
        let result = match self.client.send_bytes(request).await {
            Ok(response) if response.status().is_success() => {
                named_strategy_type(response).map(|(named, answer)| {
                    if let Ok(mut served) = self.served.0.write() {
                        *served = Strategy::of(&answer);
                    }
                    named
                })
            }
            Ok(response) => Err(format!("Jaeger answered {}", response.status()).into()),
            Err(err) => Err(err),
        };
        match &result {
            Ok(_) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(%uri, "sampling strategy read again");
                }
            }
            Err(err) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%uri, error = %err, "no sampling strategy from Jaeger; sampling as before");
                }
            }
        }
        result
    }
}

/// The answer with its `strategyType` named as the SDK reads it (`PROBABILISTIC`,
/// `RATELIMITING`; an answer that names it already passes as it is), and the answer as read.
fn named_strategy_type(
    response: Response<Bytes>,
) -> Result<(Response<Bytes>, serde_json::Value), HttpError> {
    let (parts, body) = response.into_parts();
    let mut strategy: serde_json::Value = serde_json::from_slice(&body)?;
    let name = match strategy.get("strategyType") {
        Some(serde_json::Value::Number(n)) => match n.as_u64() {
            Some(0) => "PROBABILISTIC",
            Some(1) => "RATELIMITING",
            _ => return Err(format!("unknown strategyType {n}").into()),
        },
        _ => return Ok((Response::from_parts(parts, body), strategy)),
    };
    strategy["strategyType"] = name.into();
    let named = Bytes::from(serde_json::to_vec(&strategy)?);
    Ok((Response::from_parts(parts, named), strategy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(body: &str) -> serde_json::Value {
        let response = Response::builder()
            .status(200)
            .body(Bytes::from(body.to_owned()))
            .unwrap();
        serde_json::from_slice(named_strategy_type(response).unwrap().0.body()).unwrap()
    }

    /// What Jaeger v2.13 answered for a service with a ratio per operation, and for one with a rate.
    #[test]
    fn jaegers_numbered_strategy_types_are_named_and_the_rest_kept() {
        let per_operation = r#"{"strategyType":0,"probabilisticSampling":{"samplingRate":0.2},"operationSampling":{"defaultSamplingProbability":0.2,"defaultLowerBoundTracesPerSecond":0,"perOperationStrategies":[{"operation":"get_order","probabilisticSampling":{"samplingRate":0.1}}],"defaultUpperBoundTracesPerSecond":0}}"#;
        let mut expected: serde_json::Value = serde_json::from_str(per_operation).unwrap();
        expected["strategyType"] = "PROBABILISTIC".into();
        assert_eq!(named(per_operation), expected);
        assert_eq!(
            named(r#"{"strategyType":1,"rateLimitingSampling":{"maxTracesPerSecond":3}}"#),
            serde_json::json!({"strategyType": "RATELIMITING", "rateLimitingSampling": {"maxTracesPerSecond": 3}})
        );
        let already =
            r#"{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":1}}"#;
        assert_eq!(
            named(already),
            serde_json::from_str::<serde_json::Value>(already).unwrap()
        );
    }

    #[test]
    fn the_strategy_served_is_read_for_each_operation() {
        let per_operation = named(
            r#"{"strategyType":0,"probabilisticSampling":{"samplingRate":0.2},"operationSampling":{"defaultSamplingProbability":0.2,"defaultLowerBoundTracesPerSecond":0,"perOperationStrategies":[{"operation":"get_order","probabilisticSampling":{"samplingRate":0.1}}],"defaultUpperBoundTracesPerSecond":0}}"#,
        );
        let strategy = Strategy::of(&per_operation).unwrap();
        assert_eq!(
            strategy.attributes("get_order"),
            [
                KeyValue::new(SAMPLER_TYPE, "probabilistic"),
                KeyValue::new(SAMPLER_PARAM, 0.1)
            ]
        );
        assert_eq!(
            strategy.attributes("create_order")[1],
            KeyValue::new(SAMPLER_PARAM, 0.2)
        );
        let limited =
            named(r#"{"strategyType":1,"rateLimitingSampling":{"maxTracesPerSecond":3}}"#);
        assert_eq!(
            Strategy::of(&limited).unwrap().attributes("POST"),
            [
                KeyValue::new(SAMPLER_TYPE, "ratelimiting"),
                KeyValue::new(SAMPLER_PARAM, 3.0)
            ]
        );
        assert_eq!(
            Strategy::of(&serde_json::json!({"strategyType": "PROBABILISTIC"})),
            None
        );
    }

    /// Only a root span the sampler keeps is tagged, with the initial ratio until Jaeger answers.
    #[test]
    fn kept_root_spans_name_the_strategy_that_kept_them() {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceState};
        let reporting = |ratio: f64| Reporting {
            sampler: Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))),
            served: Served::default(),
            initial: ratio,
        };
        let decide = |sampler: &Reporting, parent: Option<&Context>| {
            sampler.should_sample(
                parent,
                TraceId::from(7),
                "get_order",
                &SpanKind::Server,
                &[],
                &[],
            )
        };
        let kept = decide(&reporting(1.0), None);
        assert_eq!(kept.decision, SamplingDecision::RecordAndSample);
        assert_eq!(
            kept.attributes,
            [
                KeyValue::new(SAMPLER_TYPE, "probabilistic"),
                KeyValue::new(SAMPLER_PARAM, 1.0)
            ]
        );
        assert!(decide(&reporting(0.0), None).attributes.is_empty());
        let parent = Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(7),
            SpanId::from(9),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ));
        let child = decide(&reporting(1.0), Some(&parent));
        assert_eq!(child.decision, SamplingDecision::RecordAndSample);
        assert!(child.attributes.is_empty());
        let served = Served::default();
        *served.0.write().unwrap() = Some(Strategy::RateLimiting(2.0));
        let sampler = Reporting {
            served,
            ..reporting(1.0)
        };
        assert_eq!(
            decide(&sampler, None).attributes[0],
            KeyValue::new(SAMPLER_TYPE, "ratelimiting")
        );
    }

    #[test]
    fn an_unknown_strategy_type_or_no_json_is_an_error() {
        for body in [r#"{"strategyType":7}"#, "collector error"] {
            let response = Response::builder()
                .status(200)
                .body(Bytes::from(body))
                .unwrap();
            assert!(named_strategy_type(response).is_err(), "{body}");
        }
    }
}
