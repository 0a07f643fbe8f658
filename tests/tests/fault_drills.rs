//! Fault drills on the real programs: Apache Kafka, Redis, the Collector and Jaeger, and the four
//! services as processes. Each drill prints its counts. Needs `cargo build -p tracing-lab-service`
//! and `tests/env/setup.sh`.

use tracing_lab_tests::services_lab as lab;

use lab::{Lab, light_config, log_lines, position, post_order};
use rdkafka::bindings::{rd_kafka_header_add, rd_kafka_headers_t};
use rdkafka::message::{BorrowedHeaders, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
use tracing_lab_config::{Intensity, LabConfig, Role, WorkloadMix};
use tracing_lab_tests::poll::{eventually, settled};
use tracing_lab_tests::{ChildProcess, ports};

const PIPELINE_TIMEOUT: Duration = Duration::from_secs(120);

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// Processing with eight slots and two IO steps per message, each light or `slow` at random:
/// messages of one partition finish out of order.
fn jittery_processing(slow: Intensity) -> LabConfig {
    let mut config = light_config();
    config.processing.concurrency = 8;
    config.processing.workload = WorkloadMix::new(0, 100, &[Intensity::Light, slow]);
    config
}

async fn post_orders(lab: &Lab, n: usize) {
    let http = http();
    for i in 0..n {
        let (status, body) = post_order(&http, &lab.api_url, "book", i as i64 % 7 + 1)
            .await
            .expect("post");
        assert_eq!(status, 202, "{body}");
    }
}

/// Per partition, the offset below which processing handled every message (its log says which).
fn contiguous(handled: &BTreeSet<(i32, i64)>, partitions: usize) -> Vec<i64> {
    (0..partitions as i32)
        .map(|p| {
            let mut next = 0;
            while handled.contains(&(p, next)) {
                next += 1;
            }
            next
        })
        .collect()
}

fn handled(lab: &Lab, role: Role) -> BTreeSet<(i32, i64)> {
    handled_in_order(lab, role).into_iter().collect()
}

/// Partition and offset of each message `role` handled, in the order it finished them.
fn handled_in_order(lab: &Lab, role: Role) -> Vec<(i32, i64)> {
    log_lines(&lab.services[&role], "order handled")
        .iter()
        .filter_map(position)
        .collect()
}

/// Waits until `role` has handled nothing new for 3 s; returns how many it handled.
async fn wait_idle(lab: &Lab, role: Role) -> usize {
    settled(
        &format!("{role}'s handled messages"),
        Duration::from_secs(3),
        PIPELINE_TIMEOUT,
        async || handled(lab, role).len(),
    )
    .await
}

async fn wait_handled(lab: &Lab, role: Role, n: usize) {
    eventually(
        &format!("{role} to handle {n} messages"),
        PIPELINE_TIMEOUT,
        async || match handled(lab, role).len() {
            seen if seen >= n => Ok(()),
            seen => Err(format!("{seen} handled")),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_messages_in_flight_commits_the_last_contiguous_offset() {
    // A drain shorter than the slowest messages: some finish after SIGTERM, others are cancelled.
    // Messages take 0, 1 or 2 s (heavy IO is 1 s).
    let mut lab = Lab::start(
        &jittery_processing(Intensity::Heavy),
        &[("SHUTDOWN_DRAIN_MS", "800")],
    )
    .await
    .expect("lab starts");
    const N: usize = 60;
    post_orders(&lab, N).await;
    wait_handled(&lab, Role::Processing, 12).await;

    let status = lab
        .service(Role::Processing)
        .terminate(Duration::from_secs(20))
        .await
        .unwrap();
    assert!(status.success(), "processing exit: {status}");

    let log = std::fs::read_to_string(lab.services[&Role::Processing].log_path()).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let sigterm = lines
        .iter()
        .position(|l| l["message"] == "SIGTERM: shutting down")
        .expect("SIGTERM logged");
    let drained = lines[sigterm..]
        .iter()
        .filter(|l| l["message"] == "order handled")
        .count();
    let cancelled = lines[sigterm..]
        .iter()
        .find(|l| l["message"] == "drain deadline passed; cancelling the messages still in flight")
        .and_then(|l| l["cancelled"].as_i64())
        .unwrap_or(0);
    let handled = handled(&lab, Role::Processing);
    let ends = lab.broker.end_offsets("orders").await.unwrap();
    let expected = contiguous(&handled, ends.len());
    let committed: Vec<i64> = lab
        .broker
        .committed_offsets("processing", "orders")
        .await
        .unwrap()
        .iter()
        .map(|c| c.unwrap_or(0))
        .collect();
    let gaps = handled
        .iter()
        .filter(|&&(p, o)| o >= expected[p as usize])
        .count();
    println!(
        "SIGTERM drill: {N} orders, {} handled, {drained} finished during the drain, {cancelled} \
         cancelled at the deadline, {gaps} handled beyond a gap; committed {committed:?}, last \
         contiguous + 1 {expected:?}, end offsets {ends:?}",
        handled.len()
    );
    assert!(drained > 0, "the drain let no message in flight finish");
    assert_eq!(
        committed, expected,
        "the final commit is the last contiguous handled offset of each partition"
    );
}

/// Waits for a moment when, in some partition, processing finished a message above one it has not
/// finished, and finished nothing below that one since for longer than its commit interval (0.5 s):
/// a commit made meanwhile that named the last finished message would skip unfinished work.
/// Returns the partition and the offset of the first message there it has not finished.
async fn wait_finished_above_unfinished(lab: &Lab, partitions: usize) -> (i32, i64) {
    const WINDOW: Duration = Duration::from_millis(700);
    // What had finished at each poll, oldest first; the first is the newest at least WINDOW old.
    let mut earlier: VecDeque<(tokio::time::Instant, Vec<(i32, i64)>)> = VecDeque::new();
    let found = async || {
        let now = handled_in_order(lab, Role::Processing);
        while earlier.get(1).is_some_and(|(at, _)| at.elapsed() >= WINDOW) {
            earlier.pop_front();
        }
        if let Some((_, before)) = earlier.front().filter(|(at, _)| at.elapsed() >= WINDOW) {
            let first_unfinished = contiguous(&now.iter().copied().collect(), partitions);
            let since = &now[before.len()..];
            for (p, &first) in (0..).zip(&first_unfinished) {
                let last_before = before.iter().rev().find(|&&(q, _)| q == p);
                if last_before.is_some_and(|&(_, o)| o > first)
                    && since.iter().all(|&(q, o)| q != p || o > first)
                {
                    return Ok((p, first));
                }
            }
        }
        let seen = format!("finished {now:?}");
        earlier.push_back((tokio::time::Instant::now(), now));
        Err(seen)
    };
    eventually(
        "processing to leave a message unfinished below finished ones",
        PIPELINE_TIMEOUT,
        found,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_processing_with_uncommitted_work_loses_no_order() {
    // Messages take 0, 3 or 6 s (severe IO is 3 s): a light one overtakes a slow one in its
    // partition by far more than the window `wait_finished_above_unfinished` needs, even when the
    // machine is loaded and slots free late.
    let mut lab = Lab::start(&jittery_processing(Intensity::Severe), &[])
        .await
        .expect("lab starts");
    const N: usize = 60;
    post_orders(&lab, N).await;
    let partitions = lab.broker.end_offsets("orders").await.unwrap().len();
    let (partition, unfinished) = wait_finished_above_unfinished(&lab, partitions).await;
    lab.service(Role::Processing).kill().unwrap();
    let handled_before = handled(&lab, Role::Processing);
    let first_unhandled = contiguous(&handled_before, partitions);
    let committed: Vec<i64> = lab
        .broker
        .committed_offsets("processing", "orders")
        .await
        .unwrap()
        .iter()
        .map(|c| c.unwrap_or(0))
        .collect();
    println!(
        "kill drill: killed with offset {unfinished} of partition {partition} unfinished below \
         finished ones; {} handled before the crash; committed {committed:?}, first unhandled \
         {first_unhandled:?}",
        handled_before.len()
    );
    assert!(
        committed.iter().zip(&first_unhandled).all(|(c, u)| c <= u),
        "the commit skips unhandled orders: committed {committed:?}, first unhandled {first_unhandled:?}"
    );
    // Mid-stream for processing itself: orders left to read, and handled work above the commit.
    assert!(
        committed.iter().sum::<i64>() < N as i64,
        "the crash must leave orders unread ({committed:?} committed)"
    );
    lab.service(Role::Processing).respawn().unwrap();
    lab.wait_ready(Role::Processing).await.unwrap();
    lab.wait_analyzed(N as i64, PIPELINE_TIMEOUT)
        .await
        .expect("no order lost");
    let redone = log_lines(&lab.services[&Role::Processing], "order handled").len() - N;
    println!("kill drill: every order analysed once; {redone} messages handled twice");
    assert_eq!(lab.analyzed().await.unwrap(), N as i64);
}

/// Produces `payload` to `topic` with a header whose name is not UTF-8 (a non-Java client can).
async fn produce_with_raw_header(lab: &Lab, topic: &str, payload: &[u8]) {
    let headers = OwnedHeaders::new().insert(Header {
        key: "traceparent",
        value: Some(&b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..]),
    });
    let name = b"bad\xff\xfe";
    let native = std::ptr::from_ref::<BorrowedHeaders>(headers.as_borrowed())
        .cast::<rd_kafka_headers_t>()
        .cast_mut();
    // SAFETY: the list is owned by `headers`; librdkafka copies name and value.
    unsafe {
        rd_kafka_header_add(
            native,
            name.as_ptr().cast(),
            name.len() as isize,
            b"x".as_ptr().cast(),
            1,
        );
    }
    let producer: FutureProducer = lab.broker.client_config().create().unwrap();
    producer
        .send(
            FutureRecord::to(topic)
                .key("poison")
                .payload(payload)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(err, _)| err)
        .unwrap();
}

async fn produce(lab: &Lab, topic: &str, payload: &[u8]) {
    let producer: FutureProducer = lab.broker.client_config().create().unwrap();
    producer
        .send(
            FutureRecord::to(topic).key("poison").payload(payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(err, _)| err)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_skipped_and_logged_and_the_next_order_is_analysed() {
    let mut lab = Lab::start(&light_config(), &[]).await.expect("lab starts");
    let valid = serde_json::json!({
        "order_id": "poison-header", "item": "x", "quantity": 1, "created_at_ms": 0
    })
    .to_string();
    let consumers = [
        (Role::Processing, "orders"),
        (Role::Notification, "processed-orders"),
        (Role::Analytics, "notified-orders"),
    ];
    for (_, topic) in consumers {
        produce_with_raw_header(&lab, topic, valid.as_bytes()).await;
        produce(&lab, topic, b"{not json").await;
        produce(&lab, topic, b"").await;
    }
    post_orders(&lab, 1).await;
    lab.wait_analyzed(1, PIPELINE_TIMEOUT)
        .await
        .expect("the next valid order is analysed");
    for (role, topic) in consumers {
        let skipped = log_lines(&lab.services[&role], "skipping a malformed message");
        let reasons: BTreeMap<String, (i32, i64)> = skipped
            .iter()
            .map(|l| {
                assert_eq!(l["topic"], topic, "{l}");
                let reason = l["reason"].as_str().unwrap_or_default();
                let kind = if reason.contains("not UTF-8") {
                    "header"
                } else if reason.contains("empty") {
                    "empty"
                } else {
                    "json"
                };
                (
                    kind.to_owned(),
                    position(l).unwrap_or_else(|| panic!("{l}")),
                )
            })
            .collect();
        println!(
            "poison drill: {role} skipped {} on {topic}: {reasons:?}",
            skipped.len()
        );
        assert_eq!(skipped.len(), 3, "{role}: {skipped:?}");
        assert_eq!(reasons.len(), 3, "{role}: {reasons:?}");
        assert!(
            lab.service(role).exit_status().unwrap().is_none(),
            "{role} died"
        );
    }
    // Every poison message is behind the committed offsets: none will come back.
    lab.wait_analyzed(1, PIPELINE_TIMEOUT).await.unwrap();
    for (role, topic) in consumers {
        let status = lab
            .service(role)
            .terminate(Duration::from_secs(20))
            .await
            .unwrap();
        assert!(status.success(), "{role} exit: {status}");
        let ends = lab.broker.end_offsets(topic).await.unwrap();
        let committed: Vec<i64> = lab
            .broker
            .committed_offsets(role.name(), topic)
            .await
            .unwrap()
            .iter()
            .map(|c| c.unwrap_or(0))
            .collect();
        assert_eq!(committed, ends, "{role} committed past its poison");
    }
}

/// A member with a backlog and its one slot busy reads each partition only as a slot frees.
/// Partitions taken from it meanwhile (a second pod joins) and handed back later (that pod is
/// scaled away) must flow again at once, even when the member has nothing else to do: each
/// assignment gives the partition its own queue and reader anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_handed_back_to_a_busy_member_are_consumed_at_once() {
    let mut config = light_config();
    config.processing.concurrency = 1;
    config.processing.workload = WorkloadMix::new(0, 100, &[Intensity::Light]);
    config.processing.faults.extra_latency_ms = 100;
    let mut lab = Lab::start(&config, &[]).await.expect("lab starts");
    // A backlog well above what the member takes from librdkafka at once.
    const N: usize = 200;
    lab.service(Role::Processing).kill().unwrap();
    post_orders(&lab, N).await;
    lab.service(Role::Processing).respawn().unwrap();
    wait_handled(&lab, Role::Processing, 1).await;

    // The second pod sits on its first order, holding its partitions while the first pod
    // finishes its own and falls idle.
    config.processing.faults.extra_latency_ms = 60_000;
    let second_config = tempfile::tempdir().unwrap();
    let config_path = second_config.path().join(tracing_lab_config::FILE_NAME);
    std::fs::write(&config_path, config.to_json()).unwrap();
    let mut command = lab.command(Role::Processing).unwrap();
    command
        .env("LISTEN_ADDR", format!("127.0.0.1:{}", ports::free_port()))
        .env("LAB_CONFIG", &config_path)
        .env("SHUTDOWN_DRAIN_MS", "500");
    let mut second = ChildProcess::spawn("processing-1", command).unwrap();
    let taken = eventually("the second pod's assignment", PIPELINE_TIMEOUT, || {
        let assigned = log_lines(&second, "partitions assigned")
            .iter()
            .filter_map(|line| line["partitions"].as_str().map(str::to_owned))
            .find(|partitions| partitions != "[]");
        async move { assigned.ok_or_else(|| "no partition yet".to_owned()) }
    })
    .await;
    let idle = wait_idle(&lab, Role::Processing).await;
    assert!(
        idle < N,
        "the second pod's partitions must hold orders ({idle} of {N} handled)"
    );
    // Scaled away: its order in hand is cancelled and its partitions go back to the first pod.
    second.terminate(Duration::from_secs(10)).await.unwrap();
    let left = tokio::time::Instant::now();
    lab.wait_analyzed(N as i64, PIPELINE_TIMEOUT)
        .await
        .expect("the handed-back partitions are consumed");
    let drained_in = left.elapsed();
    let first = handled(&lab, Role::Processing).len();
    println!(
        "hand-back drill: the second pod took partitions {taken}; the first fell idle after \
         {idle} of {N} orders; all {N} analysed {:.1} s after the second pod left, {first} \
         handled by the first pod",
        drained_in.as_secs_f64()
    );
    assert_eq!(first, N, "the first pod handled every order");
    // A rebalance (about 2 s) and the remaining orders at about 0.15 s each.
    let bound = Duration::from_secs(5) + Duration::from_millis(300) * (N - idle) as u32;
    assert!(drained_in < bound, "took {drained_in:?}, bound {bound:?}");
}
