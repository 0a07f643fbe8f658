//! The periodic sweep: measure every lab's consumer lag and write it into its status.
//!
//! Status-only server-side apply under its own field manager, so the controller's fields stay
//! its own and no spec changes (hence no reconciles) follow. One connection is kept per lab and
//! every broker call is bounded by a timeout; an unreachable broker becomes a condition.

use super::client::{KafkaAdmin, KafkaError};
use super::report::{self, GroupSample};
use crate::conditions::Observation;
use crate::crd::KafkaStatus;
use crate::crd::TracingLab;
use crate::metrics::Shared;
use crate::render::kafka;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing_lab_config::Role;

/// Field manager of the lag fields in status.
pub const MANAGER: &str = "tracing-lab-operator-lag";
/// Condition telling whether the lab's broker could be measured.
pub const KAFKA_REACHABLE: &str = "KafkaReachable";
/// Labs measured at once.
const PARALLEL: usize = 32;

#[derive(Clone, Debug)]
pub struct Config {
    pub interval: Duration,
    /// Bound on connecting and on each broker call.
    pub timeout: Duration,
    /// Dial this address instead of the lab's own Kafka Service (running outside the cluster).
    pub bootstrap: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(3),
            bootstrap: None,
        }
    }
}

/// What one lab's sweeps carry from one period to the next.
#[derive(Default)]
struct Probe {
    admin: Option<KafkaAdmin>,
    lags: BTreeMap<String, report::LagHistory>,
    orders: Option<(i64, Instant)>,
}

/// Measures labs and writes their lag; keeps one connection and the previous reading per lab.
pub struct Monitor {
    client: Client,
    config: Arc<Config>,
    metrics: Arc<Shared>,
    probes: HashMap<ObjectRef<TracingLab>, Probe>,
}

impl Monitor {
    pub fn new(client: Client, config: Config, metrics: Arc<Shared>) -> Self {
        Self {
            metrics,
            client,
            config: Arc::new(config),
            probes: HashMap::new(),
        }
    }

    /// Sweeps the labs in `store` every interval, forever (the caller aborts the task).
    pub async fn run(mut self, store: Store<TracingLab>) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.sweep(store.state()).await;
        }
    }

    /// Measures every lab once, a bounded number at a time; forgets labs no longer given.
    pub async fn sweep(&mut self, labs: Vec<Arc<TracingLab>>) {
        let keys: HashSet<_> = labs
            .iter()
            .map(|lab| ObjectRef::from_obj(lab.as_ref()))
            .collect();
        self.probes.retain(|key, _| keys.contains(key));
        let started = Instant::now();
        let swept: Vec<_> = futures::stream::iter(labs)
            .filter(|lab| std::future::ready(lab.meta().deletion_timestamp.is_none()))
            .map(|lab| {
                let key = ObjectRef::from_obj(lab.as_ref());
                let probe = self.probes.remove(&key).unwrap_or_default();
                let (client, config, metrics) = (
                    self.client.clone(),
                    self.config.clone(),
                    self.metrics.clone(),
                );
                async move { (key, sweep(&client, &lab, probe, &config, &metrics).await) }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        self.probes.extend(swept);
        self.metrics
            .lag_sweep_duration
            .observe(started.elapsed().as_secs_f64());
    }

    /// Kafka connections currently kept (one per reachable lab at most).
    pub fn connections(&self) -> usize {
        self.probes.values().filter(|p| p.admin.is_some()).count()
    }
}

/// The address the operator dials for a lab.
pub fn bootstrap(lab: &TracingLab, config: &Config) -> String {
    config
        .bootstrap
        .clone()
        .unwrap_or_else(|| kafka::bootstrap(&lab.name_any(), &lab.namespace().unwrap_or_default()))
}

#[tracing::instrument(skip_all, fields(lab = %lab.name_any(), namespace = lab.namespace().unwrap_or_default()))]
async fn sweep(
    client: &Client,
    lab: &TracingLab,
    mut probe: Probe,
    config: &Config,
    metrics: &Shared,
) -> Probe {
    let address = bootstrap(lab, config);
    let measured = measure(&mut probe, &address, config.timeout).await;
    metrics.lag_measurements.inc();
    let (kafka, condition) = match measured {
        Ok(kafka) => (
            Some(kafka),
            condition(lab, true, "Measured", format!("lag measured at {address}")),
        ),
        // Reachable, and the lag is measured once the coordinator has loaded; the last one stays.
        Err(KafkaError::CoordinatorNotReady) => (
            None,
            condition(
                lab,
                true,
                "CoordinatorLoading",
                format!(
                    "Kafka at {address} answers; its group coordinator is still loading, so the \
                     lag is measured again next period"
                ),
            ),
        ),
        Err(e) => {
            metrics.lag_failures.inc();
            probe.admin = None;
            tracing::warn!(error = %e, "lag measurement failed");
            (
                None,
                condition(
                    lab,
                    false,
                    "BrokerUnreachable",
                    format!("Kafka at {address}: {e}"),
                ),
            )
        }
    };
    if let Err(e) = write(client, lab, kafka, condition).await {
        tracing::warn!(error = %e, "could not write the lag status");
    }
    probe
}

/// One measurement over one kept connection: metadata, end offsets and members in one request
/// each, committed offsets in one request per group.
async fn measure(
    probe: &mut Probe,
    address: &str,
    timeout: Duration,
) -> Result<KafkaStatus, KafkaError> {
    if probe.admin.is_none() {
        probe.admin = Some(KafkaAdmin::connect(address, timeout).await?);
    }
    let admin = probe.admin.as_mut().expect("connected above");
    let consumers: Vec<(&str, &str)> = Role::CONSUMERS
        .iter()
        .filter_map(|r| Some((r.consumer_group()?, r.input_topic()?)))
        .collect();
    let topics: Vec<&str> = consumers.iter().map(|(_, t)| *t).collect();
    let partitions = admin.partitions(&topics).await?;
    let ends = admin.end_offsets(&partitions).await?;
    let groups: Vec<&str> = consumers.iter().map(|(g, _)| *g).collect();
    admin.find_coordinators(&groups).await?;
    let mut members = admin.members(&groups).await?;
    let mut lags = Vec::new();
    for (group, topic) in &consumers {
        let end_offsets = ends.get(*topic).cloned().unwrap_or_default();
        let committed = admin
            .committed(group, topic, end_offsets.len() as i32)
            .await?;
        let sample = GroupSample {
            group: (*group).into(),
            topic: (*topic).into(),
            end_offsets,
            committed,
            members: members.remove(*group).unwrap_or_default(),
        };
        let history = probe.lags.entry((*group).to_owned()).or_default();
        let lag = report::group_lag(&sample, history.reference());
        history.record(Instant::now(), lag.lag);
        lags.push(lag);
    }
    let orders_end = (
        Role::Api
            .output_topic()
            .and_then(|orders| ends.get(orders))
            .map_or(0, |o| o.iter().sum()),
        Instant::now(),
    );
    let rate = report::rate(probe.orders, orders_end);
    probe.orders = Some(orders_end);
    Ok(report::summarise(lags, rate, Time(Timestamp::now())))
}

fn condition(lab: &TracingLab, reachable: bool, reason: &str, message: String) -> Condition {
    let previous = lab.status.as_ref().map_or(&[][..], |s| &s.conditions);
    Observation {
        previous,
        generation: lab.metadata.generation,
        now: Time(Timestamp::now()),
    }
    .condition(KAFKA_REACHABLE, reachable, reason, message)
}

/// Applies the lag fields, skipping the write when only the measurement time would change.
async fn write(
    client: &Client,
    lab: &TracingLab,
    kafka: Option<KafkaStatus>,
    condition: Condition,
) -> kube::Result<()> {
    let status = lab.status.as_ref();
    let old_kafka = status.and_then(|s| s.kafka.clone());
    let kafka = kafka.or_else(|| old_kafka.clone());
    let unchanged_kafka = match (&kafka, &old_kafka) {
        (Some(new), Some(old)) => {
            KafkaStatus {
                measured_at: None,
                ..new.clone()
            } == KafkaStatus {
                measured_at: None,
                ..old.clone()
            }
        }
        (None, None) => true,
        _ => false,
    };
    let unchanged_condition = status
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == KAFKA_REACHABLE))
        .is_some_and(|c| c == &condition);
    if unchanged_kafka && unchanged_condition {
        return Ok(());
    }
    let api: Api<TracingLab> =
        Api::namespaced(client.clone(), &lab.namespace().unwrap_or_default());
    // Only the lag monitor's own fields: the reconciler's conditions stay its own.
    let patch = json!({
        "apiVersion": TracingLab::api_version(&()),
        "kind": TracingLab::kind(&()),
        "status": { "kafka": kafka, "conditions": [condition] },
    });
    api.patch_status(
        &lab.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
