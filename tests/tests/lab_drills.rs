//! Fault drills on a whole lab run by `tracing_lab_tests::runner`: the operator binary on a real
//! API server, Apache Kafka, Redis, the Collector, Jaeger and the four services as processes, with
//! `kubectl scale` starting and stopping service pods. The test posts the orders itself, so it
//! knows every order the api answered 202, and reads the outcome from Redis, Jaeger and the
//! broker. Each drill prints its counts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::NamedTempFile;
use tokio::task::JoinSet;
use tracing_lab_config::Role;
use tracing_lab_tests::otlp::ReceivedSpan;
use tracing_lab_tests::poll::eventually;
use tracing_lab_tests::runner::LabRunner;

const READY_TIMEOUT: Duration = Duration::from_secs(180);
const PIPELINE_TIMEOUT: Duration = Duration::from_secs(300);
const GROUPS: [(&str, &str); 3] = [
    ("processing", "orders"),
    ("notification", "processed-orders"),
    ("analytics", "notified-orders"),
];

/// A lab as `examples/head-of-line-blocking.yaml` writes it, with `services` instead of its
/// services and no load generator (the drill posts the orders).
fn manifest(services: Value, kafka: Value) -> NamedTempFile {
    let lab = json!({
        "apiVersion": "tracinglab.dev/v1alpha1",
        "kind": "TracingLab",
        "metadata": {"name": "lab"},
        "spec": {"services": services, "kafka": kafka},
    });
    let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(file.path(), lab.to_string()).unwrap();
    file
}

async fn ready_lab(namespace: &str, manifest: &NamedTempFile) -> LabRunner {
    let lab = LabRunner::start(namespace, manifest.path())
        .await
        .unwrap_or_else(|e| panic!("{namespace}: {e:#}"));
    lab.wait_ready(READY_TIMEOUT).await.unwrap();
    lab
}

/// A service whose every order takes `latency_ms` of waiting (no CPU: the drill shares two
/// cores with the whole lab) and light IO steps, one order at a time.
fn waiting(latency_ms: u64) -> Value {
    json!({
        "concurrency": 1,
        "workload": {"cpuWeight": 0, "ioWeight": 100, "intensities": ["light"]},
        "faults": {"extraLatencyMs": latency_ms},
    })
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// What the api answered one `POST /order`.
#[derive(Debug)]
enum Answer {
    Accepted(String),
    Refused(u16),
    Unanswered(String),
}

/// Posts an order every `1 / rate` seconds, each in its own task (a slow answer does not hold
/// up the next), until stopped.
struct Poster {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(u64, Answer)>>,
}

impl Poster {
    fn start(lab: &LabRunner, rate: f64) -> Self {
        let url = format!("{}/order", lab.api_url().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut posts = JoinSet::new();
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            while !stopped.load(Ordering::SeqCst) {
                tick.tick().await;
                let (http, url) = (http.clone(), url.clone());
                posts.spawn(async move {
                    let at = unix_ms();
                    let sent = http
                        .post(&url)
                        .json(&json!({"item": "book", "quantity": 1}))
                        .send()
                        .await;
                    let answer = match sent {
                        Ok(r) if r.status().as_u16() == 202 => match r.json::<Value>().await {
                            Ok(body) => Answer::Accepted(body["order_id"].as_str().unwrap().into()),
                            Err(err) => Answer::Unanswered(err.to_string()),
                        },
                        Ok(r) => Answer::Refused(r.status().as_u16()),
                        Err(err) => Answer::Unanswered(err.to_string()),
                    };
                    (at, answer)
                });
            }
            posts.join_all().await
        });
        Self { stop, task }
    }

    async fn stop(self) -> Vec<(u64, Answer)> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

/// How many posts got each answer: `202`, another status, or `no answer`.
fn by_answer<'a>(answers: impl IntoIterator<Item = &'a (u64, Answer)>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (_, answer) in answers {
        let key = match answer {
            Answer::Accepted(_) => "202".to_owned(),
            Answer::Refused(status) => status.to_string(),
            Answer::Unanswered(err) => {
                eprintln!("no answer: {err}");
                "no answer".to_owned()
            }
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

fn accepted(answers: &[(u64, Answer)]) -> Vec<String> {
    answers
        .iter()
        .filter_map(|(_, a)| match a {
            Answer::Accepted(id) => Some(id.clone()),
            _ => None,
        })
        .collect()
}

async fn redis(lab: &LabRunner) -> redis::aio::MultiplexedConnection {
    redis::Client::open(lab.redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Waits until `orders:analyzed` reaches `n`; then checks that each order's hash says analysed.
/// Returns the counter.
async fn analysed_once(lab: &LabRunner, orders: &[String]) -> i64 {
    let n = orders.len() as i64;
    let counted = eventually(
        "every accepted order analysed",
        PIPELINE_TIMEOUT,
        || async {
            let mut redis = redis(lab).await;
            let counted: Option<i64> = redis::cmd("GET")
                .arg("orders:analyzed")
                .query_async(&mut redis)
                .await
                .map_err(|e| e.to_string())?;
            let counted = counted.unwrap_or(0);
            if counted >= n {
                Ok(counted)
            } else {
                Err(format!("orders:analyzed {counted} of {n}"))
            }
        },
    )
    .await;
    let mut redis = redis(lab).await;
    for id in orders {
        let analysed: Option<String> = redis::cmd("HGET")
            .arg(format!("order:{id}"))
            .arg("analyzed")
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(analysed.as_deref(), Some("1"), "order {id}");
    }
    counted
}

/// The spans named `name` of every accepted order, once Jaeger holds one for each.
async fn stage_spans(lab: &LabRunner, name: &str, orders: &[String]) -> Vec<ReceivedSpan> {
    let of_order = |s: &ReceivedSpan| {
        s.attr("order.id")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let spans = lab
        .traces
        .query()
        .wait_for(
            |all| {
                let seen: std::collections::BTreeSet<String> = all
                    .iter()
                    .filter(|s| s.name == name)
                    .filter_map(of_order)
                    .collect();
                orders.iter().all(|id| seen.contains(id))
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    spans.into_iter().filter(|s| s.name == name).collect()
}

/// Spans beyond the first per order id: work done twice.
fn duplicates(spans: &[ReceivedSpan]) -> usize {
    let mut per_order: BTreeMap<&str, usize> = BTreeMap::new();
    for span in spans {
        if let Some(id) = span.attr("order.id").and_then(|v| v.as_str()) {
            *per_order.entry(id).or_default() += 1;
        }
    }
    per_order.values().map(|n| n - 1).sum()
}

/// Waits until each group has committed everything its topic holds; returns (group, committed,
/// end offsets).
async fn committed_to_the_end(lab: &LabRunner) -> Vec<(String, Vec<i64>, Vec<i64>)> {
    let mut out = Vec::new();
    for (group, topic) in GROUPS {
        let offsets = eventually(
            &format!("{group} committed the end of {topic}"),
            Duration::from_secs(60),
            || async {
                let ends = lab
                    .broker
                    .end_offsets(topic)
                    .await
                    .map_err(|e| e.to_string())?;
                let committed: Vec<i64> = lab
                    .broker
                    .committed_offsets(group, topic)
                    .await
                    .map_err(|e| e.to_string())?
                    .iter()
                    .map(|c| c.unwrap_or(0))
                    .collect();
                if committed == ends {
                    Ok((committed, ends))
                } else {
                    Err(format!("committed {committed:?}, end offsets {ends:?}"))
                }
            },
        )
        .await;
        out.push((group.to_owned(), offsets.0, offsets.1));
    }
    out
}

/// One `kubectl scale` of the drill.
struct Scale {
    role: &'static str,
    replicas: usize,
    at_ms: u64,
}

/// After `scale`: the longest the group went without starting a message (from the scale on,
/// over `window`), and for a scale up, when the last new pod started its first message.
fn resumed(scale: &Scale, spans: &[ReceivedSpan], window: Duration) -> (u64, Option<u64>) {
    let end = scale.at_ms + window.as_millis() as u64;
    let mut starts: Vec<(u64, String)> = spans
        .iter()
        .map(|s| {
            let pod = s
                .resource
                .get("k8s.pod.name")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            (s.start_unix_nanos / 1_000_000, pod)
        })
        .filter(|(at, _)| (scale.at_ms..end).contains(at))
        .collect();
    starts.sort();
    let mut longest = 0;
    let mut previous = scale.at_ms;
    for (at, _) in &starts {
        longest = longest.max(at - previous);
        previous = *at;
    }
    let new_pods_working = (scale.replicas > 1).then(|| {
        (1..scale.replicas)
            .map(|i| {
                let pod = format!("lab-{}-{i}", scale.role);
                starts
                    .iter()
                    .find(|(_, p)| *p == pod)
                    .map_or(u64::MAX, |(at, _)| at - scale.at_ms)
            })
            .max()
            .unwrap_or(0)
    });
    (longest, new_pods_working)
}

/// The issue's first drill: processing 1 → 3 → 1 pods, then notification, while orders arrive
/// faster than one pod of either can handle, so that each scale moves partitions with messages
/// waiting on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_consumers_under_load_analyses_every_order_once() {
    // One pod handles 0.6 orders/s in processing and 0.5 in notification: 0.9 orders/s builds lag
    // behind one pod of each, and three pods drain it.
    const RATE: f64 = 0.9;
    const PHASE: Duration = Duration::from_secs(20);
    let file = manifest(
        json!({
            "api": {"replicas": 1, "workload": {"cpuWeight": 0, "ioWeight": 100, "intensities": ["light"]}},
            "processing": waiting(1500),
            "notification": waiting(2000),
            "analytics": {"replicas": 1, "concurrency": 2,
                          "workload": {"cpuWeight": 0, "ioWeight": 100, "intensities": ["light"]}},
        }),
        json!({}),
    );
    let lab = ready_lab("scaling", &file).await;
    let started = Instant::now();
    let poster = Poster::start(&lab, RATE);
    tokio::time::sleep(PHASE).await;
    let mut scales = Vec::new();
    for role in ["processing", "notification"] {
        for replicas in [3, 1] {
            let lag = lab.row().unwrap()["LAG"].clone();
            lab.kubectl(&[
                "scale",
                &format!("deployment/lab-{role}"),
                &format!("--replicas={replicas}"),
            ])
            .unwrap();
            eprintln!(
                "{:>4.0} s  kubectl scale deployment/lab-{role} --replicas={replicas} (LAG {lag})",
                started.elapsed().as_secs_f64()
            );
            scales.push(Scale {
                role,
                replicas,
                at_ms: unix_ms(),
            });
            tokio::time::sleep(PHASE).await;
        }
    }
    let answers = poster.stop().await;
    let orders = accepted(&answers);
    let answered = by_answer(&answers);
    assert_eq!(answered.len(), 1, "the api refused orders: {answered:?}");

    let counted = analysed_once(&lab, &orders).await;
    let drained_in = started.elapsed();
    let committed = committed_to_the_end(&lab).await;
    let process = stage_spans(&lab, "process_order", &orders).await;
    let notify = stage_spans(&lab, "notify_order", &orders).await;

    // A scale can cut short at most the work in flight: one message per pod of the group at its
    // largest (concurrency 1), per scale of that group.
    let in_flight_bound = 2 * 3;
    let (dup_process, dup_notify) = (duplicates(&process), duplicates(&notify));
    println!(
        "scale drill: {} orders posted at {RATE}/s, {} answered 202, orders:analyzed {counted} \
         after {:.0} s; duplicate spans: process_order {dup_process}, notify_order {dup_notify} \
         (bound {in_flight_bound} per group, notification's plus processing's republished)",
        answers.len(),
        orders.len(),
        drained_in.as_secs_f64()
    );
    for scale in &scales {
        let spans = if scale.role == "processing" {
            &process
        } else {
            &notify
        };
        let (longest, new_pods) = resumed(scale, spans, PHASE);
        println!(
            "scale drill: {} → {} pods: longest pause {:.1} s{}",
            scale.role,
            scale.replicas,
            longest as f64 / 1000.0,
            new_pods.map_or(String::new(), |ms| format!(
                ", every new pod working after {:.1} s",
                ms as f64 / 1000.0
            ))
        );
        // A rebalance takes a second or two; partitions handed back to a pod must flow at once,
        // read anew from their own queue.
        assert!(longest < 10_000, "{} stalled {longest} ms", scale.role);
        if let Some(ms) = new_pods {
            // The pod's process starts and joins the group first.
            assert!(ms < 20_000, "{}: new pods idle for {ms} ms", scale.role);
        }
    }
    for (group, offsets, ends) in &committed {
        println!("scale drill: {group} committed {offsets:?} = end offsets {ends:?}");
    }
    assert_eq!(counted, orders.len() as i64, "each order counted once");
    assert!(
        dup_process <= in_flight_bound,
        "{dup_process} process_order spans repeated"
    );
    assert!(
        dup_notify <= in_flight_bound + dup_process,
        "{dup_notify} notify_order spans repeated"
    );
}

/// The drills' posting rate: every stage keeps up with it.
const OUTAGE_RATE: f64 = 2.0;
/// How long a drill posts before and after the outage.
const STEADY: Duration = Duration::from_secs(15);
/// How long Kafka or Redis stays away: longer than the api's 15 s delivery timeout, so that
/// orders posted early in the outage get their final answer while it lasts.
const OUTAGE: Duration = Duration::from_secs(25);
/// How long before an outage a post counts as part of it: it may be in flight when it begins.
const IN_FLIGHT: Duration = Duration::from_secs(2);
/// How soon after the restart every post must be accepted again.
const RECOVERY: Duration = Duration::from_secs(15);

/// One pod of light IO work, keeping up with [`OUTAGE_RATE`].
fn light() -> Value {
    json!({"replicas": 1, "workload": {"cpuWeight": 0, "ioWeight": 100, "intensities": ["light"]}})
}

/// The api, notification and analytics [`light`], processing as given.
fn quick_lab(processing: Value, kafka: Value) -> NamedTempFile {
    manifest(
        json!({"api": light(), "processing": processing, "notification": light(), "analytics": light()}),
        kafka,
    )
}

/// Checks the api's answers around an outage from `down_ms` to `up_ms` and that every accepted
/// order was analysed once; prints the counts.
async fn survived_outage(
    drill: &str,
    lab: &LabRunner,
    answers: &[(u64, Answer)],
    down_ms: u64,
    up_ms: u64,
) {
    // A post sent shortly before the outage may still wait for its answer when it begins.
    let begun_ms = down_ms - IN_FLIGHT.as_millis() as u64;
    let before = by_answer(answers.iter().filter(|(at, _)| *at < begun_ms));
    let during = by_answer(
        answers
            .iter()
            .filter(|(at, _)| (begun_ms..up_ms).contains(at)),
    );
    let after = by_answer(answers.iter().filter(|(at, _)| *at >= up_ms));
    // When the api took orders again: the first post after which every post was accepted.
    let recovered_ms = answers
        .iter()
        .rev()
        .take_while(|(_, a)| matches!(a, Answer::Accepted(_)))
        .map(|(at, _)| *at)
        .min()
        .unwrap_or(u64::MAX);
    let orders = accepted(answers);
    let unconfirmed =
        during.get("504").copied().unwrap_or(0) + after.get("504").copied().unwrap_or(0);
    let counted = analysed_once(lab, &orders).await;
    println!(
        "{drill}: {} orders posted at {OUTAGE_RATE}/s; before the outage {before:?}, during \
         ({:.0} s, and {IN_FLIGHT:?} before) {during:?}, after {after:?}; every post accepted \
         again {:.1} s after the restart; {} answered 202, orders:analyzed {counted}",
        answers.len(),
        (up_ms - down_ms) as f64 / 1000.0,
        recovered_ms.saturating_sub(up_ms) as f64 / 1000.0,
        orders.len(),
    );
    let refused = |counts: &BTreeMap<String, usize>| {
        counts
            .iter()
            .filter(|(k, _)| *k != "202")
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    assert_eq!(refused(&before), 0, "refused before the outage: {before:?}");
    for answer in before.keys().chain(during.keys()).chain(after.keys()) {
        assert!(
            ["202", "503", "504"].contains(&answer.as_str()),
            "answer {answer}"
        );
    }
    assert!(
        refused(&during) > 0,
        "every post accepted while away: {during:?}"
    );
    assert!(
        recovered_ms < up_ms + RECOVERY.as_millis() as u64,
        "not recovered {RECOVERY:?} after the restart: {after:?}"
    );
    // Each accepted order counted once; an unconfirmed one (504) may have been written too.
    assert!(
        counted <= (orders.len() + unconfirmed) as i64,
        "orders:analyzed {counted} for {} accepted and {unconfirmed} unconfirmed",
        orders.len()
    );
}

/// Kafka, on a persistent volume, is killed mid-stream and started again on its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_no_accepted_order() {
    let file = quick_lab(
        light(),
        json!({"storage": {"type": "persistentVolumeClaim"}}),
    );
    let mut lab = ready_lab("broker-restart", &file).await;
    let poster = Poster::start(&lab, OUTAGE_RATE);
    tokio::time::sleep(STEADY).await;
    let down_ms = unix_ms();
    lab.broker.stop().unwrap();
    tokio::time::sleep(OUTAGE).await;
    lab.broker.restart().await.unwrap();
    let up_ms = unix_ms();
    tokio::time::sleep(STEADY).await;
    let answers = poster.stop().await;
    survived_outage("broker restart", &lab, &answers, down_ms, up_ms).await;
    for (group, offsets, ends) in committed_to_the_end(&lab).await {
        println!("broker restart: {group} committed {offsets:?} = end offsets {ends:?}");
    }
}

/// Redis restarts mid-stream. The lab renders it without persistence, where a restart empties
/// it and takes the orders' hashes with it; this drill gives it the persistence a production
/// Redis has: it saves at shutdown into its /data and loads that at start. The api refuses
/// orders while Redis is away and the stages retry theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_stream_loses_no_accepted_order() {
    // Orders wait 2 s in processing, so that some are in flight when Redis goes.
    let processing = json!({"replicas": 1, "concurrency": 8, "faults": {"extraLatencyMs": 2000},
                            "workload": {"cpuWeight": 0, "ioWeight": 100, "intensities": ["light"]}});
    let file = quick_lab(processing, json!({}));
    let mut lab = ready_lab("redis-restart", &file).await;
    let url = lab.redis.url();
    let poster = Poster::start(&lab, OUTAGE_RATE);
    tokio::time::sleep(STEADY).await;
    let down_ms = unix_ms();
    // The server closes the connection as it exits, so the command gets no answer.
    let _ = redis::cmd("SHUTDOWN")
        .arg("SAVE")
        .query_async::<()>(&mut redis(&lab).await)
        .await;
    let ping = || async {
        let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .map_err(|e| e.to_string())
    };
    eventually("Redis gone", Duration::from_secs(10), || async {
        match ping().await {
            Ok(_) => Err("still answering".to_owned()),
            Err(_) => Ok(()),
        }
    })
    .await;
    tokio::time::sleep(OUTAGE).await;
    lab.redis.process().respawn().unwrap();
    eventually("Redis answering again", Duration::from_secs(20), ping).await;
    let up_ms = unix_ms();
    tokio::time::sleep(STEADY).await;
    let answers = poster.stop().await;
    survived_outage("redis restart", &lab, &answers, down_ms, up_ms).await;
    let mut retried = BTreeMap::new();
    for role in Role::CONSUMERS {
        let n = lab
            .metric(role, "messages_handled", r#"outcome="retried""#)
            .await
            .unwrap();
        retried.insert(role.name(), n);
    }
    println!("redis restart: messages retried {retried:?}");
    assert!(
        retried.values().sum::<f64>() > 0.0,
        "no stage retried while Redis was away"
    );
    // In Jaeger the outage is the Redis client spans it cut short (the stages' retried calls; the
    // api refuses in its workload step, before it stores), each failed with the error's kind as
    // `error.type` and an exception event saying the same.
    let spans = lab
        .traces
        .query()
        .spans(Duration::from_secs(600))
        .await
        .unwrap();
    let failed: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.attr("db.system.name").and_then(|v| v.as_str()) == Some("redis"))
        .filter(|s| (down_ms..up_ms).contains(&(s.start_unix_nanos / 1_000_000)))
        .filter(|s| s.is_error())
        .collect();
    let mut by_call: BTreeMap<String, usize> = BTreeMap::new();
    for span in &failed {
        let kind = span.attr("error.type").and_then(|v| v.as_str());
        let exception = span
            .events
            .iter()
            .find(|e| e.name == "exception")
            .and_then(|e| e.attributes.get("exception.type"))
            .and_then(|v| v.as_str());
        assert!(
            kind.is_some_and(|k| !k.is_empty()),
            "no error.type: {span:?}"
        );
        assert_eq!(exception, kind, "{span:?}");
        *by_call
            .entry(format!(
                "{} {} {}",
                span.service_name,
                span.name,
                kind.unwrap()
            ))
            .or_default() += 1;
    }
    println!("redis restart: failed Redis spans during the outage {by_call:?}");
    assert!(
        !failed.is_empty(),
        "no failed Redis span while Redis was away"
    );
}

/// What one phase of the trace backend drill saw.
struct Phase {
    name: &'static str,
    from_ms: u64,
    to_ms: u64,
    analysed: i64,
    dropped: f64,
    rss_mib: Vec<f64>,
}

/// The Collector is killed, then started again; then Jaeger. Spans have nowhere to go while the
/// Collector is down, so the services drop them and count it; while Jaeger is down the Collector
/// holds them in its retry queue. Either way orders flow as before and the services' memory stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_backend_down_costs_spans_not_orders() {
    const PHASE: Duration = Duration::from_secs(15);
    let file = quick_lab(light(), json!({}));
    let mut lab = ready_lab("traces-down", &file).await;
    // Orders analysed and spans dropped so far, and every service's resident memory.
    let measure = async |lab: &LabRunner| {
        let mut redis = redis(lab).await;
        let analysed: Option<i64> = redis::cmd("GET")
            .arg("orders:analyzed")
            .query_async(&mut redis)
            .await
            .unwrap();
        let (mut dropped, mut rss) = (0.0, Vec::new());
        for role in Role::ALL {
            dropped += lab.metric(role, "spans_dropped", "").await.unwrap();
            rss.push(
                lab.metric(role, "process_resident_memory_bytes", "")
                    .await
                    .unwrap()
                    / 1048576.0,
            );
        }
        (analysed.unwrap_or(0), dropped, rss)
    };
    let poster = Poster::start(&lab, OUTAGE_RATE);
    let mut phases = Vec::new();
    let mut last = measure(&lab).await;
    let mut from_ms = unix_ms();
    for name in [
        "baseline",
        "Collector down",
        "Collector back",
        "Jaeger down",
        "Jaeger back",
    ] {
        match name {
            "Collector down" => drop(lab.traces.collector_process().kill().unwrap()),
            "Collector back" => lab.traces.collector_process().respawn().unwrap(),
            "Jaeger down" => drop(lab.traces.jaeger_process().kill().unwrap()),
            "Jaeger back" => lab.traces.jaeger_process().respawn().unwrap(),
            _ => {}
        }
        tokio::time::sleep(PHASE).await;
        let now = measure(&lab).await;
        let to_ms = unix_ms();
        phases.push(Phase {
            name,
            from_ms,
            to_ms,
            analysed: now.0 - last.0,
            dropped: now.1 - last.1,
            rss_mib: now.2.clone(),
        });
        (last, from_ms) = (now, to_ms);
    }
    let answers = poster.stop().await;
    let baseline = &phases[0];
    for phase in &phases {
        let answered = by_answer(
            answers
                .iter()
                .filter(|(at, _)| (phase.from_ms..phase.to_ms).contains(at)),
        );
        println!(
            "trace backend drill: {:<14} answers {answered:?}, analysed {:>3}, spans dropped \
             {:>4}, RSS MiB (api, processing, notification, analytics) {:.1?}",
            phase.name, phase.analysed, phase.dropped, phase.rss_mib
        );
        assert_eq!(answered.len(), 1, "{}: orders refused", phase.name);
        // Orders flow as before: the pipeline lags the posts by a second or so at each edge.
        assert!(
            phase.analysed as f64 >= 0.8 * baseline.analysed as f64,
            "{}: analysed {} against {} in the baseline",
            phase.name,
            phase.analysed,
            baseline.analysed
        );
        for (rss, base) in phase.rss_mib.iter().zip(&baseline.rss_mib) {
            assert!(
                rss - base < 32.0,
                "{}: RSS {rss:.0} MiB from {base:.0} MiB",
                phase.name
            );
        }
    }
    assert_eq!(baseline.dropped, 0.0, "spans dropped with the Collector up");
    assert!(
        phases[1].dropped > 0.0,
        "no span counted as dropped without a Collector"
    );
    assert_eq!(
        phases[3].dropped, 0.0,
        "the services dropped spans the Collector should hold"
    );
}
