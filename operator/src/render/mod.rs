//! Every object of a lab as a pure function of its spec: no I/O, so all of it is unit-tested.

pub mod collector;
pub mod common;
pub mod jaeger;
pub mod kafka;
pub mod prometheus;
pub mod redis;
pub mod services;
mod workload;

pub use common::LabRef;

use crate::validate::ValidatedLab;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tracing_lab_config::Role;

/// The objects a lab consists of, by kind.
#[derive(Debug, Default, Clone)]
pub struct Children {
    pub config_maps: Vec<ConfigMap>,
    pub services: Vec<Service>,
    pub stateful_sets: Vec<StatefulSet>,
    pub deployments: Vec<Deployment>,
}

/// An image a lab runs by default, and what the test suite runs for it.
#[derive(Debug, Clone, Copy)]
pub struct DefaultImage {
    pub component: &'static str,
    pub image: &'static str,
    pub tested_with: &'static str,
}

/// The upstream images of a lab (the services' image is the operator's own).
pub const DEFAULT_IMAGES: [DefaultImage; 5] = [
    DefaultImage {
        component: "kafka",
        image: kafka::IMAGE,
        tested_with: "Apache Kafka 4.2.1 (`org.apache.kafka:kafka_2.13` from Maven Central), \
            configured by the image's own `KafkaDockerWrapper` from the rendered environment",
    },
    DefaultImage {
        component: "collector",
        image: collector::IMAGE,
        tested_with: "the OpenTelemetry Collector 0.161.0 core and contrib modules, built with the \
            components the rendered configuration uses",
    },
    DefaultImage {
        component: "jaeger",
        image: jaeger::IMAGE,
        tested_with: "Jaeger v2.13.0 (`cmd/jaeger` of module v1.76.0)",
    },
    DefaultImage {
        component: "redis",
        image: redis::IMAGE,
        tested_with: "Debian 12's redis-server 7.0 (the commands the services use are the same)",
    },
    DefaultImage {
        component: "prometheus",
        image: prometheus::IMAGE,
        tested_with: "Prometheus 3.16.0 (`cmd/prometheus` of module v0.316.0)",
    },
];

impl Children {
    /// Each workload's metadata and pod template: the Deployments, then the StatefulSets.
    pub fn workloads(&self) -> impl Iterator<Item = (&ObjectMeta, &PodTemplateSpec)> {
        self.replicated()
            .map(|(meta, _, template)| (meta, template))
    }

    /// What the lab asks the scheduler for: every pod's requests (a workload without replicas
    /// runs one).
    pub fn requests(&self) -> Requests {
        let mut total = Requests {
            cpu_millis: 0,
            memory_mib: 0,
        };
        for (_, replicas, template) in self.replicated() {
            let pods = replicas.unwrap_or(1).max(0) as u64;
            let containers = template.spec.iter().flat_map(|p| &p.containers);
            for requests in containers.filter_map(|c| c.resources.as_ref()?.requests.as_ref()) {
                let units = |key: &str| {
                    requests
                        .get(key)
                        // Validated before rendering: a request is a quantity or absent.
                        .and_then(|q| crate::quantity::nanos(&q.0).ok())
                        .unwrap_or(0)
                };
                total.cpu_millis += pods * (units("cpu") / 1_000_000) as u64;
                total.memory_mib += pods * (units("memory") / 1_000_000_000 / (1 << 20)) as u64;
            }
        }
        total
    }

    /// Each workload's metadata, replicas and pod template.
    fn replicated(&self) -> impl Iterator<Item = (&ObjectMeta, Option<i32>, &PodTemplateSpec)> {
        let deployments = self.deployments.iter().filter_map(|d| {
            let spec = d.spec.as_ref()?;
            Some((&d.metadata, spec.replicas, &spec.template))
        });
        let stateful_sets = self.stateful_sets.iter().filter_map(|s| {
            let spec = s.spec.as_ref()?;
            Some((&s.metadata, spec.replicas, &spec.template))
        });
        deployments.chain(stateful_sets)
    }
}

/// CPU and memory requested, in the units the builders use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requests {
    pub cpu_millis: u64,
    pub memory_mib: u64,
}

/// Every container image of `children`, sorted, each once.
pub fn images(children: &Children) -> Vec<String> {
    let images: std::collections::BTreeSet<String> = children
        .workloads()
        .filter_map(|(_, template)| template.spec.as_ref())
        .flat_map(|pod| {
            pod.containers
                .iter()
                .chain(pod.init_containers.iter().flatten())
        })
        .filter_map(|c| c.image.clone())
        .collect();
    images.into_iter().collect()
}

/// Renders the whole lab.
pub fn render(lab: &LabRef, valid: &ValidatedLab) -> Children {
    let spec = valid.spec();
    let config = spec.lab_config();
    let node_ports = spec.access.node_ports.as_ref();
    let metrics = &spec.span_metrics;
    let mut deployments = vec![
        redis::deployment_(lab, &spec.redis),
        jaeger::deployment_(lab, &spec.jaeger, metrics),
        collector::deployment_(lab, &spec.collector, &spec.sampling.tail, metrics),
    ];
    deployments.extend(Role::ALL.map(|role| services::deployment_(lab, spec, &config, role)));
    if spec.load_generator.enabled {
        deployments.push(services::loadgen(lab, spec, &config));
    }
    let mut svcs = kafka::services(lab);
    svcs.push(redis::service_(lab));
    svcs.extend(jaeger::services(lab, node_ports.map(|p| p.jaeger_ui)));
    svcs.push(collector::service_(lab));
    svcs.push(services::api_service(lab, node_ports.map(|p| p.api)));
    if config.quote.enabled {
        svcs.push(services::quote_service(lab));
    }
    let mut config_maps = vec![
        services::config_map(lab, &config),
        jaeger::config_map(lab, &spec.jaeger, metrics),
        jaeger::strategies_config_map(lab, &spec.sampling.remote_strategies()),
        collector::config_map(lab, &spec.sampling.tail, metrics),
    ];
    if metrics.enabled {
        deployments.push(prometheus::deployment_(lab, metrics));
        svcs.push(prometheus::service_(lab));
        config_maps.push(prometheus::config_map(lab, metrics));
    }
    Children {
        config_maps,
        services: svcs,
        stateful_sets: vec![kafka::stateful_set(lab, &spec.kafka)],
        deployments,
    }
}

#[cfg(test)]
mod tests {
    use super::common::tests::lab;
    use super::common::{CONFIG_HASH, MANAGED_BY};
    use super::*;
    use crate::crd::{NodePorts, TracingLabSpec};
    use crate::validate::validated;
    use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};

    fn render_spec(json: &str) -> Children {
        let lab = lab(serde_json::from_str(json).unwrap());
        render(&LabRef::new(&lab).unwrap(), &validated(&lab.spec).unwrap())
    }

    fn names<T: kube::Resource>(objs: &[T]) -> Vec<String> {
        objs.iter()
            .map(|o| o.meta().name.clone().unwrap())
            .collect()
    }

    fn deployment<'a>(c: &'a Children, name: &str) -> &'a Deployment {
        c.deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(name))
            .unwrap()
    }

    fn template(d: &Deployment) -> &PodTemplateSpec {
        &d.spec.as_ref().unwrap().template
    }

    fn main_container(d: &Deployment) -> &Container {
        &template(d).spec.as_ref().unwrap().containers[0]
    }

    fn env<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
        c.env
            .as_ref()?
            .iter()
            .find(|e| e.name == name)?
            .value
            .as_deref()
    }

    #[test]
    fn empty_spec_renders_the_whole_lab() {
        let c = render_spec("{}");
        assert_eq!(
            names(&c.config_maps),
            [
                "demo-config",
                "demo-jaeger-config",
                "demo-jaeger-sampling",
                "demo-collector-config",
                "demo-prometheus-config"
            ]
        );
        assert_eq!(
            names(&c.services),
            [
                "demo-kafka",
                "demo-kafka-headless",
                "demo-redis",
                "demo-jaeger",
                "demo-jaeger-otlp",
                "demo-jaeger-sampling",
                "demo-collector",
                "demo-api",
                "demo-prometheus"
            ]
        );
        assert_eq!(names(&c.stateful_sets), ["demo-kafka"]);
        assert_eq!(
            names(&c.deployments),
            [
                "demo-redis",
                "demo-jaeger",
                "demo-collector",
                "demo-api",
                "demo-processing",
                "demo-notification",
                "demo-analytics",
                "demo-prometheus"
            ]
        );
        assert!(
            c.services
                .iter()
                .all(|s| s.spec.as_ref().unwrap().type_.as_deref() == Some("ClusterIP"))
        );
    }

    #[test]
    fn services_get_the_env_contract() {
        let c = render_spec("{}");
        let p = main_container(deployment(&c, "demo-processing"));
        assert_eq!(p.args.as_deref(), Some(&["processing".to_string()][..]));
        assert_eq!(env(p, "OTEL_SERVICE_NAME"), Some("processing"));
        assert_eq!(
            env(p, "OTEL_EXPORTER_OTLP_ENDPOINT"),
            Some("http://demo-collector:4317")
        );
        assert_eq!(env(p, "OTEL_EXPORTER_OTLP_PROTOCOL"), Some("grpc"));
        assert_eq!(env(p, "OTEL_TRACES_SAMPLER"), Some("parentbased_always_on"));
        assert_eq!(env(p, "OTEL_TRACES_SAMPLER_ARG"), Some("1"));
        assert_eq!(env(p, "OTEL_BSP_SCHEDULE_DELAY"), Some("5000"));
        assert_eq!(env(p, "KAFKA_BOOTSTRAP_SERVERS"), Some("demo-kafka:9092"));
        assert_eq!(env(p, "KAFKA_TOPIC_PARTITIONS"), Some("6"));
        assert_eq!(env(p, "REDIS_URL"), Some("redis://demo-redis:6379"));
        assert_eq!(
            env(p, "LAB_CONFIG"),
            Some("/etc/tracing-lab/lab-config.json")
        );
        assert_eq!(env(p, "LISTEN_ADDR"), Some("0.0.0.0:8080"));
        assert!(
            env(p, "OTEL_RESOURCE_ATTRIBUTES")
                .unwrap()
                .contains("service.namespace=demo")
        );
        assert_eq!(p.image.as_deref(), Some(services::default_image().as_str()));
        assert_eq!(p.image_pull_policy.as_deref(), Some("IfNotPresent"));
    }

    #[test]
    fn requests_count_every_replica() {
        let one = render_spec("{}").requests();
        let scaled = render_spec(r#"{"services": {"processing": {"replicas": 3}}}"#).requests();
        // A service pod requests 100m and 32Mi.
        assert_eq!(scaled.cpu_millis - one.cpu_millis, 2 * 100);
        assert_eq!(scaled.memory_mib - one.memory_mib, 2 * 32);
        assert!(one.cpu_millis > 0 && one.memory_mib > 0);
    }

    #[test]
    fn images_are_every_pinned_image_once() {
        let c =
            render_spec(r#"{"loadGenerator": {"enabled": true}, "redis": {"image": "redis:7"}}"#);
        assert_eq!(
            images(&c),
            [
                kafka::IMAGE.to_string(),
                jaeger::IMAGE.to_string(),
                collector::IMAGE.to_string(),
                prometheus::IMAGE.to_string(),
                "redis:7".to_string(),
                services::default_image(),
            ]
        );
    }

    #[test]
    fn pods_run_as_their_images_user_and_group_with_nothing_to_seed() {
        let c = render_spec("{}");
        let security = |name: &str| {
            let (_, template) = c
                .workloads()
                .find(|(meta, _)| meta.name.as_deref() == Some(name))
                .unwrap();
            let template = template.clone();
            let pod = template.spec.unwrap();
            assert_eq!(pod.init_containers, None, "{name}");
            let s = pod.security_context.unwrap();
            (
                s.run_as_user.unwrap(),
                s.run_as_group.unwrap(),
                s.fs_group.unwrap(),
            )
        };
        // The Alpine Redis image's `redis` user is 999 in group 1000; Kafka's `appuser` 1000:1000.
        assert_eq!(security("demo-redis"), (999, 1000, 1000));
        assert_eq!(security("demo-kafka"), (1000, 1000, 1000));
    }

    #[test]
    fn every_container_is_hardened_and_bounded() {
        let c = render_spec(r#"{"loadGenerator": {"enabled": true}}"#);
        for (_, t) in c.workloads() {
            let pod = t.spec.clone().unwrap();
            let psc = pod.security_context.as_ref().unwrap();
            assert_eq!(psc.run_as_non_root, Some(true));
            assert!(psc.run_as_user.unwrap() > 0);
            let containers = pod
                .containers
                .iter()
                .chain(pod.init_containers.iter().flatten());
            for c in containers {
                let sc = c.security_context.as_ref().unwrap();
                assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
                assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
                assert_eq!(
                    sc.capabilities.as_ref().unwrap().drop.as_deref(),
                    Some(&["ALL".to_string()][..])
                );
                assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
                let r = c.resources.as_ref().unwrap();
                assert!(
                    r.requests.as_ref().unwrap().contains_key("memory"),
                    "{}",
                    c.name
                );
                assert!(
                    r.limits.as_ref().unwrap().contains_key("memory"),
                    "{}",
                    c.name
                );
            }
            assert!(
                pod.containers
                    .iter()
                    .all(|c| c.readiness_probe.is_some() && c.liveness_probe.is_some())
            );
        }
    }

    #[test]
    fn replicas_are_owned_only_when_set() {
        let c = render_spec(r#"{"services": {"notification": {"replicas": 3}}}"#);
        assert_eq!(
            deployment(&c, "demo-processing")
                .spec
                .as_ref()
                .unwrap()
                .replicas,
            None
        );
        assert_eq!(
            deployment(&c, "demo-notification")
                .spec
                .as_ref()
                .unwrap()
                .replicas,
            Some(3)
        );
        let applied = serde_json::to_value(deployment(&c, "demo-processing")).unwrap();
        assert!(
            applied["spec"].get("replicas").is_none(),
            "replicas must be absent from the apply"
        );
    }

    #[test]
    fn config_hash_follows_what_the_pod_consumes() {
        let hash = |c: &Children, name: &str| {
            template(deployment(c, name))
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()[CONFIG_HASH]
                .clone()
        };
        let base = render_spec(r#"{"loadGenerator": {"enabled": true}}"#);
        let changed = render_spec(
            r#"{"loadGenerator": {"enabled": true}, "services": {"processing": {"concurrency": 4}}}"#,
        );
        assert_ne!(
            hash(&base, "demo-processing"),
            hash(&changed, "demo-processing")
        );
        assert_eq!(hash(&base, "demo-api"), hash(&changed, "demo-api"));
        assert_eq!(hash(&base, "demo-loadgen"), hash(&changed, "demo-loadgen"));
        let tail = render_spec(
            r#"{"loadGenerator": {"enabled": true}, "sampling": {"tail": {"enabled": true}}}"#,
        );
        assert_ne!(hash(&base, "demo-collector"), hash(&tail, "demo-collector"));
        // The quote hop restarts its two ends only.
        let parallel = render_spec(
            r#"{"loadGenerator": {"enabled": true}, "quote": {"enabled": true, "calls": "Parallel"}}"#,
        );
        for (name, restarts) in [
            ("demo-api", true),
            ("demo-analytics", true),
            ("demo-processing", false),
            ("demo-notification", false),
        ] {
            assert_eq!(
                hash(&base, name) != hash(&parallel, name),
                restarts,
                "{name}"
            );
        }
    }

    #[test]
    fn the_quote_hop_gives_the_api_the_url_of_an_analytics_service() {
        let off = render_spec("{}");
        assert!(!names(&off.services).contains(&"demo-analytics".to_string()));
        let api = main_container(deployment(&off, "demo-api"));
        assert_eq!(env(api, "QUOTE_URL"), None);

        let on = render_spec(r#"{"quote": {"enabled": true, "timeoutMs": 300}}"#);
        let api = main_container(deployment(&on, "demo-api"));
        assert_eq!(env(api, "QUOTE_URL"), Some("http://demo-analytics:8080"));
        let p = main_container(deployment(&on, "demo-processing"));
        assert_eq!(env(p, "QUOTE_URL"), None);
        let analytics = on
            .services
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some("demo-analytics"))
            .unwrap()
            .spec
            .clone()
            .unwrap();
        assert_eq!(
            analytics.selector.unwrap()["app.kubernetes.io/component"],
            "analytics"
        );
        assert_eq!(analytics.ports.unwrap()[0].port, 8080);
        let doc = on.config_maps[0].data.as_ref().unwrap()["lab-config.json"].clone();
        let quote = tracing_lab_config::LabConfig::parse(&doc).unwrap().quote;
        assert!(quote.enabled);
        assert_eq!(quote.timeout_ms, 300);
    }

    #[test]
    fn loadgen_targets_the_api_when_enabled() {
        assert!(
            render_spec("{}")
                .deployments
                .iter()
                .all(|d| d.metadata.name.as_deref() != Some("demo-loadgen"))
        );
        let c = render_spec(r#"{"loadGenerator": {"enabled": true, "ordersPerSecond": 5}}"#);
        let l = main_container(deployment(&c, "demo-loadgen"));
        assert_eq!(env(l, "LOADGEN_TARGET_URL"), Some("http://demo-api:8080"));
        assert_eq!(env(l, "OTEL_SERVICE_NAME"), Some("loadgen"));
        let doc = c.config_maps[0].data.as_ref().unwrap()["lab-config.json"].clone();
        assert_eq!(
            tracing_lab_config::LabConfig::parse(&doc)
                .unwrap()
                .loadgen
                .orders_per_second,
            5.0
        );
    }

    #[test]
    fn node_ports_make_node_port_services() {
        let lab = lab(TracingLabSpec {
            access: crate::crd::AccessSpec {
                node_ports: Some(NodePorts::default()),
            },
            ..Default::default()
        });
        let c = render(&LabRef::new(&lab).unwrap(), &validated(&lab.spec).unwrap());
        let svc = |name: &str| {
            c.services
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name))
                .unwrap()
                .spec
                .clone()
                .unwrap()
        };
        assert_eq!(svc("demo-api").type_.as_deref(), Some("NodePort"));
        assert_eq!(svc("demo-api").ports.unwrap()[0].node_port, Some(30080));
        assert_eq!(svc("demo-jaeger").ports.unwrap()[0].node_port, Some(30686));
        assert_eq!(svc("demo-collector").type_.as_deref(), Some("ClusterIP"));
    }

    #[test]
    fn kafka_is_kraft_with_the_spec_partitions() {
        let c = render_spec(r#"{"kafka": {"partitions": 12}}"#);
        let sts = &c.stateful_sets[0];
        let pod = sts.spec.as_ref().unwrap().template.spec.clone().unwrap();
        let k = &pod.containers[0];
        assert_eq!(env(k, "KAFKA_NUM_PARTITIONS"), Some("12"));
        assert_eq!(env(k, "KAFKA_PROCESS_ROLES"), Some("broker,controller"));
        // Fixed: the CRD refuses a memory limit below it.
        assert_eq!(env(k, "KAFKA_HEAP_OPTS"), Some("-Xms512m -Xmx512m"));
        assert_eq!(
            env(k, "KAFKA_ADVERTISED_LISTENERS"),
            Some("PLAINTEXT://demo-kafka.students.svc:9092")
        );
        assert!(
            k.env
                .as_ref()
                .unwrap()
                .iter()
                .all(|e| !e.name.contains("ZOOKEEPER"))
        );
        let mounts: Vec<_> = k
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert!(mounts.contains(&"/opt/kafka/config") && mounts.contains(&"/var/lib/kafka/data"));
        assert_eq!(
            sts.spec.as_ref().unwrap().service_name.as_deref(),
            Some("demo-kafka-headless")
        );
    }

    #[test]
    fn kafka_data_is_an_empty_dir_or_a_claim_that_follows_the_pod() {
        let data = |c: &Children| {
            let sts = c.stateful_sets[0].spec.clone().unwrap();
            let pod = sts.template.spec.unwrap();
            let mount = pod.containers[0]
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| m.mount_path == "/var/lib/kafka/data")
                .cloned()
                .unwrap();
            let volume = pod
                .volumes
                .unwrap()
                .into_iter()
                .find(|v| v.name == mount.name);
            let claim = sts
                .volume_claim_templates
                .into_iter()
                .flatten()
                .find(|c| c.metadata.name.as_ref() == Some(&mount.name));
            (volume, claim, sts.persistent_volume_claim_retention_policy)
        };
        let (volume, claim, retention) = data(&render_spec("{}"));
        assert!(volume.unwrap().empty_dir.is_some());
        assert!(claim.is_none() && retention.is_none());

        let (volume, claim, retention) = data(&render_spec(
            r#"{"kafka": {"storage": {"type": "persistentVolumeClaim", "size": "5Gi",
                "storageClassName": "standard"}}}"#,
        ));
        assert!(volume.is_none(), "the claim replaces the emptyDir");
        let claim = claim.unwrap().spec.unwrap();
        assert_eq!(claim.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
        assert_eq!(claim.storage_class_name.as_deref(), Some("standard"));
        assert_eq!(
            claim.resources.unwrap().requests.unwrap()["storage"].0,
            "5Gi"
        );
        assert_eq!(retention.unwrap().when_deleted.as_deref(), Some("Delete"));

        let (_, claim, _) = data(&render_spec(
            r#"{"kafka": {"storage": {"type": "persistentVolumeClaim"}}}"#,
        ));
        let claim = claim.unwrap().spec.unwrap();
        assert_eq!(
            claim.storage_class_name, None,
            "the cluster's default class"
        );
        assert_eq!(
            claim.resources.unwrap().requests.unwrap()["storage"].0,
            "1Gi"
        );
    }

    #[test]
    fn collector_config_follows_tail_sampling() {
        let lab = lab(TracingLabSpec::default());
        let r = LabRef::new(&lab).unwrap();
        let off = collector::config(&r, &Default::default(), &Default::default());
        assert!(!off.contains("tail_sampling"));
        assert!(off.contains("http://demo-jaeger-otlp:4318"));
        let tail = crate::crd::TailSampling {
            enabled: true,
            latency_threshold_ms: 250,
            keep_attributes: vec![crate::crd::AttributeMatch {
                key: "customer.tier".into(),
                values: vec!["premium".into()],
            }],
            percentage: 5.0,
            spans_per_second: 40,
            ..Default::default()
        };
        let on: serde_json::Value =
            serde_saphyr::from_str(&collector::config(&r, &tail, &Default::default())).unwrap();
        let sampling = &on["processors"]["tail_sampling"];
        // The first rule that keeps a trace decides, so the order below is the fields' order.
        assert_eq!(sampling["sample_on_first_match"], true);
        let policies = sampling["policies"].as_array().unwrap();
        assert_eq!(policies.len(), 5);
        assert_eq!(policies[0]["status_code"]["status_codes"][0], "ERROR");
        assert_eq!(policies[1]["latency"]["threshold_ms"], 250);
        assert_eq!(
            policies[2]["string_attribute"],
            serde_json::json!({"key": "customer.tier", "values": ["premium"]})
        );
        assert_eq!(policies[3]["probabilistic"]["sampling_percentage"], 5.0);
        assert_eq!(
            policies[4]["rate_limiting"],
            serde_json::json!({"spans_per_second": 40, "burst_capacity": 200})
        );
        assert_eq!(
            on["service"]["pipelines"]["traces"]["processors"][1],
            "tail_sampling"
        );
    }

    #[test]
    fn jaeger_config_caps_traces() {
        let spec = crate::crd::JaegerSpec {
            max_traces: 1234,
            ..Default::default()
        };
        let r = LabRef::new(&lab(TracingLabSpec::default())).unwrap();
        let doc: serde_json::Value =
            serde_saphyr::from_str(&jaeger::config(&r, &spec, &Default::default())).unwrap();
        assert_eq!(
            doc["extensions"]["jaeger_storage"]["backends"]["memstore"]["memory"]["max_traces"],
            1234
        );
    }

    #[test]
    fn span_metrics_count_every_span_into_prometheus_which_jaeger_reads() {
        let off = render_spec(r#"{"spanMetrics": {"enabled": false}}"#);
        assert!(!names(&off.deployments).contains(&"demo-prometheus".to_owned()));
        let on = render_spec(
            r#"{"spanMetrics": {"enabled": true, "retentionHours": 3},
            "sampling": {"tail": {"enabled": true}}}"#,
        );
        assert!(names(&on.deployments).contains(&"demo-prometheus".to_owned()));
        assert!(names(&on.services).contains(&"demo-prometheus".to_owned()));
        let prometheus = main_container(deployment(&on, "demo-prometheus"));
        let args = prometheus.args.as_ref().unwrap();
        assert!(args.contains(&"--web.enable-otlp-receiver".to_owned()));

        let config = |c: &Children, map: &str, file: &str| -> serde_json::Value {
            let map = c
                .config_maps
                .iter()
                .find(|m| m.metadata.name.as_deref() == Some(map))
                .unwrap();
            serde_saphyr::from_str(&map.data.as_ref().unwrap()[file]).unwrap()
        };
        assert_eq!(
            config(&on, "demo-prometheus-config", "prometheus.yml")["storage"]["tsdb"]["retention"]
                ["time"],
            "3h"
        );
        let collector = config(&on, "demo-collector-config", "config.yaml");
        let pipelines = &collector["service"]["pipelines"];
        // Counted before tail sampling: a pipeline without the sampler.
        assert_eq!(
            pipelines["traces/span_metrics"]["processors"],
            serde_json::json!(["memory_limiter"])
        );
        assert_eq!(pipelines["traces"]["processors"][1], "tail_sampling");
        assert_eq!(
            pipelines["metrics/span_metrics"]["exporters"][0],
            "otlp_http/prometheus"
        );
        assert_eq!(
            collector["exporters"]["otlp_http/prometheus"]["endpoint"],
            "http://demo-prometheus:9090/api/v1/otlp"
        );
        let jaeger = config(&on, "demo-jaeger-config", "config.yaml");
        assert_eq!(
            jaeger["extensions"]["jaeger_query"]["storage"]["metrics"],
            "prometheus"
        );
        assert_eq!(
            jaeger["extensions"]["jaeger_storage"]["metric_backends"]["prometheus"]["prometheus"]["endpoint"],
            "http://demo-prometheus:9090"
        );
        let off_jaeger = config(&off, "demo-jaeger-config", "config.yaml");
        assert!(off_jaeger["extensions"]["jaeger_storage"]["metric_backends"].is_null());
        assert!(config(&off, "demo-collector-config", "config.yaml")["connectors"].is_null());
    }

    #[test]
    fn remote_sampling_serves_the_spec_strategies_and_points_the_services_at_them() {
        let spec = r#"{"sampling": {
            "head": {"sampler": "parentbased_jaeger_remote", "ratio": 0.5},
            "perService": {"processing": {"sampler": "parentbased_always_on"}},
            "remote": {"defaultRatio": 0.2, "pollIntervalSeconds": 7, "services": [
                {"service": "api", "operations": [{"operation": "get_order", "ratio": 0.1}]},
                {"service": "loadgen", "ratio": 0.3}]}}}"#;
        let c = render_spec(spec);
        let api = main_container(deployment(&c, "demo-api"));
        assert_eq!(
            env(api, "OTEL_TRACES_SAMPLER"),
            Some("parentbased_jaeger_remote")
        );
        assert_eq!(
            env(api, "OTEL_TRACES_SAMPLER_ARG"),
            Some(
                "endpoint=http://demo-jaeger-sampling:5778/sampling,pollingIntervalMs=7000,initialSamplingRate=0.5"
            )
        );
        let processing = main_container(deployment(&c, "demo-processing"));
        assert_eq!(env(processing, "OTEL_TRACES_SAMPLER_ARG"), Some("0.5"));

        let strategies = c
            .config_maps
            .iter()
            .find(|m| m.metadata.name.as_deref() == Some("demo-jaeger-sampling"))
            .unwrap()
            .data
            .as_ref()
            .unwrap()["strategies.json"]
            .clone();
        let doc: serde_json::Value = serde_json::from_str(&strategies).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({
                "default_strategy": {"type": "probabilistic", "param": 0.2},
                "service_strategies": [
                    {"service": "api", "type": "probabilistic", "param": 0.2,
                     "operation_strategies": [
                        {"operation": "get_order", "type": "probabilistic", "param": 0.1}]},
                    {"service": "loadgen", "type": "probabilistic", "param": 0.3}]
            })
        );
        // The strategies change without restarting Jaeger: its pod hashes only its config.
        let jaeger_hash = |c: &Children| {
            template(deployment(c, "demo-jaeger"))
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .clone()
        };
        assert_eq!(jaeger_hash(&c), jaeger_hash(&render_spec("{}")));
        let jaeger = main_container(deployment(&c, "demo-jaeger"));
        let r = LabRef::new(&lab(TracingLabSpec::default())).unwrap();
        let doc: serde_json::Value = serde_saphyr::from_str(&jaeger::config(
            &r,
            &Default::default(),
            &Default::default(),
        ))
        .unwrap();
        assert_eq!(
            doc["extensions"]["remote_sampling"]["file"]["path"],
            "/etc/jaeger-sampling/strategies.json"
        );
        assert!(
            jaeger
                .volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.mount_path == "/etc/jaeger-sampling" && m.sub_path.is_none())
        );
    }

    #[test]
    fn every_object_is_labelled_for_pruning() {
        let c = render_spec(r#"{"loadGenerator": {"enabled": true}}"#);
        let metas = c
            .config_maps
            .iter()
            .map(|o| &o.metadata)
            .chain(c.services.iter().map(|o| &o.metadata))
            .chain(c.deployments.iter().map(|o| &o.metadata))
            .chain(c.stateful_sets.iter().map(|o| &o.metadata));
        for m in metas {
            assert_eq!(
                m.labels.as_ref().unwrap()[MANAGED_BY],
                "tracing-lab-operator"
            );
            assert_eq!(m.owner_references.as_ref().unwrap().len(), 1);
        }
    }
}
