//! The producer: idempotent, `acks=all`, and on failure it tells whether the broker may have the
//! record anyway (librdkafka's message persistence status), so the api never denies an order
//! that will be processed.

use super::{Bootstrap, METADATA_TIMEOUT, client_config, millis};
use anyhow::Context as _;
use rdkafka::ClientContext;
use rdkafka::bindings::{rd_kafka_message_status, rd_kafka_msg_status_t};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, DeliveryResult, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long the broker may take to answer one produce request before the client sends it again.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may stay silent before librdkafka drops it and retries elsewhere.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a record may take in total, retries included. Longer than the request and socket
/// timeouts: a slow acknowledgement is retried (idempotence keeps it single) instead of failing
/// while the broker may already have written it.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long shutdown waits for queued records: part of the pod's grace period, after the drain.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a produced message landed.
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// Whether a record that was not acknowledged may be in the topic anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// It never reached the broker: it will not be consumed.
    No,
    /// It was sent but not acknowledged: it may be consumed.
    Maybe,
}

/// A send that the broker did not acknowledge.
#[derive(Debug, thiserror::Error)]
#[error("Kafka did not acknowledge the message to {topic}: {error}")]
pub struct NotAcknowledged {
    pub topic: String,
    pub error: KafkaError,
    pub written: Written,
}

type Report = Result<Delivered, (KafkaError, Written)>;

/// Hands each delivery report to the send waiting for it.
struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<oneshot::Sender<Report>>;

    fn delivery(&self, result: &DeliveryResult<'_>, waiting: Self::DeliveryOpaque) {
        let report = match result {
            Ok(message) => Ok(Delivered {
                partition: message.partition(),
                offset: message.offset(),
            }),
            Err((error, message)) => Err((error.clone(), written(message))),
        };
        // The sender gave up waiting (its request ended): nobody to tell.
        let _ = waiting.send(report);
    }
}

fn written(message: &BorrowedMessage<'_>) -> Written {
    // SAFETY: the message is the live delivery report librdkafka handed to this callback.
    match unsafe { rd_kafka_message_status(message.ptr()) } {
        rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_NOT_PERSISTED => Written::No,
        _ => Written::Maybe,
    }
}

/// The broker's answer to one queued record.
pub struct Acknowledgement {
    topic: String,
    acknowledged: oneshot::Receiver<Report>,
}

impl Acknowledgement {
    pub async fn wait(self) -> Result<Delivered, NotAcknowledged> {
        let failed = |error, written| NotAcknowledged {
            topic: self.topic.clone(),
            error,
            written,
        };
        match self.acknowledged.await {
            Ok(Ok(delivered)) => Ok(delivered),
            Ok(Err((error, written))) => Err(failed(error, written)),
            // The producer dropped the report without calling back (it is shutting down).
            Err(_) => Err(failed(KafkaError::Canceled, Written::Maybe)),
        }
    }
}

/// A producer whose records are acknowledged when every in-sync replica has them.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<ThreadedProducer<Reports>>,
    /// The first bootstrap server, host and port: the broker its spans name.
    server: Arc<(String, u16)>,
}

impl Producer {
    /// Needs a Tokio runtime.
    pub fn new(bootstrap: &Bootstrap) -> anyhow::Result<Self> {
        let (host, port) = bootstrap.first();
        let server = (host.to_owned(), port);
        let inner: ThreadedProducer<Reports> = client_config(bootstrap)
            // Retries of a timed-out request never duplicate or reorder a record.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Sent at once: every millisecond here shows as queue wait on the next span, and
            // records still batch while a request is in flight.
            .set("linger.ms", "0")
            .set("request.timeout.ms", millis(REQUEST_TIMEOUT))
            .set("socket.timeout.ms", millis(SOCKET_TIMEOUT))
            .set("message.timeout.ms", millis(DELIVERY_TIMEOUT))
            // Bounded send queue: 16 MiB, not librdkafka's 1 GiB, in a pod of 128 MiB.
            .set("queue.buffering.max.kbytes", "16384")
            .set("queue.buffering.max.messages", "10000")
            .create_with_context(Reports)
            .context("creating the Kafka producer")?;
        let inner = Arc::new(inner);
        super::rebootstrap::watch(Arc::downgrade(&inner), |p| p.client(), bootstrap.servers())?;
        Ok(Self {
            inner,
            server: Arc::new(server),
        })
    }

    /// The broker this producer names in its spans' `server.address` and `server.port`.
    pub fn server(&self) -> (&str, u16) {
        (&self.server.0, self.server.1)
    }

    /// Queues the record; the returned [`Acknowledgement`] resolves when the broker acknowledged
    /// it (at most [`DELIVERY_TIMEOUT`]). An `Err` here means it was not queued: nothing was sent.
    pub fn queue(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Acknowledgement, NotAcknowledged> {
        let (report, acknowledged) = oneshot::channel();
        let record = BaseRecord::with_opaque_to(topic, Box::new(report))
            .key(key)
            .payload(payload)
            .headers(headers);
        // Not queued (queue full, unknown topic).
        self.inner
            .send(record)
            .map_err(|(error, _)| NotAcknowledged {
                topic: topic.to_owned(),
                error,
                written: Written::No,
            })?;
        Ok(Acknowledgement {
            topic: topic.to_owned(),
            acknowledged,
        })
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
        let flushed = tokio::task::spawn_blocking(move || inner.flush(FLUSH_TIMEOUT)).await;
        if let Ok(Err(err)) = flushed {
            tracing::warn!(error = %err, "messages left unsent at shutdown");
        }
    }
}
