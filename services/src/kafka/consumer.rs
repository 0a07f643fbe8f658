//! A member of a consumer group. Offsets are stored only when a message's handling returned `Ok`
//! and every earlier message of its partition is done too, and committed every
//! [`COMMIT_INTERVAL`], before partitions are handed over, and once more at the end.
//!
//! The receive loop never waits for a free slot: librdkafka serves rebalances only while it is
//! polled, so a member whose slots are all busy holds what it receives, up to [`QUEUED_MAX`]
//! messages, then pauses its partitions and keeps polling. It uses
//! the cooperative-sticky assignor, so a rebalance moves only the partitions that change owner
//! and the others keep flowing.

use super::{METADATA_TIMEOUT, OffsetTracker, client_config};
use anyhow::{Context as _, anyhow};
use rdkafka::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message as _, OwnedMessage};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often stored offsets are committed while consuming.
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// Received messages held for a free slot before fetching pauses; it resumes at half. Pausing
/// drops librdkafka's prefetch and a resumed partition is fetched again only after a round trip,
/// so the messages held keep the slots busy meanwhile (pausing at the first message waiting
/// drained a backlog of quick messages at 2 orders/s instead of 75).
const QUEUED_MAX: usize = 64;
/// Longest pause between retries of a message whose handling failed (broker or Redis away).
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// What the receive loop and the rebalance callbacks share.
#[derive(Default)]
struct Shared {
    tracker: Mutex<OffsetTracker>,
    /// The loop paused fetching: partitions assigned meanwhile are paused too, others resumed.
    paused: AtomicBool,
    /// The loop has drained and makes the last commit itself.
    closing: AtomicBool,
}

impl Shared {
    fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        self.tracker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Rebalance callbacks; they run inside `recv()`, on the receive loop's task.
struct Rebalancing {
    shared: Arc<Shared>,
}

impl ClientContext for Rebalancing {}

impl ConsumerContext for Rebalancing {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let partitions = partitions(list);
        let cancelled: usize = {
            let mut tracker = self.shared.tracker();
            partitions.iter().map(|&p| tracker.revoke(p)).sum()
        };
        // What finished is stored: commit it before the partitions move, so their new owner
        // starts right after it. Work cancelled here is redone there (at most the slots' worth).
        // Closing revokes everything once more, after the loop's final commit: nothing is left
        // to commit then, and that synchronous commit is the one whose failure is reported.
        if !self.shared.closing.load(Ordering::SeqCst) {
            commit(consumer, CommitMode::Async);
        }
        tracing::info!(?partitions, cancelled, "partitions revoked");
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let partitions = partitions(list);
                {
                    let mut tracker = self.shared.tracker();
                    for &p in &partitions {
                        tracker.assign(p);
                    }
                }
                // librdkafka keeps a partition's pause across assignments: one revoked while
                // paused here would come back paused, and stay so while this member is idle.
                let set = if self.shared.paused.load(Ordering::SeqCst) {
                    consumer.pause(list)
                } else {
                    consumer.resume(list)
                };
                if let Err(err) = set {
                    tracing::warn!(error = %err, "pausing or resuming newly assigned partitions failed");
                }
                tracing::info!(?partitions, "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(err) => tracing::warn!(error = %err, "rebalance failed"),
        }
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<i32> {
    list.elements().iter().map(|e| e.partition()).collect()
}

/// Commits the stored offsets; nothing stored since the last commit is no error.
fn commit(consumer: &impl rdkafka::consumer::Consumer<Rebalancing>, mode: CommitMode) {
    match consumer.commit_consumer_state(mode) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(err) => tracing::warn!(error = %err, "committing offsets failed"),
    }
}

/// A received message waiting for a slot, with the token its partition's revocation cancels.
struct Received {
    message: OwnedMessage,
    revoked: CancellationToken,
}

pub struct Consumer {
    inner: Arc<StreamConsumer<Rebalancing>>,
    shared: Arc<Shared>,
    topic: String,
}

impl Consumer {
    /// Needs a Tokio runtime.
    pub fn new(bootstrap: &str, group: &str, topic: &str) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared::default());
        let inner: StreamConsumer<Rebalancing> = client_config(bootstrap)
            .set("group.id", group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            // Commits are the loop's: periodic, before a handover and final (see the module).
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A new group starts at the oldest message: orders sent before it joined are not lost.
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1500")
            .set("fetch.wait.max.ms", "100")
            // Prefetch sized for a pod of 128 MiB rather than a server: at most 2 MiB queued
            // locally (librdkafka's default is 64 MiB) and 1 MiB per fetch.
            .set("queued.max.messages.kbytes", "2048")
            .set("queued.min.messages", "1000")
            .set("fetch.max.bytes", "1048576")
            .set("max.partition.fetch.bytes", "262144")
            .create_with_context(Rebalancing {
                shared: shared.clone(),
            })
            .context("creating the Kafka consumer")?;
        inner
            .subscribe(&[topic])
            .with_context(|| format!("subscribing to {topic}"))?;
        let inner = Arc::new(inner);
        super::rebootstrap::watch(Arc::downgrade(&inner), |c| c.client(), bootstrap)?;
        Ok(Self {
            inner,
            shared,
            topic: topic.to_owned(),
        })
    }

    /// Readiness: the broker answers a metadata request.
    pub async fn check(&self) -> anyhow::Result<()> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner.fetch_metadata(None, METADATA_TIMEOUT).map(|_| ())
        })
        .await?
        .context("Kafka unreachable")
    }

    /// Receives and handles messages, at most `concurrency` at once (1: strictly one after the
    /// other), until `stop` is cancelled; then lets the messages in flight finish for at most
    /// `drain`, cancels the rest (their offsets stay uncommitted) and commits.
    /// A failing `handle` is retried with growing pauses: its offset is never committed unhandled.
    pub async fn run<F, Fut>(
        &self,
        concurrency: usize,
        stop: CancellationToken,
        drain: Duration,
        handle: F,
    ) -> anyhow::Result<()>
    where
        F: Fn(Arc<OwnedMessage>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let handle = Arc::new(handle);
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut waiting: VecDeque<Received> = VecDeque::new();
        let mut tasks = JoinSet::new();
        let mut commits = tokio::time::interval(COMMIT_INTERVAL);
        commits.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            waiting.retain(|received| !received.revoked.is_cancelled());
            while !waiting.is_empty() {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    break;
                };
                if let Some(received) = waiting.pop_front() {
                    tasks.spawn(self.work(received, slot, handle.clone(), stop.clone()));
                }
            }
            if waiting.len() >= QUEUED_MAX {
                self.set_paused(true);
            } else if waiting.len() <= QUEUED_MAX / 2 {
                self.set_paused(false);
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                // A finished task frees a slot for what waits.
                Some(finished) = tasks.join_next(), if !tasks.is_empty() => {
                    finished.context("a message handler panicked")?;
                }
                _ = commits.tick() => commit(&*self.inner, CommitMode::Async),
                received = self.inner.recv() => match received {
                    Ok(message) => {
                        let message = message.detach();
                        match self.shared.tracker().begin(message.partition(), message.offset()) {
                            Some(revoked) => waiting.push_back(Received { message, revoked }),
                            None => tracing::warn!(
                                topic = %self.topic,
                                partition = message.partition(),
                                offset = message.offset(),
                                "message of a partition not assigned here; left to its owner"
                            ),
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, topic = %self.topic, "receiving from Kafka failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
            }
        }
        // Messages without a slot are not started: the next owner of their partitions reads them.
        waiting.clear();
        let drained = tokio::time::timeout(drain, async {
            while let Some(finished) = tasks.join_next().await {
                finished.context("a message handler panicked")?;
            }
            anyhow::Ok(())
        })
        .await;
        match drained {
            Ok(result) => result?,
            Err(_) => {
                tracing::warn!(
                    cancelled = tasks.len(),
                    drain_ms = drain.as_millis() as u64,
                    "drain deadline passed; cancelling the messages still in flight"
                );
                tasks.shutdown().await;
            }
        }
        self.shared.closing.store(true, Ordering::SeqCst);
        let consumer = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
                Err(err) => Err(anyhow!("final offset commit failed: {err}")),
            }
        })
        .await?
    }

    /// Pauses or resumes fetching of every assigned partition. A pause drops what librdkafka
    /// prefetched; on resume it fetches again from the last message received.
    fn set_paused(&self, paused: bool) {
        if self.shared.paused.swap(paused, Ordering::SeqCst) == paused {
            return;
        }
        let changed = self.inner.assignment().and_then(|assigned| {
            if paused {
                self.inner.pause(&assigned)
            } else {
                self.inner.resume(&assigned)
            }
        });
        if let Err(err) = changed {
            tracing::warn!(error = %err, paused, "pausing or resuming the partitions failed");
        }
    }

    /// One message's handling: stopped when its partition is revoked; on success its offset is
    /// stored under the tracker's lock, so offsets of a partition are stored in increasing order.
    fn work<F, Fut>(
        &self,
        received: Received,
        slot: OwnedSemaphorePermit,
        handle: Arc<F>,
        stop: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        F: Fn(Arc<OwnedMessage>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (shared, consumer, topic) =
            (self.shared.clone(), self.inner.clone(), self.topic.clone());
        async move {
            let _slot = slot;
            let Received { message, revoked } = received;
            let (partition, offset) = (message.partition(), message.offset());
            let message = Arc::new(message);
            tokio::select! {
                biased;
                _ = revoked.cancelled() => {
                    tracing::info!(%topic, partition, offset, "partition revoked; message left to its new owner");
                }
                handled = handle_with_retries(&*handle, message, &stop) => {
                    if !handled {
                        return;
                    }
                    let mut tracker = shared.tracker();
                    if let Some(last_done) = tracker.complete(partition, offset)
                        && let Err(err) = consumer.store_offset(&topic, partition, last_done)
                    {
                        tracing::warn!(error = %err, %topic, partition, offset = last_done, "offset not stored");
                    }
                }
            }
        }
    }
}

/// `true` once handled; `false` when `stop` came first (the message will be redelivered).
async fn handle_with_retries<F, Fut>(
    handle: &F,
    message: Arc<OwnedMessage>,
    stop: &CancellationToken,
) -> bool
where
    F: Fn(Arc<OwnedMessage>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut pause = Duration::from_millis(100);
    loop {
        match handle(message.clone()).await {
            Ok(()) => return true,
            Err(err) => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    retry_in_ms = pause.as_millis() as u64,
                    "handling a message failed; retrying"
                );
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
}
