//! A member of a consumer group. Offsets are stored only when a message's handling returned `Ok`
//! and every earlier message of its partition is done too, and committed every
//! [`COMMIT_INTERVAL`], before partitions are handed over, and once more at the end.
//!
//! Each assigned partition has its own queue (split off from the consumer's when the partition
//! is assigned) and its own reader, which takes the next message only once a slot is free: the
//! backlog stays in librdkafka's prefetch, bounded by its settings, and a reader holds at most one
//! message waiting. The consumer's own queue then carries the group's events alone, and the
//! receive loop polls it all the time, so rebalances are served while every slot is busy. Nothing
//! is ever paused: librdkafka purges a paused partition's prefetch and fetches again only at its
//! broker thread's next wake-up, up to a second after the resume (a stage that paused whenever
//! 64 messages waited handled 71 a second however quick its work: `backlog` benchmark).
//! A message frees its slot once only its output's acknowledgement is awaited ([`Slot`]).
//! It uses the cooperative-sticky assignor, so a rebalance moves only the partitions that change
//! owner and the others keep flowing.

use super::{Bootstrap, METADATA_TIMEOUT, OffsetTracker, client_config};
use anyhow::{Context as _, anyhow};
use rdkafka::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
    stream_consumer::StreamPartitionQueue,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message as _, OwnedMessage};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often stored offsets are committed while consuming.
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// Longest pause between retries of a message whose handling failed (broker or Redis away).
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// Pause after a failed receive, so that a broken connection does not spin the loop.
const RECEIVE_RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How many messages may wait for their output's acknowledgement after freeing their slot; past
/// that a message keeps its slot while it waits, so a slow broker slows the stage down.
const AWAITING_MAX: usize = 64;

type PartitionQueue = StreamPartitionQueue<Rebalancing>;

/// A newly assigned partition's queue, for the receive loop to start its reader.
struct Assigned {
    partition: i32,
    queue: PartitionQueue,
    revoked: CancellationToken,
}

/// What the receive loop and the rebalance callbacks share.
struct Shared {
    tracker: Mutex<OffsetTracker>,
    /// The loop has drained and makes the last commit itself.
    closing: AtomicBool,
    /// The consumer, to split off the queues of the partitions assigned to it.
    consumer: OnceLock<Weak<StreamConsumer<Rebalancing>>>,
    topic: String,
    assigned: mpsc::UnboundedSender<Assigned>,
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
        match rebalance {
            // Split before librdkafka starts fetching, so that no message of the partition
            // reaches the consumer's own queue.
            Rebalance::Assign(list) => {
                let partitions = partitions(list);
                let stream = self.shared.consumer.get().and_then(Weak::upgrade);
                for &partition in &partitions {
                    let revoked = self.shared.tracker().assign(partition);
                    let queue = stream
                        .as_ref()
                        .and_then(|c| c.split_partition_queue(&self.shared.topic, partition));
                    match queue {
                        Some(queue) => {
                            // The loop is gone only when the consumer closes.
                            let _ = self.shared.assigned.send(Assigned {
                                partition,
                                queue,
                                revoked,
                            });
                        }
                        None => tracing::warn!(
                            topic = %self.shared.topic,
                            partition,
                            "the partition's queue could not be split off; its messages come through the consumer's"
                        ),
                    }
                }
            }
            Rebalance::Revoke(list) => {
                let partitions = partitions(list);
                let cancelled: usize = {
                    let mut tracker = self.shared.tracker();
                    partitions.iter().map(|&p| tracker.revoke(p)).sum()
                };
                // What finished is stored: commit it before the partitions move, so their new
                // owner starts right after it. Work cancelled here is redone there (at most the
                // slots' worth, plus the messages awaiting their output's acknowledgement).
                // Closing revokes everything once more, after the loop's final commit: nothing
                // is left to commit then, and that synchronous commit is the one whose failure is
                // reported.
                if !self.shared.closing.load(Ordering::SeqCst) {
                    commit(consumer, CommitMode::Async);
                }
                tracing::info!(?partitions, cancelled, "partitions revoked");
            }
            Rebalance::Error(_) => {}
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                tracing::info!(partitions = ?partitions(list), "partitions assigned");
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

/// A message's hold on one of the stage's slots. The handler frees it with [`Slot::release`]
/// once its work is done and only the broker's acknowledgement of its output is awaited, so that
/// at concurrency 1 the next message's work need not wait for a round trip to the broker; the
/// message's offset is still stored only when the handler returns `Ok`.
#[derive(Clone)]
pub struct Slot(Arc<SlotState>);

struct SlotState {
    slots: Arc<Semaphore>,
    awaiting: Arc<Semaphore>,
    held: Mutex<Hold>,
}

/// Each permit is returned when dropped.
enum Hold {
    Slot {
        _permit: OwnedSemaphorePermit,
    },
    /// A place among the messages awaiting an acknowledgement.
    Awaiting {
        _permit: OwnedSemaphorePermit,
    },
}

impl Slot {
    fn new(slots: Arc<Semaphore>, awaiting: Arc<Semaphore>, slot: OwnedSemaphorePermit) -> Self {
        Self(Arc::new(SlotState {
            slots,
            awaiting,
            held: Mutex::new(Hold::Slot { _permit: slot }),
        }))
    }

    fn held(&self) -> MutexGuard<'_, Hold> {
        self.0
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Frees the slot for the next message, unless [`AWAITING_MAX`] messages await already.
    pub fn release(&self) {
        let mut held = self.held();
        if matches!(*held, Hold::Slot { .. })
            && let Ok(place) = self.0.awaiting.clone().try_acquire_owned()
        {
            *held = Hold::Awaiting { _permit: place };
        }
    }

    /// Takes a slot again (before a retry, which is work).
    async fn reacquire(&self) {
        if matches!(*self.held(), Hold::Slot { .. }) {
            return;
        }
        let slot = self.0.slots.clone().acquire_owned().await;
        *self.held() = Hold::Slot {
            _permit: slot.expect("the slots are never closed"),
        };
    }
}

/// A received message with a free slot, and the token its partition's revocation cancels.
struct Ready {
    message: OwnedMessage,
    revoked: CancellationToken,
    slot: OwnedSemaphorePermit,
}

pub struct Consumer {
    inner: Arc<StreamConsumer<Rebalancing>>,
    shared: Arc<Shared>,
    assigned: tokio::sync::Mutex<mpsc::UnboundedReceiver<Assigned>>,
}

impl Consumer {
    /// Needs a Tokio runtime.
    pub fn new(bootstrap: &Bootstrap, group: &str, topic: &str) -> anyhow::Result<Self> {
        let (assigned, assigned_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            tracker: Mutex::default(),
            closing: AtomicBool::new(false),
            consumer: OnceLock::new(),
            topic: topic.to_owned(),
            assigned,
        });
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
        let inner = Arc::new(inner);
        // Before subscribing: the first assignment needs it.
        let _ = shared.consumer.set(Arc::downgrade(&inner));
        inner
            .subscribe(&[topic])
            .with_context(|| format!("subscribing to {topic}"))?;
        super::rebootstrap::watch(Arc::downgrade(&inner), |c| c.client(), bootstrap.servers())?;
        Ok(Self {
            inner,
            shared,
            assigned: tokio::sync::Mutex::new(assigned_rx),
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
        F: Fn(Arc<OwnedMessage>, Slot) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let handle = Arc::new(handle);
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        let awaiting = Arc::new(Semaphore::new(AWAITING_MAX));
        let mut assigned = self.assigned.lock().await;
        // Each reader holds one slot per message it sends: at most `concurrency` wait here.
        let (ready, mut readied) = mpsc::channel::<Ready>(concurrency.max(1));
        let mut readers = JoinSet::new();
        let mut tasks = JoinSet::new();
        let mut commits = tokio::time::interval(COMMIT_INTERVAL);
        commits.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(finished) = tasks.join_next(), if !tasks.is_empty() => {
                    finished.context("a message handler panicked")?;
                }
                Some(Ready { message, revoked, slot }) = readied.recv() => {
                    let (shared, consumer) = (self.shared.clone(), self.inner.clone());
                    let slot = Slot::new(slots.clone(), awaiting.clone(), slot);
                    tasks.spawn(work(shared, consumer, message, revoked, slot, handle.clone(), stop.clone()));
                }
                Some(partition) = assigned.recv() => {
                    readers.spawn(read_partition(partition, self.shared.clone(), slots.clone(), ready.clone()));
                }
                _ = commits.tick() => commit(&*self.inner, CommitMode::Async),
                // The group's events; a message here is of a partition whose queue could not be
                // split off, and waits for a slot in a task of its own.
                received = self.inner.recv() => match received {
                    Ok(message) => {
                        let message = message.detach();
                        if let Some(revoked) = begin(&self.shared, &message) {
                            let (shared, consumer) = (self.shared.clone(), self.inner.clone());
                            let (slots, awaiting) = (slots.clone(), awaiting.clone());
                            let (handle, stop) = (handle.clone(), stop.clone());
                            tasks.spawn(async move {
                                let slot = tokio::select! {
                                    _ = revoked.cancelled() => return,
                                    slot = slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
                                };
                                let slot = Slot::new(slots, awaiting, slot);
                                work(shared, consumer, message, revoked, slot, handle, stop).await;
                            });
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, topic = %self.shared.topic, "receiving from Kafka failed");
                        tokio::time::sleep(RECEIVE_RETRY_PAUSE).await;
                    }
                },
            }
        }
        // Messages without a slot are not started: the next owner of their partitions reads them.
        readers.shutdown().await;
        readied.close();
        while readied.recv().await.is_some() {}
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
}

/// Records a received message in the tracker; `None` when its partition is not assigned here.
fn begin(shared: &Shared, message: &OwnedMessage) -> Option<CancellationToken> {
    let begun = shared
        .tracker()
        .begin(message.partition(), message.offset());
    if begun.is_none() {
        tracing::warn!(
            topic = %shared.topic,
            partition = message.partition(),
            offset = message.offset(),
            "message of a partition not assigned here; left to its owner"
        );
    }
    begun
}

/// Reads one partition's queue until the partition is revoked: receives a message, waits for a
/// slot, and hands both to the receive loop, so it holds at most one message unstarted and takes
/// the next one only then (slots go to waiting readers in turn).
async fn read_partition(
    assigned: Assigned,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    ready: mpsc::Sender<Ready>,
) {
    let Assigned {
        partition,
        queue,
        revoked,
    } = assigned;
    loop {
        let received = tokio::select! {
            _ = revoked.cancelled() => return,
            received = queue.recv() => received.map(|m| m.detach()),
        };
        match received {
            Ok(message) => {
                let Some(token) = begin(&shared, &message) else {
                    continue;
                };
                let slot = tokio::select! {
                    _ = revoked.cancelled() => return,
                    slot = slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
                };
                // The loop is gone: the consumer is closing.
                if ready
                    .send(Ready {
                        message,
                        revoked: token,
                        slot,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, topic = %shared.topic, partition, "receiving from Kafka failed");
                tokio::time::sleep(RECEIVE_RETRY_PAUSE).await;
            }
        }
    }
}

/// One message's handling: stopped when its partition is revoked; on success its offset is
/// stored under the tracker's lock, so offsets of a partition are stored in increasing order.
async fn work<F, Fut>(
    shared: Arc<Shared>,
    consumer: Arc<StreamConsumer<Rebalancing>>,
    message: OwnedMessage,
    revoked: CancellationToken,
    slot: Slot,
    handle: Arc<F>,
    stop: CancellationToken,
) where
    F: Fn(Arc<OwnedMessage>, Slot) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let (partition, offset) = (message.partition(), message.offset());
    let topic = &shared.topic;
    let message = Arc::new(message);
    tokio::select! {
        biased;
        _ = revoked.cancelled() => {
            tracing::info!(%topic, partition, offset, "partition revoked; message left to its new owner");
        }
        handled = handle_with_retries(&*handle, message, slot, &stop) => {
            if !handled {
                return;
            }
            let mut tracker = shared.tracker();
            if let Some(last_done) = tracker.complete(partition, offset)
                && let Err(err) = consumer.store_offset(topic, partition, last_done)
            {
                tracing::warn!(error = %err, %topic, partition, offset = last_done, "offset not stored");
            }
        }
    }
}

/// `true` once handled; `false` when `stop` came first (the message will be redelivered).
async fn handle_with_retries<F, Fut>(
    handle: &F,
    message: Arc<OwnedMessage>,
    slot: Slot,
    stop: &CancellationToken,
) -> bool
where
    F: Fn(Arc<OwnedMessage>, Slot) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut pause = Duration::from_millis(100);
    loop {
        match handle(message.clone(), slot.clone()).await {
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
            _ = async {
                tokio::time::sleep(pause).await;
                slot.reacquire().await;
            } => {}
        }
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(slots: &Arc<Semaphore>, awaiting: &Arc<Semaphore>) -> Slot {
        let permit = slots.clone().try_acquire_owned().unwrap();
        Slot::new(slots.clone(), awaiting.clone(), permit)
    }

    #[tokio::test]
    async fn a_released_slot_goes_to_the_next_message_and_a_retry_takes_one_again() {
        let (slots, awaiting) = (Arc::new(Semaphore::new(1)), Arc::new(Semaphore::new(2)));
        let first = slot(&slots, &awaiting);
        assert_eq!(slots.available_permits(), 0);
        first.release();
        assert_eq!(
            (slots.available_permits(), awaiting.available_permits()),
            (1, 1)
        );
        first.release();
        assert_eq!(
            awaiting.available_permits(),
            1,
            "released twice, counted once"
        );

        let next = slot(&slots, &awaiting);
        let retry = tokio::spawn({
            let first = first.clone();
            async move { first.reacquire().await }
        });
        tokio::task::yield_now().await;
        assert!(
            !retry.is_finished(),
            "the retry waits for the next message's slot"
        );
        drop(next);
        retry.await.unwrap();
        assert_eq!(
            (slots.available_permits(), awaiting.available_permits()),
            (0, 2)
        );
        drop(first);
        assert_eq!(slots.available_permits(), 1);
    }

    #[tokio::test]
    async fn with_too_many_awaiting_a_message_keeps_its_slot() {
        let (slots, awaiting) = (Arc::new(Semaphore::new(1)), Arc::new(Semaphore::new(0)));
        let only = slot(&slots, &awaiting);
        only.release();
        assert_eq!(slots.available_permits(), 0);
        drop(only);
        assert_eq!(slots.available_permits(), 1);
    }
}
