//! Apache Kafka, started the way the lab's `apache/kafka` image starts itself, from the Kafka
//! container the operator renders, and helpers that talk to it through librdkafka, the client
//! the product uses.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use tempfile::TempDir;
use tracing_lab_operator::render::{Children, kafka};

use crate::kubelet::{Loopback, Prepared};
use crate::lab;
use crate::{assets, process::ChildProcess};

/// A cold JVM formats the storage and starts the broker and its controller.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Where the image's wrapper writes the broker's configuration (`--final-configs-dir`).
const IMAGE_CONFIG_DIR: &str = "/opt/kafka/config";
/// The namespace of the lab [`KafkaBroker::start`] renders.
const NAMESPACE: &str = "tests";

/// One Apache Kafka node (broker and KRaft controller) on 127.0.0.1, killed on drop.
///
/// It runs the rendered Kafka container: its environment (in-cluster addresses mapped to
/// loopback), its user and group, and its emptyDir volumes as folders owned the way the kubelet
/// makes them (group `fsGroup`, setgid, world-writable). [`KafkaBroker::stop`] and
/// [`KafkaBroker::restart`] are a container restart: the volumes, and so every topic, message
/// and committed offset, stay.
pub struct KafkaBroker {
    process: ChildProcess,
    port: u16,
    _root: TempDir,
}

impl KafkaBroker {
    /// The Kafka of a lab with the default spec, as the operator renders it.
    pub async fn start() -> Result<Self> {
        let (children, loopback) = lab::rendered(&lab::stored("lab", NAMESPACE, json!({}))?)?;
        Self::start_rendered(&children, &loopback).await
    }

    /// Runs the Kafka StatefulSet of `children` as its first pod would run, on `loopback`'s ports,
    /// as the pod's user: the image's start script, the rendered environment and volumes.
    pub async fn start_rendered(children: &Children, loopback: &Loopback) -> Result<Self> {
        let root = tempfile::Builder::new().prefix("kafka-").tempdir()?;
        let component = kafka::KAFKA.suffix;
        let prepared = Prepared::new(
            children,
            loopback,
            component,
            "kafka",
            &root.path().join("volumes"),
        )?;
        let config_dir = prepared.volume(IMAGE_CONFIG_DIR).with_context(|| {
            format!("{IMAGE_CONFIG_DIR}, where the image writes its configuration, is not a writable volume")
        })?;
        let image = image_files(root.path())?;
        let leading = [
            image.join("run.sh"),
            image.join("libs"),
            config_dir.to_path_buf(),
            image.join("cds"),
        ]
        .map(|p| p.display().to_string());
        let command = prepared.command(Path::new("bash"), &leading, true)?;
        let port = loopback.port(component, kafka::CLIENT_PORT)?;
        let mut broker = Self {
            process: ChildProcess::spawn("kafka", command)?,
            port,
            _root: root,
        };
        broker.wait_ready().await?;
        Ok(broker)
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers` / `KAFKA_BOOTSTRAP_SERVERS`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A librdkafka configuration pointing at this broker, with short timeouts.
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

    /// Starts the broker again on the same port and volumes and waits until it is ready.
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
            .wait_until("serving every partition", READY_TIMEOUT, || {
                let config = config.clone();
                blocking(move || {
                    let consumer: BaseConsumer = config.create()?;
                    let metadata = consumer.fetch_metadata(None, Duration::from_secs(2))?;
                    ensure!(!metadata.brokers().is_empty(), "no broker in metadata");
                    // Group requests work once the coordinator has its offsets topic loaded.
                    let group: BaseConsumer =
                        config.clone().set("group.id", "harness-ready").create()?;
                    let mut probe = TopicPartitionList::new();
                    probe.add_partition("harness-ready", 0);
                    group.committed_offsets(probe, Duration::from_secs(2))?;
                    // After a restart each partition serves again once its log is loaded.
                    for topic in metadata.topics() {
                        for partition in topic.partitions() {
                            consumer.fetch_watermarks(
                                topic.name(),
                                partition.id(),
                                Duration::from_secs(2),
                            )?;
                        }
                    }
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
    pub async fn produce(&self, topic: &str, n: usize) -> Result<()> {
        let producer: FutureProducer = self.client_config().create()?;
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

/// The image's programs where the container's user can read them: the Kafka libraries and
/// class-data archives from the asset cache (hard links, or copies across file systems), and the
/// start script with its default configuration from `tests/env/kafka`.
fn image_files(root: &Path) -> Result<PathBuf> {
    let image = root.join("image");
    let cache = assets::find_dir("kafka")?;
    for part in ["libs", "cds"] {
        link_tree(&cache.join(part), &image.join(part))?;
    }
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("env/kafka");
    link_tree(&scripts.join("config"), &image.join("config"))?;
    std::fs::copy(scripts.join("run.sh"), image.join("run.sh"))?;
    Ok(image)
}

fn link_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if std::fs::hard_link(entry.path(), &target).is_err() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
