//! Redis: the store the services write orders to. Nothing is persisted (a teaching lab).

use super::common::{LabRef, RunAs, container, container_port, pod_spec, resources, scratch};
use super::workload::{Component, deployment, port, service};
use crate::crd::ComponentSpec;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ExecAction, Probe, Service};

pub const IMAGE: &str = "redis:8.6.3-alpine";
pub const REDIS: Component = Component {
    suffix: "redis",
    app: "redis",
};
pub const PORT: i32 = 6379;
/// The image's `redis` user (999) and group (1000 in the Alpine image).
const USER: RunAs = RunAs {
    uid: 999,
    gid: 1000,
};

pub fn service_(lab: &LabRef) -> Service {
    service(lab, REDIS.suffix, REDIS, vec![port("redis", PORT)])
}

pub fn deployment_(lab: &LabRef, spec: &ComponentSpec) -> Deployment {
    let (data_v, data_m) = scratch("data", "/data");
    let ping = || Probe {
        exec: Some(ExecAction {
            command: Some(vec!["redis-cli".into(), "ping".into()]),
        }),
        period_seconds: Some(10),
        ..Default::default()
    };
    let mut c = container(
        "redis",
        spec.image.as_deref().unwrap_or(IMAGE),
        "IfNotPresent",
    );
    c.args = Some(
        [
            "redis-server",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]
        .map(String::from)
        .to_vec(),
    );
    c.ports = Some(vec![container_port("redis", PORT)]);
    c.volume_mounts = Some(vec![data_m]);
    c.resources = Some(resources(
        spec.resources.as_ref(),
        ("50m", "64Mi"),
        ("500m", "256Mi"),
    ));
    c.readiness_probe = Some(ping());
    c.liveness_probe = Some(ping());
    let pod = pod_spec(vec![c], vec![data_v], USER);
    deployment(lab, REDIS, Some(1), pod, None)
}
