//! The real single-node Kubernetes of the harness ([`RealNode`]): pods run as the lab's do (a
//! FROM-scratch image, UID 1000, read-only root filesystem), a Service's name resolves through
//! CoreDNS from inside a pod, a NodePort answers from the host, and a dropped node leaves nothing
//! behind, so that the next one starts on a clean host.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, LogParams, PostParams};
use serde_json::json;
use tracing_lab_tests::node::{self, Footprint, NETCHECK_IMAGE, RealNode};
use tracing_lab_tests::poll::eventually;

const NAMESPACE: &str = "default";
const TIMEOUT: Duration = Duration::from_secs(90);

/// A pod of the netcheck image as the lab runs its containers: non-root, read-only root
/// filesystem, no capabilities.
fn netcheck_pod(name: &str, args: &[&str], restart: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": restart,
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": true},
            "containers": [{
                "name": "netcheck",
                "image": NETCHECK_IMAGE,
                "imagePullPolicy": "Never",
                "args": args,
                "ports": [{"containerPort": 8080}],
                "securityContext": {
                    "readOnlyRootFilesystem": true,
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]},
                },
                "resources": {"limits": {"memory": "32Mi", "cpu": "200m"}},
            }],
        },
    }))
    .expect("a valid Pod")
}

async fn run_node_checks(node: &RealNode) {
    node.import_images(&node::image_archive("netcheck").unwrap())
        .await
        .unwrap();
    let client = node.client();
    let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
    let services = Api::<Service>::namespaced(client.clone(), NAMESPACE);

    let web = netcheck_pod("web", &["serve", ":8080"], "Always");
    pods.create(&PostParams::default(), &web).await.unwrap();
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "web"},
            "ports": [{"port": 8080, "targetPort": 8080}],
        },
    }))
    .unwrap();
    let service = services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    let spec = service.spec.unwrap();
    let node_port = spec.ports.unwrap()[0].node_port.unwrap();
    let cluster_ip: Ipv4Addr = spec.cluster_ip.unwrap().parse().unwrap();

    eventually("pod web Ready", TIMEOUT, || async {
        let pod = pods.get("web").await.map_err(|e| e.to_string())?;
        let status = pod.status.unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready
            .then_some(())
            .ok_or_else(|| format!("{:?}", status.container_statuses))
    })
    .await;

    // From inside a pod: the Service's name through CoreDNS, then the Service itself.
    let probe = netcheck_pod(
        "probe",
        &[
            "probe",
            "web.default.svc.cluster.local",
            "http://web.default.svc.cluster.local:8080/",
        ],
        "Never",
    );
    pods.create(&PostParams::default(), &probe).await.unwrap();
    let phase = eventually("pod probe done", TIMEOUT, || async {
        let pod = pods.get("probe").await.map_err(|e| e.to_string())?;
        match pod.status.and_then(|s| s.phase).as_deref() {
            Some(phase @ ("Succeeded" | "Failed")) => Ok(phase.to_owned()),
            other => Err(format!("phase {other:?}")),
        }
    })
    .await;
    let logs = pods.logs("probe", &LogParams::default()).await.unwrap();
    assert_eq!(phase, "Succeeded", "the probe pod said:\n{logs}");
    assert!(
        logs.contains(&format!(
            "resolved web.default.svc.cluster.local to [{cluster_ip}]"
        )),
        "{logs}"
    );
    // The server runs as UID 1000 and cannot write to its root filesystem.
    assert!(
        logs.contains("200 netcheck web uid=1000 rootfs=read-only"),
        "{logs}"
    );

    // From the host: the NodePort on the node's address.
    let url = format!("http://{}:{node_port}/", node.node_ip());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let body = eventually(&format!("GET {url}"), TIMEOUT, || async {
        let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
        response.text().await.map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(body, "netcheck web uid=1000 rootfs=read-only\n");

    // The kubelet's summary (what benchmarks read) has the pod's memory and CPU; its first
    // sample of a new pod can be all zeros.
    let summary = eventually("web's memory in /stats/summary", TIMEOUT, || async {
        let summary = node.stats_summary().await.map_err(|e| e.to_string())?;
        let pods = summary["pods"].as_array().cloned().unwrap_or_default();
        pods.into_iter()
            .find(|p| {
                p["podRef"]["name"] == "web" && p["memory"]["workingSetBytes"].as_u64() > Some(0)
            })
            .ok_or_else(|| "no memory figures for pod web yet".to_owned())
    })
    .await;
    let memory = summary["memory"]["workingSetBytes"].as_u64().unwrap();
    assert!(memory < 32 << 20, "{summary}");
    assert!(summary["cpu"]["usageCoreNanoSeconds"].is_u64(), "{summary}");

    // CoreDNS also answers the host through the kube-dns Service.
    assert_eq!(
        node.resolve("web.default.svc.cluster.local").await.unwrap(),
        [cluster_ip]
    );
}

#[tokio::test]
async fn a_real_node_runs_pods_resolves_services_and_leaves_nothing_behind() {
    let node = RealNode::start().await.unwrap();
    run_node_checks(&node).await;
    let footprint = node.footprint();
    eprintln!(
        "sysctls the node changed: {:?}",
        footprint.changed_sysctls()
    );
    drop(node);
    nothing_left(&footprint).await;

    // A second node right after the teardown starts on the clean host.
    let second = RealNode::start().await.unwrap();
    let footprint = second.footprint();
    drop(second);
    nothing_left(&footprint).await;
}

/// Veths and cgroups go asynchronously in the kernel: give them a moment.
async fn nothing_left(footprint: &Footprint) {
    eventually(
        "nothing left by the node",
        Duration::from_secs(10),
        || async {
            let left = footprint.leftovers();
            if left.is_empty() {
                Ok(())
            } else {
                Err(left.join("; "))
            }
        },
    )
    .await;
}
