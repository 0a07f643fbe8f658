//! Kafka: one Apache Kafka node in KRaft combined mode (broker and controller), no ZooKeeper.
//! Topics are created by the services; `KAFKA_NUM_PARTITIONS` sets how many partitions they get.

use super::common::{
    LabRef, RunAs, container, container_port, env, pod_spec, resources, scratch, service_host, tmp,
};
use super::workload::{Component, port, service, template};
use crate::crd::{KAFKA_HEAP_MIB, KafkaSpec, KafkaStorage, StorageType};
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, Probe, Service, TCPSocketAction,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const IMAGE: &str = "apache/kafka:4.2.1";
pub const KAFKA: Component = Component {
    suffix: "kafka",
    app: "kafka",
};
pub const CLIENT_PORT: i32 = 9092;

/// The broker's address for clients in any namespace (the lag monitor's, and the status's).
pub fn bootstrap(lab: &str, namespace: &str) -> String {
    format!(
        "{}:{CLIENT_PORT}",
        service_host(lab, namespace, KAFKA.suffix)
    )
}
const CONTROLLER_PORT: i32 = 9093;
/// The image's `appuser` and its group.
const USER: RunAs = RunAs {
    uid: 1000,
    gid: 1000,
};
/// KRaft cluster id (base64 of 16 bytes). The start script formats empty storage with it and
/// accepts storage it formatted before (a restart on the same claim).
const CLUSTER_ID: &str = "dHJhY2luZ2xhYi1rYWZrYQ";

pub fn headless_name() -> &'static str {
    "kafka-headless"
}

/// The client Service `<lab>-kafka:9092` and the headless Service of the StatefulSet.
pub fn services(lab: &LabRef) -> Vec<Service> {
    let client = service(lab, KAFKA.suffix, KAFKA, vec![port("kafka", CLIENT_PORT)]);
    let mut headless = service(
        lab,
        headless_name(),
        KAFKA,
        vec![
            port("kafka", CLIENT_PORT),
            port("controller", CONTROLLER_PORT),
        ],
    );
    if let Some(spec) = headless.spec.as_mut() {
        spec.cluster_ip = Some("None".into());
        spec.publish_not_ready_addresses = Some(true);
    }
    vec![client, headless]
}

pub fn stateful_set(lab: &LabRef, spec: &KafkaSpec) -> StatefulSet {
    let image = spec.image.as_deref().unwrap_or(IMAGE);
    let (data_v, data_m) = scratch("data", "/var/lib/kafka/data");
    let (config_v, config_m) = scratch("config", "/opt/kafka/config");
    let (logs_v, logs_m) = scratch("logs", "/opt/kafka/logs");
    let (tmp_v, tmp_m) = tmp();
    let tcp = |port: i32| TCPSocketAction {
        port: IntOrString::Int(port),
        ..Default::default()
    };

    // The image's wrapper writes every file the broker reads (server.properties and the log4j2
    // configurations, from its defaults under /etc/kafka/docker) into /opt/kafka/config, so an
    // empty writable volume there is all it needs: no seeding from the read-only image.
    let mut broker = container("kafka", image, "IfNotPresent");
    broker.env = Some(vec![
        env("CLUSTER_ID", CLUSTER_ID),
        env("KAFKA_NODE_ID", "1"),
        env("KAFKA_PROCESS_ROLES", "broker,controller"),
        env(
            "KAFKA_LISTENERS",
            format!("PLAINTEXT://:{CLIENT_PORT},CONTROLLER://:{CONTROLLER_PORT}"),
        ),
        // Fully qualified so clients in other namespaces (the operator) can follow it.
        env(
            "KAFKA_ADVERTISED_LISTENERS",
            format!("PLAINTEXT://{}:{CLIENT_PORT}", lab.host(KAFKA.suffix)),
        ),
        env(
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        ),
        env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER"),
        env("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT"),
        env(
            "KAFKA_CONTROLLER_QUORUM_VOTERS",
            format!("1@localhost:{CONTROLLER_PORT}"),
        ),
        env("KAFKA_NUM_PARTITIONS", spec.partitions.to_string()),
        env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "true"),
        env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1"),
        env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1"),
        env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1"),
        env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0"),
        env("KAFKA_LOG_DIRS", "/var/lib/kafka/data"),
        env(
            "KAFKA_HEAP_OPTS",
            format!("-Xms{KAFKA_HEAP_MIB}m -Xmx{KAFKA_HEAP_MIB}m"),
        ),
        env("LOG_DIR", "/opt/kafka/logs"),
    ]);
    broker.ports = Some(vec![
        container_port("kafka", CLIENT_PORT),
        container_port("controller", CONTROLLER_PORT),
    ]);
    broker.volume_mounts = Some(vec![data_m, config_m, logs_m, tmp_m]);
    broker.resources = Some(resources(
        spec.resources.as_ref(),
        ("250m", "512Mi"),
        ("1", "1Gi"),
    ));
    broker.startup_probe = Some(Probe {
        tcp_socket: Some(tcp(CLIENT_PORT)),
        period_seconds: Some(5),
        failure_threshold: Some(36),
        ..Default::default()
    });
    broker.readiness_probe = Some(Probe {
        tcp_socket: Some(tcp(CLIENT_PORT)),
        period_seconds: Some(5),
        ..Default::default()
    });
    broker.liveness_probe = Some(Probe {
        tcp_socket: Some(tcp(CONTROLLER_PORT)),
        period_seconds: Some(10),
        failure_threshold: Some(6),
        ..Default::default()
    });

    let claim = data_claim(&spec.storage, &data_v.name);
    let mut volumes = vec![config_v, logs_v, tmp_v];
    if claim.is_none() {
        volumes.insert(0, data_v);
    }
    let pod = pod_spec(vec![broker], volumes, USER);
    StatefulSet {
        metadata: lab.meta(KAFKA.suffix, KAFKA.app, KAFKA.suffix),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(lab.child(headless_name())),
            selector: lab.selector(KAFKA.suffix),
            template: template(lab, KAFKA, pod, None),
            // The claim is the lab's: deleting the lab deletes the data with it.
            persistent_volume_claim_retention_policy: claim.as_ref().map(|_| {
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Delete".into()),
                    when_scaled: Some("Retain".into()),
                }
            }),
            volume_claim_templates: claim.map(|c| vec![c]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The claim template that replaces the emptyDir `name` when the storage is a claim.
fn data_claim(storage: &KafkaStorage, name: &str) -> Option<PersistentVolumeClaim> {
    if storage.type_ != StorageType::PersistentVolumeClaim {
        return None;
    }
    Some(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_owned(), storage.size.clone())].into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    })
}
