//! Kafka: topic creation, a producer that waits for the broker's acknowledgement, and a consumer
//! that commits only finished work (at-least-once) with a configurable number of messages in flight.

mod offsets;

pub use offsets::OffsetTracker;

use anyhow::{Context as _, anyhow};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a produced message may wait for the broker before the send fails.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause between retries of a message whose handling failed (broker or Redis away).
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("socket.keepalive.enable", "true")
        .set("log_level", "4");
    config
}

/// Creates the topics that do not exist yet (an existing topic is left as it is).
pub async fn ensure_topics(
    bootstrap: &str,
    topics: &[&str],
    partitions: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap)
        .create()
        .context("creating the Kafka admin client")?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_topics(&new, &options)
        .await
        .with_context(|| format!("creating topics {topics:?} on {bootstrap}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(anyhow!("creating topic {topic} on {bootstrap}: {code}"));
            }
        }
    }
    Ok(())
}

/// Where a produced message landed.
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// A producer whose sends complete when every in-sync replica has the message (`acks=all`).
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

impl Producer {
    pub fn new(bootstrap: &str) -> anyhow::Result<Self> {
        let inner = client_config(bootstrap)
            .set("acks", "all")
            .set("linger.ms", "2")
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            )
            .create()
            .context("creating the Kafka producer")?;
        Ok(Self { inner })
    }

    /// Sends and waits for the acknowledgement.
    pub async fn send(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> anyhow::Result<Delivered> {
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        match self.inner.send(record, DELIVERY_TIMEOUT).await {
            Ok(delivery) => Ok(Delivered {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((err, _)) => Err(anyhow!(
                "Kafka did not acknowledge the message to {topic}: {err}"
            )),
        }
    }

    /// Readiness: the broker answers a metadata request.
    pub async fn check(&self) -> anyhow::Result<()> {
        let client = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(None, METADATA_TIMEOUT)
                .map(|_| ())
        })
        .await?
        .context("Kafka unreachable")
    }

    /// Sends what is still queued (shutdown).
    pub async fn flush(&self) {
        let inner = self.inner.clone();
        let flushed = tokio::task::spawn_blocking(move || inner.flush(DELIVERY_TIMEOUT)).await;
        if let Ok(Err(err)) = flushed {
            tracing::warn!(error = %err, "messages left unsent at shutdown");
        }
    }
}

/// A member of a consumer group. Offsets are stored only when a message's handling returned `Ok`
/// and every earlier message of its partition is done too; librdkafka commits stored offsets
/// periodically, on rebalance and at [`Consumer::run`]'s end.
pub struct Consumer {
    inner: Arc<StreamConsumer>,
    topic: String,
}

impl Consumer {
    pub fn new(bootstrap: &str, group: &str, topic: &str) -> anyhow::Result<Self> {
        let inner: StreamConsumer = client_config(bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "500")
            // A new group starts at the oldest message: orders sent before it joined are not lost.
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1500")
            .set("fetch.wait.max.ms", "100")
            .create()
            .context("creating the Kafka consumer")?;
        inner
            .subscribe(&[topic])
            .with_context(|| format!("subscribing to {topic}"))?;
        Ok(Self {
            inner: Arc::new(inner),
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
    /// other), until `stop` is cancelled; then finishes the messages in flight and commits.
    /// A failing `handle` is retried with growing pauses: its offset is never committed unhandled.
    pub async fn run<F, Fut>(
        &self,
        concurrency: usize,
        stop: CancellationToken,
        handle: F,
    ) -> anyhow::Result<()>
    where
        F: Fn(Arc<OwnedMessage>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let handle = Arc::new(handle);
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
        let mut tasks = JoinSet::new();
        loop {
            let slot = tokio::select! {
                _ = stop.cancelled() => break,
                slot = slots.clone().acquire_owned() => slot?,
            };
            let message = tokio::select! {
                _ = stop.cancelled() => break,
                received = self.inner.recv() => match received {
                    Ok(message) => Arc::new(message.detach()),
                    Err(err) => {
                        tracing::warn!(error = %err, topic = %self.topic, "receiving from Kafka failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                },
            };
            let (partition, offset) = (message.partition(), message.offset());
            lock(&tracker).begin(partition, offset);
            let (handle, tracker, consumer, stop) = (
                handle.clone(),
                tracker.clone(),
                self.inner.clone(),
                stop.clone(),
            );
            tasks.spawn(async move {
                let _slot = slot;
                if handle_with_retries(&*handle, message.clone(), &stop).await {
                    let done = lock(&tracker).complete(partition, offset);
                    if let Some(last_done) = done
                        && let Err(err) =
                            consumer.store_offset(message.topic(), partition, last_done)
                    {
                        // The partition was revoked meanwhile: its new owner reprocesses the message.
                        tracing::debug!(error = %err, partition, offset, "offset not stored");
                    }
                }
            });
            while let Some(finished) = tasks.try_join_next() {
                finished.context("a message handler panicked")?;
            }
        }
        while let Some(finished) = tasks.join_next().await {
            finished.context("a message handler panicked")?;
        }
        let consumer = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(())
                | Err(rdkafka::error::KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
                    Ok(())
                }
                Err(err) => Err(anyhow!("final offset commit failed: {err}")),
            }
        })
        .await?
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

fn lock(tracker: &Mutex<OffsetTracker>) -> std::sync::MutexGuard<'_, OffsetTracker> {
    tracker
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
