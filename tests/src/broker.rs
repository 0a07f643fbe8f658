//! A real Kafka-protocol broker (tansu, in-memory storage) and helpers that talk to it through
//! librdkafka, the client the product uses.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::{assets, ports, process::ChildProcess};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A tansu broker listening on 127.0.0.1, killed on drop.
///
/// Storage is in memory: [`KafkaBroker::stop`] + [`KafkaBroker::restart`] bring the broker back on
/// the same address but with no topics, messages or committed offsets.
pub struct KafkaBroker {
    process: ChildProcess,
    port: u16,
}

impl KafkaBroker {
    /// Starts the broker and waits until it serves metadata.
    pub async fn start() -> Result<Self> {
        let binary = assets::find("tansu")?;
        let port = ports::free_port();
        let listener = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(binary);
        command
            .arg("broker")
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "memory://tansu/"])
            // tansu reads these too; the broker must not export its own telemetry into a test's receiver.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let mut broker = Self {
            process: ChildProcess::spawn("tansu", command)?,
            port,
        };
        broker.wait_ready().await?;
        Ok(broker)
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers` / `KAFKA_BOOTSTRAP_SERVERS`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A librdkafka configuration pointing at this broker, with short timeouts.
    ///
    /// tansu 0.6 completes a consumer-group join only after half of `session.timeout.ms`
    /// (librdkafka's default 45 s means a 22 s wait): group consumers in tests should set
    /// `session.timeout.ms` to about 6000 and `heartbeat.interval.ms` to about 1000.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap())
            .set("broker.address.family", "v4")
            .set("socket.timeout.ms", "5000")
            .set("message.timeout.ms", "10000");
        config
    }

    /// Kills the broker (like a crash): clients then see it unreachable.
    pub fn stop(&mut self) -> Result<()> {
        self.process.kill()?;
        Ok(())
    }

    /// Starts the broker again on the same port (empty: storage is in memory) and waits until ready.
    pub async fn restart(&mut self) -> Result<()> {
        self.process.respawn()?;
        self.wait_ready().await
    }

    /// The broker process (log, pid).
    pub fn process(&mut self) -> &mut ChildProcess {
        &mut self.process
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let config = self.client_config();
        self.process
            .wait_until("serving metadata", READY_TIMEOUT, || {
                let config = config.clone();
                blocking(move || {
                    let consumer: BaseConsumer = config.create()?;
                    let metadata = consumer.fetch_metadata(None, Duration::from_secs(2))?;
                    ensure!(!metadata.brokers().is_empty(), "no broker in metadata");
                    Ok(())
                })
            })
            .await
    }

    /// Creates `name` with `partitions` partitions (replication factor 1).
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create()?;
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(CALL_TIMEOUT));
        for result in admin.create_topics([&topic], &options).await? {
            result.map_err(|(topic, code)| anyhow!("creating topic {topic}: {code}"))?;
        }
        Ok(())
    }

    /// Produces `n` messages (keys `key-I`, payloads `message-I`, I = 0..n) to `topic` and waits
    /// until the broker acknowledged all of them. Keys spread them over the partitions.
    ///
    /// Each record goes in its own batch: after a multi-record batch, tansu 0.6 reports a partition's
    /// end offset as the batch's base offset + 1 (the records themselves get correct offsets), which
    /// would falsify end offsets and lag.
    pub async fn produce(&self, topic: &str, n: usize) -> Result<()> {
        let producer: FutureProducer = self
            .client_config()
            .set("batch.num.messages", "1")
            .create()?;
        let sends = (0..n).map(|i| {
            let producer = &producer;
            async move {
                let key = format!("key-{i}");
                let payload = format!("message-{i}");
                let record = FutureRecord::to(topic).key(&key).payload(&payload);
                producer
                    .send(record, CALL_TIMEOUT)
                    .await
                    .map_err(|(err, _)| anyhow!("producing message {i} to {topic}: {err}"))
            }
        });
        futures::future::try_join_all(sends).await?;
        Ok(())
    }

    /// The end offset (high watermark) of each partition of `topic`, indexed by partition.
    pub async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        let config = self.client_config();
        let topic = topic.to_owned();
        blocking(move || {
            let consumer: BaseConsumer = config.create()?;
            (0..partition_count(&consumer, &topic)?)
                .map(|partition| {
                    let (_, high) = consumer.fetch_watermarks(&topic, partition, CALL_TIMEOUT)?;
                    Ok(high)
                })
                .collect()
        })
        .await
    }

    /// Commits `offsets` (partition, next offset to read) of `topic` for consumer group `group`,
    /// as a consumer of that group would. Only accepted while the group has no active member.
    pub async fn commit_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<()> {
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in offsets {
            list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        }
        let consumer = self.group_consumer(group)?;
        let context = format!("committing {offsets:?} of {topic} for group {group}");
        blocking(move || consumer.commit(&list, CommitMode::Sync).context(context)).await
    }

    /// The committed offset of each partition of `topic` for `group` (`None`: nothing committed),
    /// indexed by partition.
    pub async fn committed_offsets(&self, group: &str, topic: &str) -> Result<Vec<Option<i64>>> {
        let consumer = self.group_consumer(group)?;
        let topic = topic.to_owned();
        blocking(move || {
            let mut list = TopicPartitionList::new();
            for partition in 0..partition_count(&consumer, &topic)? {
                list.add_partition(&topic, partition);
            }
            let committed = consumer.committed_offsets(list, CALL_TIMEOUT)?;
            Ok(committed
                .elements()
                .iter()
                .map(|element| match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                })
                .collect())
        })
        .await
    }

    fn group_consumer(&self, group: &str) -> Result<BaseConsumer> {
        Ok(self
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()?)
    }
}

fn partition_count(consumer: &BaseConsumer, topic: &str) -> Result<i32> {
    let metadata = consumer.fetch_metadata(Some(topic), CALL_TIMEOUT)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        bail!("topic {topic} not in the broker's metadata");
    };
    if let Some(err) = found.error() {
        bail!("topic {topic}: {err:?}");
    }
    Ok(i32::try_from(found.partitions().len())?)
}

/// librdkafka's synchronous calls block; run them off the async worker threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}
