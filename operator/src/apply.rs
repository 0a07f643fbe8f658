//! Server-side apply of a rendered lab under one field manager, then pruning of what the spec no
//! longer wants.

use crate::render::Children;
use crate::render::common::{MANAGER, lab_selector};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::fmt::Debug;

/// Requests in flight per lab; bounded so labs changing together cannot flood the API server
/// (or the operator's memory with connections).
const CONCURRENCY: usize = 4;

/// The workloads as the API server returned them from the apply, status included.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    pub deployments: Vec<Deployment>,
    pub stateful_sets: Vec<StatefulSet>,
}

/// What failed, one line per object, e.g. `Service demo-api: provided port is already allocated`.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct ApplyError(pub Vec<String>);

/// Applies every child, and prunes the lab's objects that are not among them. Pruning only runs
/// when every apply succeeded, so a half-applied lab never loses objects.
pub async fn apply(
    client: &Client,
    namespace: &str,
    lab: &str,
    children: Children,
) -> Result<Applied, ApplyError> {
    // Kinds in dependency order (configuration before the pods that mount it), each kind a few
    // objects at a time: every request in flight costs a pooled connection to the API server.
    let cm = apply_kind(client, namespace, children.config_maps).await;
    let svc = apply_kind(client, namespace, children.services).await;
    let sts = apply_kind(client, namespace, children.stateful_sets).await;
    let deploy = apply_kind(client, namespace, children.deployments).await;
    let (Ok(cm), Ok(svc), Ok(sts), Ok(deploy)) = (&cm, &svc, &sts, &deploy) else {
        let failures = [errors(&cm), errors(&svc), errors(&sts), errors(&deploy)].concat();
        return Err(ApplyError(failures));
    };
    let selector = lab_selector(lab);
    let pruned = futures::join!(
        prune::<ConfigMap>(client, namespace, &selector, names(cm)),
        prune::<Service>(client, namespace, &selector, names(svc)),
        prune::<StatefulSet>(client, namespace, &selector, names(sts)),
        prune::<Deployment>(client, namespace, &selector, names(deploy)),
    );
    let errors: Vec<String> = [pruned.0, pruned.1, pruned.2, pruned.3]
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if !errors.is_empty() {
        return Err(ApplyError(errors));
    }
    Ok(Applied {
        deployments: deploy.clone(),
        stateful_sets: sts.clone(),
    })
}

fn errors<T>(r: &Result<T, Vec<String>>) -> Vec<String> {
    r.as_ref().err().cloned().unwrap_or_default()
}

fn names<K: Resource>(objs: &[K]) -> BTreeSet<String> {
    objs.iter().filter_map(|o| o.meta().name.clone()).collect()
}

fn describe<K: Resource<DynamicType = ()>>(name: &str) -> String {
    format!("{} {name}", K::kind(&()))
}

async fn apply_kind<K>(
    client: &Client,
    namespace: &str,
    objs: Vec<K>,
) -> Result<Vec<K>, Vec<String>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(MANAGER).force();
    let results: Vec<Result<K, String>> = stream::iter(objs)
        .map(|obj| {
            let (api, params) = (&api, &params);
            async move {
                let name = obj.name_any();
                api.patch(&name, params, &Patch::Apply(&obj))
                    .await
                    .map_err(|e| format!("{}: {}", describe::<K>(&name), reason(&e)))
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let (ok, err): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    if err.is_empty() {
        Ok(ok.into_iter().filter_map(Result::ok).collect())
    } else {
        Err(err.into_iter().filter_map(Result::err).collect())
    }
}

async fn prune<K>(
    client: &Client,
    namespace: &str,
    selector: &str,
    keep: BTreeSet<String>,
) -> Result<(), String>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let existing = api
        .list_metadata(&ListParams::default().labels(selector))
        .await
        .map_err(|e| format!("listing {}s: {}", K::kind(&()), reason(&e)))?;
    stream::iter(existing.items.into_iter().map(|o| o.name_any()).filter(|n| !keep.contains(n)))
        .map(Ok)
        .try_for_each_concurrent(CONCURRENCY, |name| {
            let api = &api;
            async move {
                tracing::info!(kind = K::kind(&()).as_ref(), %name, "pruning object the spec no longer wants");
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    Err(e) => Err(format!("deleting {}: {}", describe::<K>(&name), reason(&e))),
                }
            }
        })
        .await
}

/// The API server's own message when there is one: it names the field at fault.
pub fn reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}
