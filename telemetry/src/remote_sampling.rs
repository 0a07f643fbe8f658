//! The HTTP client of the SDK's Jaeger remote sampler. Jaeger v2 answers `/sampling` in Jaeger's
//! legacy encoding, where the strategy type is a number (0 probabilistic, 1 rate limiting); the
//! SDK reads it only by name and would keep its initial ratio forever. This client names the
//! number and leaves the rest of the answer, and every decision, to the SDK. It also says in the
//! log when no strategy can be had, which the SDK reports only at debug level: the sampler then
//! goes on with the last strategy it read, or the initial ratio.

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug)]
pub(crate) struct JaegerStrategies {
    client: reqwest::Client,
    /// Whether the last request failed, so that a failure is logged once, not at every poll.
    failing: AtomicBool,
}

impl JaegerStrategies {
    pub(crate) fn new(client: reqwest::Client) -> Self {
        Self {
            client,
            failing: AtomicBool::new(false),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for JaegerStrategies {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let uri = request.uri().to_string();
        let result = match self.client.send_bytes(request).await {
            Ok(response) if response.status().is_success() => named_strategy_type(response),
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
/// `RATELIMITING`); an answer that names it already passes as it is.
fn named_strategy_type(response: Response<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let (parts, body) = response.into_parts();
    let mut strategy: serde_json::Value = serde_json::from_slice(&body)?;
    let name = match strategy.get("strategyType") {
        Some(serde_json::Value::Number(n)) => match n.as_u64() {
            Some(0) => "PROBABILISTIC",
            Some(1) => "RATELIMITING",
            _ => return Err(format!("unknown strategyType {n}").into()),
        },
        _ => return Ok(Response::from_parts(parts, body)),
    };
    strategy["strategyType"] = name.into();
    Ok(Response::from_parts(
        parts,
        Bytes::from(serde_json::to_vec(&strategy)?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(body: &str) -> serde_json::Value {
        let response = Response::builder()
            .status(200)
            .body(Bytes::from(body.to_owned()))
            .unwrap();
        serde_json::from_slice(named_strategy_type(response).unwrap().body()).unwrap()
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
