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

/// One request that failed: what it was about (`Service demo-api`, `listing ConfigMaps`) and the
/// API server's answer, kept whole so that a refusal can be told from a transient failure.
#[derive(Debug)]
pub struct ObjectError {
    pub object: String,
    pub error: kube::Error,
}

impl std::fmt::Display for ObjectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, reason(&self.error))
    }
}

/// What failed, one line per object, e.g. `Service demo-api: provided port is already allocated`.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ApplyError(pub Vec<ObjectError>);

impl ApplyError {
    /// The API server refused every failed request as invalid (400, 422): sending them again
    /// unchanged is refused again.
    pub fn refused(&self) -> bool {
        self.0
            .iter()
            .all(|e| matches!(&e.error, kube::Error::Api(s) if s.code == 400 || s.code == 422))
    }
}

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
    let (cm, svc, sts, deploy) = match (cm, svc, sts, deploy) {
        (Ok(cm), Ok(svc), Ok(sts), Ok(deploy)) => (cm, svc, sts, deploy),
        (cm, svc, sts, deploy) => {
            let failures = [errors(cm), errors(svc), errors(sts), errors(deploy)];
            return Err(ApplyError(failures.into_iter().flatten().collect()));
        }
    };
    let selector = lab_selector(lab);
    let pruned = futures::join!(
        prune::<ConfigMap>(client, namespace, &selector, names(&cm)),
        prune::<Service>(client, namespace, &selector, names(&svc)),
        prune::<StatefulSet>(client, namespace, &selector, names(&sts)),
        prune::<Deployment>(client, namespace, &selector, names(&deploy)),
    );
    let errors: Vec<ObjectError> = [pruned.0, pruned.1, pruned.2, pruned.3]
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if !errors.is_empty() {
        return Err(ApplyError(errors));
    }
    Ok(Applied {
        deployments: deploy,
        stateful_sets: sts,
    })
}

fn errors<T>(r: Result<T, Vec<ObjectError>>) -> Vec<ObjectError> {
    r.err().unwrap_or_default()
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
) -> Result<Vec<K>, Vec<ObjectError>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(MANAGER).force();
    let results: Vec<Result<K, ObjectError>> = stream::iter(objs)
        .map(|obj| {
            let (api, params) = (&api, &params);
            async move {
                let name = obj.name_any();
                api.patch(&name, params, &Patch::Apply(&obj))
                    .await
                    .map_err(|error| ObjectError {
                        object: describe::<K>(&name),
                        error,
                    })
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
) -> Result<(), ObjectError>
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
        .map_err(|error| ObjectError {
            object: format!("listing {}s", K::kind(&())),
            error,
        })?;
    stream::iter(existing.items.into_iter().map(|o| o.name_any()).filter(|n| !keep.contains(n)))
        .map(Ok)
        .try_for_each_concurrent(CONCURRENCY, |name| {
            let api = &api;
            async move {
                tracing::info!(kind = K::kind(&()).as_ref(), %name, "pruning object the spec no longer wants");
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    Err(error) => Err(ObjectError {
                        object: format!("deleting {}", describe::<K>(&name)),
                        error,
                    }),
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

/// A request the API server answered with `code`, as an apply of `Service demo-api` gets it.
#[cfg(test)]
pub(crate) fn failed(code: u16) -> ObjectError {
    ObjectError {
        object: "Service demo-api".into(),
        error: kube::Error::Api(
            kube::core::Status::failure("provided port is already allocated", "Invalid")
                .with_code(code)
                .boxed(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_refused_as_invalid_are_a_refusal() {
        assert!(ApplyError(vec![failed(422)]).refused());
        assert!(ApplyError(vec![failed(422), failed(400)]).refused());
        // Forbidden, a conflict, an overloaded or unreachable server: a later try may pass.
        assert!(!ApplyError(vec![failed(422), failed(409)]).refused());
        assert!(!ApplyError(vec![failed(403)]).refused());
        assert!(!ApplyError(vec![failed(503)]).refused());
        assert_eq!(
            ApplyError(vec![failed(422), failed(422)]).to_string(),
            "Service demo-api: provided port is already allocated; \
             Service demo-api: provided port is already allocated"
        );
    }
}
