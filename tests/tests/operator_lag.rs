//! Kafka consumer lag on the TracingLab, against a real kube-apiserver and Apache Kafka
//! broker: the operator reports a group's backlog within one period, sees it fall to zero when the
//! group commits, names idle consumers with the numbers, shows the intake rate, turns an
//! unreachable broker into a condition and recovers, and none of these status writes reconciles.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing_lab_operator::crd::GroupLag;
use tracing_lab_operator::lag;
use tracing_lab_operator::metrics::Shared;
use tracing_lab_operator::{Config, TracingLab};
use tracing_lab_tests::KafkaBroker;
use tracing_lab_tests::operator_env::OperatorEnv;
use tracing_lab_tests::poll::{eventually, settled};

const NS: &str = "lag";
const LAB: &str = "shop";
/// The lag period used here; every expectation must hold within a few of them.
const PERIOD: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(30);

struct Env {
    env: OperatorEnv,
    labs: Api<TracingLab>,
    shared: Arc<Shared>,
}

async fn start(broker: &KafkaBroker) -> Env {
    let shared = Arc::new(Shared::default());
    let config = Config {
        namespace: None,
        shared: shared.clone(),
        lag: lag::Config {
            interval: PERIOD,
            timeout: Duration::from_secs(1),
            bootstrap: Some(broker.bootstrap()),
        },
    };
    let env = OperatorEnv::start(NS, config).await;
    env.create_lab(LAB, json!({})).await;
    Env {
        labs: env.api(),
        env,
        shared,
    }
}

impl Env {
    /// Polls the lab until `check` holds, failing with the last status seen.
    async fn wait_for(&self, what: &str, check: impl Fn(&TracingLab) -> bool) -> TracingLab {
        eventually(what, TIMEOUT, || async {
            let lab = self.labs.get(LAB).await.map_err(|e| e.to_string())?;
            if check(&lab) {
                Ok(lab)
            } else {
                Err(format!(
                    "status: {}",
                    serde_json::to_string_pretty(&lab.status).unwrap()
                ))
            }
        })
        .await
    }

    /// The reconcile count once it has held still for a while: the reconciles that the lab's own
    /// objects appearing cause are over by then.
    async fn settled_reconciles(&self) -> u64 {
        settled("the reconcile count", PERIOD * 3, TIMEOUT, || async {
            self.shared.reconciles.get()
        })
        .await
    }

    fn kubectl_get(&self) -> String {
        let out = self.env.kubectl(&["get", "tlab", LAB]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn group<'a>(lab: &'a TracingLab, name: &str) -> Option<&'a GroupLag> {
    lab.status
        .as_ref()?
        .kafka
        .as_ref()?
        .groups
        .iter()
        .find(|g| g.group == name)
}

fn kafka_condition(lab: &TracingLab) -> Option<&Condition> {
    lab.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "KafkaReachable")
}

/// Consumers that join `group` and keep polling (so they stay members) until dropped.
struct Members {
    running: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Members {
    fn join(broker: &KafkaBroker, group: &str, topic: &str, n: usize) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let threads = (0..n)
            .map(|_| {
                let consumer: BaseConsumer = broker
                    .client_config()
                    .set("group.id", group)
                    .set("enable.auto.commit", "false")
                    .create()
                    .expect("consumer");
                consumer.subscribe(&[topic]).expect("subscribe");
                let running = running.clone();
                std::thread::spawn(move || {
                    while running.load(Ordering::Relaxed) {
                        let _ = consumer.poll(Duration::from_millis(100));
                    }
                })
            })
            .collect();
        Self { running, threads }
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_reported_drains_to_zero_and_idle_consumers_are_named() {
    let broker = KafkaBroker::start().await.expect("broker starts");
    broker.create_topic("orders", 3).await.unwrap();
    broker.create_topic("processed-orders", 1).await.unwrap();
    let env = start(&broker).await;

    // A backlog in `orders` while `processing` committed only half of it.
    broker.produce("orders", 30).await.unwrap();
    let ends = broker.end_offsets("orders").await.unwrap();
    assert_eq!(
        ends.iter().sum::<i64>(),
        30,
        "the broker reports every message"
    );
    let half: Vec<(i32, i64)> = ends
        .iter()
        .enumerate()
        .map(|(p, e)| (p as i32, e / 2))
        .collect();
    broker
        .commit_offsets("processing", "orders", &half)
        .await
        .unwrap();
    let expected: i64 = ends.iter().map(|e| e - e / 2).sum();
    let started = Instant::now();
    let lab = env
        .wait_for("the processing lag", |lab| {
            group(lab, "processing").is_some_and(|g| g.lag == expected)
        })
        .await;
    let waited = started.elapsed();
    assert!(
        waited < PERIOD * 5,
        "reported within a period or so, took {waited:?}"
    );
    let kafka = lab.status.as_ref().unwrap().kafka.as_ref().unwrap();
    assert_eq!(kafka.total_lag, expected);
    assert_eq!(kafka.worst_group.as_deref(), Some("processing"));
    let processing = group(&lab, "processing").unwrap();
    assert_eq!(
        (processing.topic.as_str(), processing.partitions),
        ("orders", 3)
    );
    assert_eq!(processing.consumers, 0);
    assert!(
        processing
            .advice
            .contains("no consumer in group processing"),
        "{}",
        processing.advice
    );
    assert_eq!(
        kafka_condition(&lab).map(|c| c.status.as_str()),
        Some("True")
    );
    let table = env.kubectl_get();
    assert!(table.contains("LAG") && table.contains("WORST"), "{table}");
    assert!(
        table.contains(&expected.to_string()) && table.contains("processing"),
        "{table}"
    );

    // Status writes of the lag monitor trigger no reconcile.
    let reconciles = env.settled_reconciles().await;

    // More orders arrive: the intake rate shows.
    broker.produce("orders", 20).await.unwrap();
    env.wait_for("an intake rate", |lab| {
        lab.status
            .as_ref()
            .and_then(|s| s.kafka.as_ref())
            .and_then(|k| k.orders_per_second)
            .is_some_and(|r| r > 0.0)
    })
    .await;

    // The group catches up: lag falls to zero.
    let ends = broker.end_offsets("orders").await.unwrap();
    let all: Vec<(i32, i64)> = ends
        .iter()
        .enumerate()
        .map(|(p, e)| (p as i32, *e))
        .collect();
    broker
        .commit_offsets("processing", "orders", &all)
        .await
        .unwrap();
    let lab = env
        .wait_for("lag zero", |lab| {
            lab.status
                .as_ref()
                .and_then(|s| s.kafka.as_ref())
                .is_some_and(|k| k.total_lag == 0)
        })
        .await;
    assert_eq!(
        lab.status
            .as_ref()
            .unwrap()
            .kafka
            .as_ref()
            .unwrap()
            .worst_group,
        None
    );

    // Two consumers on a one-partition topic: one of them idles, and the status says so.
    let _members = Members::join(&broker, "notification", "processed-orders", 2);
    let lab = env
        .wait_for("two notification consumers", |lab| {
            // Until the group is stable the broker has not assigned the partition.
            group(lab, "notification").is_some_and(|g| g.consumers == 2 && g.idle_consumers > 0)
        })
        .await;
    let notification = group(&lab, "notification").unwrap();
    assert_eq!(
        (notification.partitions, notification.idle_consumers),
        (1, 1)
    );
    assert!(
        notification.advice.contains("1 of 2 consumers idle"),
        "{}",
        notification.advice
    );
    assert!(
        notification.advice.contains("1 partitions"),
        "{}",
        notification.advice
    );

    assert_eq!(
        env.shared.reconciles.get(),
        reconciles,
        "lag status writes caused reconciles"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_a_condition_then_recovers() {
    let mut broker = KafkaBroker::start().await.expect("broker starts");
    broker.create_topic("orders", 2).await.unwrap();
    let env = start(&broker).await;
    env.wait_for("KafkaReachable True", |lab| {
        kafka_condition(lab).is_some_and(|c| c.status == "True")
    })
    .await;

    broker.stop().unwrap();
    let lab = env
        .wait_for("KafkaReachable False", |lab| {
            kafka_condition(lab).is_some_and(|c| c.status == "False")
        })
        .await;
    let condition = kafka_condition(&lab).unwrap();
    assert_eq!(condition.reason, "BrokerUnreachable");
    assert!(
        condition.message.contains(&broker.bootstrap()),
        "{}",
        condition.message
    );
    assert!(env.env.operator_running(), "the operator keeps running");
    assert!(
        env.shared.lag_failures.get() > 0,
        "failures are counted in the metrics"
    );
    // The reconciler's conditions are untouched by the lag monitor.
    let types: Vec<_> = lab
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .map(|c| c.type_.as_str())
        .collect();
    for t in ["Ready", "Progressing", "Degraded", "KafkaReachable"] {
        assert!(
            types.contains(&t),
            "{t} missing from {types:?}: {}",
            serde_json::to_string_pretty(&lab.metadata.managed_fields).unwrap()
        );
    }

    broker.restart().await.unwrap();
    env.wait_for("KafkaReachable True again", |lab| {
        kafka_condition(lab).is_some_and(|c| c.status == "True")
    })
    .await;
}
