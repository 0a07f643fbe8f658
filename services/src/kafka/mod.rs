//! Kafka: topic creation, an idempotent producer that says whether a failed record may have been
//! written, and a consumer that commits only finished work (at-least-once), keeps serving
//! rebalances while its handlers are busy, and drops the work of partitions it loses.

mod bootstrap;
mod consumer;
mod headers;
mod offsets;
mod producer;
mod rebootstrap;

pub use bootstrap::Bootstrap;
pub use consumer::{Consumer, Slot};
pub use headers::{CheckedHeaders, InvalidHeader, check_headers};
pub use offsets::OffsetTracker;
pub use producer::{
    Acknowledgement, DELIVERY_TIMEOUT, Delivered, NotAcknowledged, Producer, Written,
};

use anyhow::{Context as _, anyhow};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use std::time::{Duration, Instant};

const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

fn client_config(bootstrap: &Bootstrap) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap.servers())
        .set("socket.keepalive.enable", "true")
        .set("log_level", "4");
    config
}

fn millis(duration: Duration) -> String {
    duration.as_millis().to_string()
}

/// Creates the topics that do not exist yet (an existing topic is left as it is).
pub async fn ensure_topics(
    bootstrap: &Bootstrap,
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
    // A topic another service is still creating "already exists" before its partitions are on
    // the broker, and a consumer subscribing then joins its group only at librdkafka's next
    // metadata refresh (5 minutes by default): return once every topic has its partitions.
    let names: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + ADMIN_TIMEOUT;
        loop {
            let metadata = admin.inner().fetch_metadata(None, METADATA_TIMEOUT)?;
            let led = |name: &String| {
                metadata.topics().iter().any(|t| {
                    t.name() == name
                        && t.error().is_none()
                        && !t.partitions().is_empty()
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                })
            };
            let missing: Vec<&String> = names.iter().filter(|name| !led(name)).collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("topics {missing:?} have no partitions with a leader yet");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await?
}

/// Whether retrying a produce that failed with `code` cannot help: the broker rejects the record
/// itself or the client's rights, not its own state.
pub fn is_permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::InvalidMessage
            | C::InvalidRecord
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::PolicyViolation
            | C::UnsupportedForMessageFormat
            | C::InvalidTopic
    )
}
