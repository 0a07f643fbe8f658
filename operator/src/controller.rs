//! The reconcile loop: validate, render, apply, and report status and events.

use crate::apply::{self, Applied, ApplyError};
use crate::blockers;
use crate::crd::{ComponentStatus, TracingLab, TracingLabStatus};
use crate::lag::{self, Monitor};
use crate::metrics::Shared;
use crate::readiness;
use crate::render::common::{INSTANCE, MANAGED_BY, MANAGER};
use crate::render::{self, LabRef};
use crate::status::{self, Outcome};
use crate::validate;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::PredicateConfig;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Periodic re-reconcile, on top of watch events, so drift is corrected even if an event is missed.
const RESYNC: Duration = Duration::from_secs(300);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Labs reconciled at once. Each reconcile holds its rendered and applied objects; bounding the
/// count bounds the operator's memory when many labs change together (an instructor's class).
const CONCURRENCY: u16 = 8;

/// How the controller runs.
#[derive(Default, Clone)]
pub struct Config {
    /// Watch only this namespace; `None` watches all.
    pub namespace: Option<String>,
    /// Metrics and readiness, shared with the HTTP endpoints.
    pub shared: Arc<Shared>,
    /// Kafka lag measurement.
    pub lag: lag::Config,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying the lab: {0}")]
    Apply(#[from] ApplyError),
    #[error("writing the lab status: {}", apply::reason(.0))]
    Status(kube::Error),
}

struct Context {
    client: Client,
    recorder: Recorder,
    shared: Arc<Shared>,
    /// The labs as watched: the per-lab maps below keep only labs still in it.
    labs: Store<TracingLab>,
    /// Consecutive failures per lab, for the retry backoff.
    failures: PerLab<u32>,
    /// The lab's pods (labels and status only), kept by the pod watch.
    pods: Store<Pod>,
    /// What each lab was last told in a Warning event, by topic: the lab in the cache may not
    /// show the status just written yet, and an unchanged warning must not be published again.
    told: PerLab<BTreeMap<Topic, Option<(String, String)>>>,
}

/// What a Warning event about a lab tells.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Topic {
    /// Its Degraded condition turned True or changed reason or message.
    Degraded,
    /// What blocks its components changed.
    Blocked,
    /// Its status could not be written (the status cannot say so itself).
    StatusWrite,
}

/// Something kept for each lab the operator watches.
type PerLab<V> = Mutex<HashMap<ObjectRef<TracingLab>, V>>;

impl Context {
    /// Forgets the labs that are gone: a deleted lab without finalizers is never reconciled again.
    fn forget_deleted(&self) {
        let present = |lab: &ObjectRef<TracingLab>| self.labs.get(lab).is_some();
        self.failures
            .lock()
            .expect("failure map poisoned")
            .retain(|lab, _| present(lab));
        self.told
            .lock()
            .expect("told map poisoned")
            .retain(|lab, _| present(lab));
    }
}

/// Warning events that explain a component and arrive without any change to its pods or
/// workloads: a StatefulSet's refused pod, a readiness probe failing.
const TRIGGERING_EVENTS: [&str; 2] = ["FailedCreate", "Unhealthy"];

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until SIGTERM or Ctrl-C, then finishes the reconciles in flight.
pub async fn run(client: Client, config: Config) {
    let ns = config.namespace.as_deref();
    let children = watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER}"));
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let (pods, pod_writer) = reflector::store();
    let (store, writer) = reflector::store();
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        shared: config.shared.clone(),
        labs: store.clone(),
        failures: Mutex::default(),
        pods,
        told: Mutex::default(),
    });
    let pod_changes = watcher(scoped::<Pod>(&client, ns), children.clone())
        .default_backoff()
        // Only labels and status are read: the rest of each pod stays out of memory.
        .modify(|pod| {
            pod.metadata.managed_fields = None;
            pod.metadata.annotations = None;
            pod.metadata.owner_references = None;
            pod.spec = None;
        })
        .reflect(pod_writer)
        .touched_objects();
    let labs = watcher(
        scoped::<TracingLab>(&client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(writer)
    .applied_objects()
    // Status writes (the reconciler's and the lag monitor's) keep the generation: no reconcile.
    .predicate_filter(predicates::generation, PredicateConfig::default());
    let event_labs = store.clone();
    let controller = Controller::for_stream(labs, store.clone())
        .watches_stream(pod_changes, |pod| lab_of_pod(&pod))
        .watches(
            scoped::<CoreEvent>(&client, ns),
            watcher::Config::default().fields("type=Warning"),
            move |event| labs_of_event(&event_labs, &event),
        )
        .owns(scoped::<Deployment>(&client, ns), children.clone())
        .owns(scoped::<StatefulSet>(&client, ns), children.clone())
        .owns(scoped::<Service>(&client, ns), children.clone())
        .owns(scoped::<ConfigMap>(&client, ns), children)
        .with_config(controller::Config::default().concurrency(CONCURRENCY))
        .shutdown_on_signal();
    let ready_store = store.clone();
    let shared = config.shared.clone();
    tokio::spawn(async move {
        // The store wakes only its latest waiter (the controller's own), so poll again each second.
        loop {
            match tokio::time::timeout(Duration::from_secs(1), ready_store.wait_until_ready()).await
            {
                Ok(Ok(())) => {
                    tracing::info!("TracingLabs listed; ready");
                    shared.set_ready(true);
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the TracingLab watch ended before its first list");
                    break;
                }
                Err(_) => continue,
            }
        }
    });
    let lag_monitor = tokio::spawn(
        Monitor::new(client.clone(), config.lag.clone(), config.shared.clone()).run(store.clone()),
    );
    tracing::info!(namespace = ns.unwrap_or("<all>"), "controller started");
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile attempt ended with an error");
            }
        })
        .await;
    lag_monitor.abort();
    config.shared.set_ready(false);
    tracing::info!("controller stopped");
}

/// The lab a pod belongs to, by its `instance` label.
fn lab_of_pod(pod: &Pod) -> Option<ObjectRef<TracingLab>> {
    let lab = pod.labels().get(INSTANCE)?;
    Some(ObjectRef::new(lab).within(&pod.namespace()?))
}

/// The labs whose children an event is about: events carry no labels, but every child is named
/// `<lab>-<component>...`.
fn labs_of_event(labs: &Store<TracingLab>, event: &CoreEvent) -> Vec<ObjectRef<TracingLab>> {
    let (Some(reason), Some(object), Some(namespace)) = (
        event.reason.as_deref(),
        event.involved_object.name.as_deref(),
        event.involved_object.namespace.as_deref(),
    ) else {
        return Vec::new();
    };
    if !TRIGGERING_EVENTS.contains(&reason) {
        return Vec::new();
    }
    labs.state()
        .iter()
        .filter(|lab| {
            lab.namespace().as_deref() == Some(namespace)
                && object.starts_with(&format!("{}-", lab.name_any()))
        })
        .map(|lab| ObjectRef::from_obj(lab.as_ref()))
        .collect()
}

/// The lab's workloads by component, each one not available with why, from the pod cache and
/// the Warning events of the lab's namespace (listed only when something is not available).
async fn observe(
    ctx: &Context,
    lab: &LabRef,
    applied: &Applied,
) -> BTreeMap<String, ComponentStatus> {
    let mut components = readiness::components(&lab.name, applied);
    if components.values().all(|c| c.available) {
        return components;
    }
    let pods = ctx.pods.state_filter(|p| {
        p.namespace().as_deref() == Some(lab.namespace.as_str())
            && p.labels().get(INSTANCE) == Some(&lab.name)
    });
    let pods: Vec<&Pod> = pods.iter().map(AsRef::as_ref).collect();
    let events: Api<CoreEvent> = Api::namespaced(ctx.client.clone(), &lab.namespace);
    let events = match events
        .list(&ListParams::default().fields("type=Warning"))
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            tracing::warn!(error = %apply::reason(&e), "could not list the lab's events");
            Vec::new()
        }
    };
    blockers::explain(&lab.name, &mut components, applied, &pods, &events);
    components
}

#[tracing::instrument(skip_all, fields(lab = %lab.name_any(), namespace = lab.namespace().unwrap_or_default()))]
async fn reconcile(lab: Arc<TracingLab>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.shared.reconciles.inc();
    let started = Instant::now();
    let result = reconcile_lab(&lab, &ctx).await;
    ctx.shared.duration.observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.failures
            .lock()
            .expect("failure map poisoned")
            .remove(&ObjectRef::from(&*lab));
    }
    ctx.forget_deleted();
    result
}

/// One reconcile: validate → render → apply → readiness and blockers → status → events.
async fn reconcile_lab(lab: &TracingLab, ctx: &Context) -> Result<Action, Error> {
    if lab.metadata.deletion_timestamp.is_some() {
        ctx.told
            .lock()
            .expect("told map poisoned")
            .remove(&ObjectRef::from(lab));
        // Owner references let the garbage collector remove the children.
        return Ok(Action::await_change());
    }
    let Some(lab_ref) = LabRef::new(lab) else {
        return Ok(Action::await_change());
    };
    let step = match validate::validated(&lab.spec) {
        Err(problems) => Step::Invalid(problems),
        Ok(valid) => {
            let children = render::render(&lab_ref, &valid);
            match apply::apply(&ctx.client, &lab_ref.namespace, &lab_ref.name, children).await {
                Err(e) => Step::Failed(e),
                Ok(applied) => Step::Applied {
                    warnings: status::idle_consumers(
                        &applied,
                        &lab_ref.name,
                        valid.spec().kafka.partitions,
                    ),
                    components: observe(ctx, &lab_ref, &applied).await,
                },
            }
        }
    };
    let new_status = step.status(lab, &lab_ref);
    write_status(ctx, lab, &lab_ref, &new_status).await?;
    warn_on_changes(ctx, lab, &new_status).await;
    step.next()
}

/// How far a reconcile got.
enum Step {
    /// The spec has problems; nothing was applied.
    Invalid(Vec<String>),
    /// The API server refused or failed an object.
    Failed(ApplyError),
    /// Everything was applied: its workloads by component, why those not available are not, and
    /// what works but not as the student may expect (idle consumers).
    Applied {
        components: BTreeMap<String, ComponentStatus>,
        warnings: Vec<String>,
    },
}

impl Step {
    fn status(&self, lab: &TracingLab, lab_ref: &LabRef) -> TracingLabStatus {
        let failure;
        let (outcome, warnings) = match self {
            Self::Invalid(problems) => (Outcome::Invalid(problems), &[][..]),
            Self::Failed(e) => {
                failure = e.to_string();
                (Outcome::Failed(&failure), &[][..])
            }
            Self::Applied {
                components,
                warnings,
            } => (Outcome::Applied(components), &warnings[..]),
        };
        status::compute(lab, lab_ref, outcome, warnings, Time(Timestamp::now()))
    }

    /// When to look at the lab again.
    fn next(self) -> Result<Action, Error> {
        match self {
            // Only a new spec can fix an invalid one.
            Self::Invalid(problems) => {
                tracing::info!(problems = problems.len(), "invalid spec");
                Ok(Action::await_change())
            }
            Self::Failed(e) => Err(e.into()),
            Self::Applied { warnings, .. } => {
                tracing::info!(warnings = warnings.len(), "reconciled");
                Ok(Action::requeue(RESYNC))
            }
        }
    }
}

/// Writes the reconciler's part of the status, unless it is what the lab already shows.
async fn write_status(
    ctx: &Context,
    lab: &TracingLab,
    lab_ref: &LabRef,
    new_status: &TracingLabStatus,
) -> Result<(), Error> {
    if lab.status.as_ref().map(status::reconciler_part).as_ref() == Some(new_status) {
        return Ok(());
    }
    let api: Api<TracingLab> = Api::namespaced(ctx.client.clone(), &lab_ref.namespace);
    let patch = json!({
        "apiVersion": TracingLab::api_version(&()),
        "kind": TracingLab::kind(&()),
        "status": new_status,
    });
    api.patch_status(
        &lab_ref.name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::Status)?;
    Ok(())
}

/// Warning events for what changed: the Degraded condition, and what blocks the components.
async fn warn_on_changes(ctx: &Context, lab: &TracingLab, new_status: &TracingLabStatus) {
    let old_status = lab.status.as_ref();
    let told = [
        (
            Topic::Degraded,
            degraded_message(old_status),
            degraded_message(Some(new_status)),
        ),
        (
            Topic::Blocked,
            old_status.and_then(|s| status::blocked(&s.components)),
            status::blocked(&new_status.components),
        ),
        // The status was written: a later failure to write it is news again.
        (Topic::StatusWrite, None, None),
    ];
    for (topic, shown, now) in told {
        warn_on_change(ctx, lab, topic, shown, now).await;
    }
}

/// Reason and message of a True Degraded condition.
fn degraded_message(status: Option<&TracingLabStatus>) -> Option<(String, String)> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == status::DEGRADED && c.status == "True")
        .map(|c| (c.reason.clone(), c.message.clone()))
}

/// Publishes `now` as a Warning event unless it is what the lab was last told on `topic`: what
/// this process last published, or after a restart what the lab's status shows (`shown`).
async fn warn_on_change(
    ctx: &Context,
    lab: &TracingLab,
    topic: Topic,
    shown: Option<(String, String)>,
    now: Option<(String, String)>,
) {
    let before = ctx
        .told
        .lock()
        .expect("told map poisoned")
        .entry(ObjectRef::from(lab))
        .or_default()
        .insert(topic, now.clone())
        .unwrap_or(shown);
    if now != before
        && let Some((reason, message)) = now
    {
        publish(ctx, lab, EventType::Warning, &reason, message).await;
    }
}

async fn publish(ctx: &Context, lab: &TracingLab, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        // The Events API caps notes at 1 kB.
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &lab.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish event");
    }
}

fn error_policy(lab: Arc<TracingLab>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.shared.errors.inc();
    let failures = {
        let mut map = ctx.failures.lock().expect("failure map poisoned");
        let n = map.entry(ObjectRef::from(&*lab)).or_insert(0);
        *n += 1;
        *n
    };
    let delay = retry_in(error, failures);
    tracing::warn!(error = %error, failures, retry_in_s = delay.as_secs(), "reconcile failed");
    if let Error::Status(_) = error {
        // Apply failures already produced a Degraded condition and an event; this one could not.
        let told = Some(("StatusUpdateFailed".to_owned(), error.to_string()));
        tokio::spawn(
            async move { warn_on_change(&ctx, &lab, Topic::StatusWrite, None, told).await },
        );
    }
    Action::requeue(delay)
}

/// When to try a lab again after its `failures`-th failure in a row: 2 s, 4 s, 8 s, ... up to five
/// minutes; but an apply the API server refused as invalid is refused again until something
/// changes, usually the lab (which reconciles at once), sometimes another object (a node port
/// another lab frees), so it is looked at again only at the resync.
fn retry_in(error: &Error, failures: u32) -> Duration {
    match error {
        Error::Apply(e) if e.refused() => RESYNC,
        _ => Duration::from_secs(2u64.saturating_pow(failures.min(16))).min(MAX_BACKOFF),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_failed(code: u16) -> Error {
        Error::Apply(ApplyError(vec![apply::failed(code)]))
    }

    #[test]
    fn transient_failures_back_off_and_refusals_wait_for_the_resync() {
        let transient = apply_failed(503);
        assert_eq!(retry_in(&transient, 1), Duration::from_secs(2));
        assert_eq!(retry_in(&transient, 3), Duration::from_secs(8));
        assert_eq!(retry_in(&transient, 40), MAX_BACKOFF);
        assert_eq!(retry_in(&apply_failed(422), 1), RESYNC);
    }
}
