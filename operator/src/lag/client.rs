//! A minimal Kafka admin connection for lag measurement: one TCP connection per lab, speaking
//! the Kafka protocol directly (librdkafka reads committed offsets only for its own group).

use super::report::GroupMembers;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ConsumerProtocolAssignment, DescribeGroupsRequest,
    FindCoordinatorRequest, GroupId, ListOffsetsRequest, MetadataRequest, OffsetFetchRequest,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Message, Request, StrBytes, VersionRange,
};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENT_ID: &str = "tracing-lab-operator";
/// Responses larger than this are refused rather than allocated.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// Newest OffsetFetch version whose request names one group with `group_id` and `topics`.
const OFFSET_FETCH_MAX: i16 = 7;
/// ListOffsets timestamp that asks for the log end offset.
const LATEST: i64 = -1;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("the Kafka broker did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Kafka connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("Kafka protocol error: {0}")]
    Protocol(String),
    #[error("the Kafka broker does not support {0:?} in a version this operator speaks")]
    Unsupported(ApiKey),
    #[error("Kafka answered {api:?} with error code {code}")]
    Broker { api: ApiKey, code: i16 },
    /// The broker answers, but its consumer offsets are still being created or loaded.
    #[error("Kafka's group coordinator is not ready yet: its consumer offsets are loading")]
    CoordinatorNotReady,
}

/// A group-level error code: none, the coordinator not ready (loading, not available yet, or not
/// this broker while it moves), or another error.
fn group_error(api: ApiKey, code: i16) -> Result<(), KafkaError> {
    match code {
        0 => Ok(()),
        14..=16 => Err(KafkaError::CoordinatorNotReady),
        code => Err(KafkaError::Broker { api, code }),
    }
}

/// A member's partitions by topic, from the consumer protocol's assignment bytes (a version, then
/// the assignment); empty until the group has assigned it.
fn assignment(mut bytes: Bytes) -> Result<BTreeMap<String, Vec<i32>>, KafkaError> {
    if bytes.len() < 2 {
        return Ok(BTreeMap::new());
    }
    let version = bytes.get_i16();
    // Newer versions only append fields, so the newest one this crate knows reads them.
    let version = version.min(ConsumerProtocolAssignment::VERSIONS.max);
    let decoded = ConsumerProtocolAssignment::decode(&mut bytes, version).map_err(protocol)?;
    Ok(decoded
        .assigned_partitions
        .into_iter()
        .map(|tp| (tp.topic.0.to_string(), tp.partitions))
        .collect())
}

fn protocol(e: impl std::fmt::Display) -> KafkaError {
    KafkaError::Protocol(e.to_string())
}

/// A connected admin session; every call is bounded by the timeout given at connect time.
pub struct KafkaAdmin {
    stream: TcpStream,
    timeout: Duration,
    correlation_id: i32,
    versions: HashMap<i16, VersionRange>,
}

impl KafkaAdmin {
    pub async fn connect(bootstrap: &str, timeout: Duration) -> Result<Self, KafkaError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(bootstrap))
            .await
            .map_err(|_| KafkaError::Connect(format!("no answer within {timeout:?}")))?
            .map_err(|e| KafkaError::Connect(e.to_string()))?;
        stream.set_nodelay(true)?;
        let mut admin = Self {
            stream,
            timeout,
            correlation_id: 0,
            versions: HashMap::new(),
        };
        // Version 0 is understood by every broker; it tells which versions of the rest to use.
        let response = admin.call_version(ApiVersionsRequest::default(), 0).await?;
        if response.error_code != 0 {
            return Err(KafkaError::Broker {
                api: ApiKey::ApiVersions,
                code: response.error_code,
            });
        }
        admin.versions = response
            .api_keys
            .iter()
            .map(|k| {
                (
                    k.api_key,
                    VersionRange {
                        min: k.min_version,
                        max: k.max_version,
                    },
                )
            })
            .collect();
        Ok(admin)
    }

    /// Partition count of each topic that exists; missing topics are left out.
    pub async fn partitions(
        &mut self,
        topics: &[&str],
    ) -> Result<BTreeMap<String, i32>, KafkaError> {
        let request = MetadataRequest::default().with_topics(Some(
            topics
                .iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                .collect(),
        ));
        let response = self.call(request, None).await?;
        Ok(response
            .topics
            .into_iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| Some((t.name?.0.to_string(), t.partitions.len() as i32)))
            .collect())
    }

    /// Log end offset of each partition of each topic (topic name → partition count).
    pub async fn end_offsets(
        &mut self,
        topics: &BTreeMap<String, i32>,
    ) -> Result<BTreeMap<String, Vec<i64>>, KafkaError> {
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(
                topics
                    .iter()
                    .map(|(topic, partitions)| {
                        ListOffsetsTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(
                                (0..*partitions)
                                    .map(|p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(p)
                                            .with_timestamp(LATEST)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let response = self.call(request, None).await?;
        let mut offsets: BTreeMap<String, Vec<i64>> = topics
            .iter()
            .map(|(t, n)| (t.clone(), vec![0; *n as usize]))
            .collect();
        for topic in response.topics {
            let slots = offsets.get_mut(topic.name.0.as_str());
            let Some(slots) = slots else { continue };
            for partition in topic.partitions {
                if partition.error_code != 0 {
                    return Err(KafkaError::Broker {
                        api: ApiKey::ListOffsets,
                        code: partition.error_code,
                    });
                }
                if let Some(slot) = slots.get_mut(partition.partition_index as usize) {
                    *slot = partition.offset;
                }
            }
        }
        Ok(offsets)
    }

    /// Committed offset of `group` for each partition; `None` where the group never committed.
    pub async fn committed(
        &mut self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<Vec<Option<i64>>, KafkaError> {
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partition_indexes((0..partitions).collect()),
            ]));
        let response = self.call(request, Some(OFFSET_FETCH_MAX)).await?;
        group_error(ApiKey::OffsetFetch, response.error_code)?;
        let mut offsets = vec![None; partitions as usize];
        for partition in response.topics.into_iter().flat_map(|t| t.partitions) {
            if let Some(slot) = offsets.get_mut(partition.partition_index as usize) {
                *slot = (partition.error_code == 0 && partition.committed_offset >= 0)
                    .then_some(partition.committed_offset);
            }
        }
        Ok(offsets)
    }

    /// Asks for each group's coordinator. On a new broker this creates the consumer offsets topic,
    /// so the group requests after it can be answered.
    pub async fn find_coordinators(&mut self, groups: &[&str]) -> Result<(), KafkaError> {
        let request = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(
                groups
                    .iter()
                    .map(|g| StrBytes::from_string((*g).to_owned()))
                    .collect(),
            );
        let response = self.call(request, None).await?;
        for coordinator in response.coordinators {
            group_error(ApiKey::FindCoordinator, coordinator.error_code)?;
        }
        Ok(())
    }

    /// Each group's state and its members' partition assignments, as the broker describes them.
    pub async fn members(
        &mut self,
        groups: &[&str],
    ) -> Result<BTreeMap<String, GroupMembers>, KafkaError> {
        let request = DescribeGroupsRequest::default().with_groups(
            groups
                .iter()
                .map(|g| GroupId(StrBytes::from_string((*g).to_owned())))
                .collect(),
        );
        let response = self.call(request, None).await?;
        let mut members = BTreeMap::new();
        for described in response.groups {
            // GROUP_ID_NOT_FOUND (69) just means nobody has joined yet.
            if described.error_code != 69 {
                group_error(ApiKey::DescribeGroups, described.error_code)?;
            }
            let assignments = described
                .members
                .iter()
                .map(|m| assignment(m.member_assignment.clone()))
                .collect::<Result<_, _>>()?;
            members.insert(
                described.group_id.0.to_string(),
                GroupMembers {
                    stable: described.group_state.as_str() == "Stable",
                    assignments,
                },
            );
        }
        Ok(members)
    }

    async fn call<R: Request>(
        &mut self,
        request: R,
        cap: Option<i16>,
    ) -> Result<R::Response, KafkaError> {
        let api = ApiKey::try_from(R::KEY).map_err(|_| protocol("unknown api key"))?;
        let ours = R::VERSIONS;
        let ours = VersionRange {
            min: ours.min,
            max: cap.map_or(ours.max, |c| c.min(ours.max)),
        };
        let theirs = self
            .versions
            .get(&R::KEY)
            .ok_or(KafkaError::Unsupported(api))?;
        let common = ours.intersect(theirs);
        if common.is_empty() {
            return Err(KafkaError::Unsupported(api));
        }
        self.call_version(request, common.max).await
    }

    async fn call_version<R: Request>(
        &mut self,
        request: R,
        version: i16,
    ) -> Result<R::Response, KafkaError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .map_err(protocol)?;
        request.encode(&mut body, version).map_err(protocol)?;
        let timeout = self.timeout;
        let mut response = tokio::time::timeout(timeout, self.round_trip(body))
            .await
            .map_err(|_| KafkaError::Timeout(timeout))??;
        let header = ResponseHeader::decode(&mut response, R::Response::header_version(version))
            .map_err(protocol)?;
        if header.correlation_id != self.correlation_id {
            return Err(protocol(format!(
                "answer to request {} arrived for request {}",
                header.correlation_id, self.correlation_id
            )));
        }
        R::Response::decode(&mut response, version).map_err(protocol)
    }

    async fn round_trip(&mut self, body: BytesMut) -> Result<Bytes, KafkaError> {
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await?;
        let size = self.stream.read_i32().await?;
        let size = usize::try_from(size).map_err(protocol)?;
        if size > MAX_RESPONSE {
            return Err(protocol(format!(
                "response of {size} bytes exceeds {MAX_RESPONSE}"
            )));
        }
        let mut buf = vec![0; size];
        self.stream.read_exact(&mut buf).await?;
        Ok(Bytes::from(buf))
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}
