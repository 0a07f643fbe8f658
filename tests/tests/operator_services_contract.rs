//! The operator and the programs it deploys agree: the whole lab the operator renders runs as
//! rendered (Kafka as its image starts it, Redis, Jaeger and the Collector with their rendered
//! configurations, the four services with their arguments, every environment variable and the
//! lab configuration document from the ConfigMap); only the in-cluster addresses point at loopback
//! ports. An order then crosses all four services as one trace in Jaeger carrying the resource
//! attributes the operator set, and topics get the lab's partition count.

use std::time::Duration;
use tracing_lab_config::Role;
use tracing_lab_operator::TracingLab;
use tracing_lab_tests::lab::{RenderedLab, stored};
use tracing_lab_tests::poll::eventually;

const LAB: &str = "shop";
const NAMESPACE: &str = "class-1";

fn lab() -> TracingLab {
    let light = serde_json::json!({"cpuWeight": 1, "ioWeight": 1, "intensities": ["light"]});
    stored(
        LAB,
        NAMESPACE,
        serde_json::json!({
            "kafka": {"partitions": 4},
            "sampling": {
                "head": {"sampler": "parentbased_traceidratio", "ratio": 1.0},
                "perService": {"processing": {"sampler": "parentbased_always_on"}},
            },
            "services": {
                "api": {"workload": light},
                "processing": {"workload": light, "concurrency": 2},
                "notification": {"workload": light},
                "analytics": {"workload": light},
            },
        }),
    )
    .expect("a TracingLab")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_lab_runs_and_traces_an_order_into_jaeger() {
    let lab = RenderedLab::start(&lab()).await.unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/order", lab.api_url().unwrap()))
        .json(&serde_json::json!({"item": "contract", "quantity": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        202,
        "{}",
        response.text().await.unwrap()
    );
    let spans = lab
        .traces
        .query()
        .wait_for(
            |spans| spans.iter().any(|s| s.name == "analyze_order"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let analyze = spans.iter().find(|s| s.name == "analyze_order").unwrap();
    // Each service exports its spans in batches of its own, so analytics' may arrive first.
    let trace = eventually(
        "a span of every service in the order's trace",
        Duration::from_secs(30),
        || async {
            let trace = lab
                .traces
                .query()
                .trace(&analyze.trace_id)
                .await
                .map_err(|e| e.to_string())?;
            let missing: Vec<Role> = Role::ALL
                .into_iter()
                .filter(|role| !trace.iter().any(|s| s.service_name == role.name()))
                .collect();
            if missing.is_empty() {
                Ok(trace)
            } else {
                Err(format!("no span of {missing:?} yet"))
            }
        },
    )
    .await;
    for role in Role::ALL {
        let span = trace
            .iter()
            .find(|s| s.service_name == role.name())
            .unwrap_or_else(|| panic!("no {role} span in the order's trace"));
        let resource = |key: &str| {
            span.resource
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        assert_eq!(resource("service.namespace").as_deref(), Some(LAB));
        assert_eq!(resource("k8s.namespace.name").as_deref(), Some(NAMESPACE));
        assert_eq!(resource("k8s.pod.name"), Some(format!("{LAB}-{role}-0")));
    }
    let partitions = lab.broker.end_offsets("orders").await.unwrap().len();
    assert_eq!(partitions, 4, "topics get spec.kafka.partitions");
}
