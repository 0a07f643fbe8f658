//! A REAL single-node Kubernetes made of host processes, for end-to-end tests of the lab as a
//! student's cluster runs it: etcd and kube-apiserver (as [`TestCluster`]),
//! kube-controller-manager, kube-scheduler, containerd with its CRI plugin, kubelet, kube-proxy
//! (iptables mode), the CNI bridge plugins and CoreDNS (a Deployment in `kube-system` behind the
//! `kube-dns` Service at [`CLUSTER_DNS`], the address the kubelet gives pods).
//!
//! Programs: the Kubernetes binaries of `tests/env/kube`, the CNI plugins and images of
//! `tests/env/node` (CoreDNS, the pause image, [`NETCHECK_IMAGE`]), and Debian's containerd,
//! runc, `containerd-shim-runc-v2` and `ctr` (package `docker.io`). Nothing is pulled: images come
//! in as docker-archive tarballs ([`RealNode::import_images`]).
//!
//! **One node per machine at a time** (a lock file enforces it): a node changes host-wide state
//! that a second one would share — iptables chains (`KUBE-*`, `CNI-*`), the CNI bridge
//! [`BRIDGE`], the `/kubepods` cgroups, host sysctls. Its ports are free ports where a component
//! lets them be chosen (etcd, the API server, the kubelet, the controller manager, the scheduler,
//! kube-proxy's health and metrics), not the defaults 2379/2380, 6443, 10250, 10257, 10259,
//! 10249/10256. Everything else is private to a temporary folder: containerd's root, state,
//! socket and runc root, the kubelet's root, certificate and pod-log folders, the CNI
//! configuration and IP leases.
//!
//! Dropping the node stops it completely: processes by pid (containers with `runc delete
//! --force`, then their shims), mounts under its folder, the `/kubepods` cgroups, iptables chains
//! (`kube-proxy --cleanup`, then any `KUBE-*`/`CNI-*` chain left), the bridge, the CNI plugins'
//! cache entries, the kubelet's `/var/log/containers` links, and the host sysctls the kubelet,
//! kube-proxy and the bridge plugin set, restored to the values recorded at start. A node whose
//! test process was killed before it could drop is cleaned up by the next [`RealNode::start`].
//! [`Footprint::leftovers`] tells what a stopped node left.
//!
//! Settings the test machines need, each commented where it is set: `failCgroupV1: false`
//! (cgroup v1), the `cgroupfs` driver (containerd 1.6 cannot tell the kubelet its driver),
//! containerd's `restrict_oom_score_adj` (root without `CAP_SYS_RESOURCE`), the CNI `firewall`
//! plugin (a Docker engine's FORWARD policy DROP). Nothing in the lab changes for them.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::serde::{Serialize, de::DeserializeOwned};
use kube::api::{Api, PostParams};
use kube::{Client, Resource};
use nix::fcntl::{Flock, FlockArg};
use serde_json::{Value, json};

use crate::apiserver::{ApiServerOptions, Pki, TestCluster};
use crate::{assets, poll, ports, process::ChildProcess, procfs};

/// The node's name (`kubectl get nodes`).
pub const NODE_NAME: &str = "tracing-lab-node";
/// The Service network; the API server's `kubernetes` Service is its first address.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The `kube-dns` Service's address, the nameserver of every pod.
pub const CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// The cluster's pod network, and the node's share of it.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
pub const POD_SUBNET: &str = "10.244.0.0/24";
/// The Linux bridge the CNI `bridge` plugin connects pods to.
pub const BRIDGE: &str = "tlnode0";
/// The CNI network's name (also the prefix of the CNI plugins' cache entries).
const CNI_NETWORK: &str = "tracing-lab-node";
/// containerd's sandbox image; `tests/env/node/build.sh` builds it.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10.1";
pub const COREDNS_IMAGE: &str = "tracing-lab.test/coredns:1.15.0";
/// A FROM-scratch image whose entrypoint, `/netcheck`, serves HTTP (`serve ADDR`, answering
/// `netcheck HOST uid=UID rootfs=read-only|writable`) or probes DNS and HTTP from a pod
/// (`probe NAME URL`); for tests (import it with [`image_archive`]`("netcheck")`).
pub const NETCHECK_IMAGE: &str = "tracing-lab.test/netcheck:1";

/// The iptables chain that rejects traffic for the Service and pod networks that kube-proxy did
/// not translate, so that it is never routed off the machine (e.g. before kube-proxy has synced).
const GUARD_CHAIN: &str = "TRACING-LAB-NODE";
/// Chains a node creates, removed at teardown: kube-proxy's and the kubelet's, the CNI plugins',
/// and the guard.
const CHAIN_PREFIXES: [&str; 3] = ["KUBE-", "CNI-", GUARD_CHAIN];
/// Host sysctls that the kubelet, kube-proxy or the bridge plugin may set, restored at teardown.
const SYSCTLS: [&str; 13] = [
    "kernel.panic",
    "kernel.panic_on_oops",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
];
/// Held while a node runs: one node per machine.
const LOCK_FILE: &str = "/run/tracing-lab-node.lock";
/// What a running node must undo (its folder, the sysctls as they were): read by the next start
/// if the node's process died before teardown.
const STATE_FILE: &str = "/run/tracing-lab-node.json";
/// The kubelet's links to container logs (a fixed path in kubelet 1.35).
const CONTAINER_LOG_LINKS: &str = "/var/log/containers";
/// The CNI library's result cache, a fixed path in containerd 1.6.
const CNI_CACHE: &str = "/var/lib/cni";
/// The kubelet's device-plugin socket, a fixed path whatever its `--root-dir`.
const DEVICE_PLUGIN_SOCKET: &str = "/var/lib/kubelet/device-plugins/kubelet.sock";
/// Folders the node's programs create at fixed paths: removed at teardown, once the node's own
/// files in them are, if the node created them and they are empty.
const FIXED_DIRS: [&str; 3] = [CONTAINER_LOG_LINKS, CNI_CACHE, "/var/lib/kubelet"];
/// Where containerd 1.6 puts its shims' sockets, whatever its state folder.
const SHIM_SOCKETS: &str = "/run/containerd/s";

const CONTAINERD_TIMEOUT: Duration = Duration::from_secs(30);
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(120);
const COREDNS_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(250);

/// A running single-node cluster; stopped and cleaned up on drop (see the module docs).
pub struct RealNode {
    // Fields drop in order: the kubelet first (it restarts containers), containerd after the
    // node's other programs, the host clean-up last, once every process of the node is dead.
    kubelet: ChildProcess,
    kube_proxy: ChildProcess,
    scheduler: ChildProcess,
    controller_manager: ChildProcess,
    containerd: ChildProcess,
    cluster: TestCluster,
    node_ip: String,
    host: Host,
}

impl RealNode {
    /// Starts every component and returns once the node is Ready, the `default` namespace has
    /// its `default` ServiceAccount and CoreDNS answers at [`CLUSTER_DNS`] (through kube-proxy).
    pub async fn start() -> Result<Self> {
        let started = Instant::now();
        let node_ip = node_ip()?;
        // Declared first, so that it drops last when a step below fails.
        let host = Host::claim()?;
        let paths = host.paths.clone();
        paths.write_configs()?;
        host.install_guard()?;

        let mut containerd = paths.spawn_containerd()?;
        let socket = paths.containerd_socket();
        containerd
            .wait_until("answering on its socket", CONTAINERD_TIMEOUT, || {
                ctr_version(&socket)
            })
            .await?;
        let images = async {
            for image in ["pause", "coredns"] {
                import(&socket, &image_archive(image)?).await?;
            }
            anyhow::Ok(())
        };
        let (cluster, images) =
            tokio::join!(TestCluster::start_with(apiserver_options(node_ip)), images);
        let cluster = cluster?;
        images?;

        let mut controller_manager =
            spawn_controller_manager(&cluster, &paths.dir.join("volume-plugins"))?;
        let scheduler = spawn_scheduler(&cluster)?;
        let mut kubelet = paths.spawn_kubelet(&cluster, node_ip)?;
        let kube_proxy = paths.spawn_kube_proxy(&cluster)?;
        install_coredns(cluster.client()).await?;

        let client = cluster.client();
        kubelet
            .wait_until("the node Ready", NODE_READY_TIMEOUT, || {
                node_ready(client.clone())
            })
            .await?;
        let ready = started.elapsed();
        controller_manager
            .wait_until(
                "the default ServiceAccount of namespace default",
                NODE_READY_TIMEOUT,
                || default_service_account(client.clone(), "default"),
            )
            .await?;
        let node = Self {
            kubelet,
            kube_proxy,
            scheduler,
            controller_manager,
            containerd,
            cluster,
            node_ip: node_ip.to_string(),
            host,
        };
        node.wait_coredns().await?;
        eprintln!(
            "node: Ready {:.1} s after start, CoreDNS answering at {CLUSTER_DNS} after {:.1} s",
            ready.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        Ok(node)
    }

    /// Waits until CoreDNS's Deployment is ready and it resolves the `kubernetes` Service through
    /// the `kube-dns` Service (which also shows that kube-proxy has synced).
    async fn wait_coredns(&self) -> Result<()> {
        let deployments = Api::<Deployment>::namespaced(self.client(), "kube-system");
        let answered = poll::within(COREDNS_TIMEOUT, POLL, async || {
            match deployments.get("coredns").await {
                Ok(d) if d.status.as_ref().and_then(|s| s.ready_replicas) == Some(1) => {
                    match resolve(CLUSTER_DNS, "kubernetes.default.svc.cluster.local").await {
                        Ok(ips) if ips == [Ipv4Addr::new(10, 96, 0, 1)] => Ok(()),
                        Ok(ips) => Err(anyhow!("kubernetes.default resolved to {ips:?}")),
                        Err(err) => Err(err.context("CoreDNS ready, no answer through kube-dns")),
                    }
                }
                Ok(d) => Err(anyhow!("coredns Deployment not ready: {:?}", d.status)),
                Err(err) => Err(anyhow!(err).context("reading the coredns Deployment")),
            }
        })
        .await;
        if let Err(last) = answered {
            let pods = self.kubectl_text(&["get", "pods", "-A", "-o", "wide"]);
            let events = self.kubectl_text(&["get", "events", "-n", "kube-system"]);
            bail!(
                "CoreDNS not answering within {COREDNS_TIMEOUT:?}: {last:#}\n{pods}\n{events}\n\
                 kube-proxy log:\n{}",
                self.kube_proxy.log_tail(20)
            );
        }
        Ok(())
    }

    /// A client authenticated as the admin (group `system:masters`).
    pub fn client(&self) -> Client {
        self.cluster.client()
    }

    /// The node's name, [`NODE_NAME`] (for `/api/v1/nodes/NAME/proxy/...`).
    pub fn node_name(&self) -> &str {
        NODE_NAME
    }

    /// The admin's kubeconfig, for kubectl and helm (`KUBECONFIG`).
    pub fn kubeconfig(&self) -> &Path {
        self.cluster.kubeconfig()
    }

    /// The control plane (API server, etcd): namespaces, CRDs, ServiceAccount tokens.
    pub fn cluster(&self) -> &TestCluster {
        &self.cluster
    }

    /// The host address the node registers as its InternalIP: NodePorts answer on it from the
    /// host (`http://NODE_IP:NODE_PORT`), and the API server listens on it.
    pub fn node_ip(&self) -> &str {
        &self.node_ip
    }

    /// containerd's socket (`ctr --address SOCKET -n k8s.io ...`).
    pub fn containerd_socket(&self) -> PathBuf {
        self.host.paths.containerd_socket()
    }

    /// Imports a docker-archive tarball (`docker save`, several images allowed) into
    /// containerd's `k8s.io` namespace, where the kubelet finds its images. Pods must then use
    /// `imagePullPolicy: Never` or `IfNotPresent` (nothing can be pulled).
    pub async fn import_images(&self, archive: &Path) -> Result<()> {
        import(&self.containerd_socket(), archive).await
    }

    /// The kubelet's `/stats/summary` (through the API server's node proxy): per pod and
    /// container `memory.workingSetBytes`, `cpu.usageNanoCores`, ...
    pub async fn stats_summary(&self) -> Result<Value> {
        let path = format!("/api/v1/nodes/{NODE_NAME}/proxy/stats/summary");
        let request = axum::http::Request::get(&path).body(Vec::new())?;
        let text = self
            .client()
            .request_text(request)
            .await
            .with_context(|| format!("GET {path}"))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Creates namespace `name` and waits for its `default` ServiceAccount (pods can be created
    /// in it only then).
    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        self.cluster.create_namespace(name).await?;
        let client = self.client();
        let started = Instant::now();
        while let Err(err) = default_service_account(client.clone(), name).await {
            ensure!(
                started.elapsed() < NODE_READY_TIMEOUT,
                "namespace {name}: {err:#}"
            );
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// The addresses (A records) of `name` from the cluster's DNS, asked from the host.
    pub async fn resolve(&self, name: &str) -> Result<Vec<Ipv4Addr>> {
        resolve(CLUSTER_DNS, name).await
    }

    /// What is needed to check, after the node is dropped, that it left nothing behind.
    pub fn footprint(&self) -> Footprint {
        let mut processes: Vec<u32> = [
            &self.kubelet,
            &self.kube_proxy,
            &self.scheduler,
            &self.controller_manager,
            &self.containerd,
        ]
        .iter()
        .filter_map(|p| p.pid())
        .collect();
        processes.extend(shim_pids(&self.host.paths.containerd_socket()));
        processes.extend(kubepods_pids());
        Footprint {
            dir: self.host.paths.dir.clone(),
            processes: processes
                .into_iter()
                .filter_map(|pid| Some((pid, procfs::start_time(pid)?)))
                .collect(),
            sysctls: self.host.sysctls.clone(),
            shim_sockets: shim_sockets(&self.host.paths),
            created: self.host.paths.created.clone(),
            veths: bridge_ports(),
            changed_sysctls: self
                .host
                .sysctls
                .iter()
                .filter_map(|(key, before)| {
                    let now = read_sysctl(key)?;
                    (&now != before).then(|| format!("{key}: {before} -> {now}"))
                })
                .collect(),
        }
    }

    /// The node's programs, for their logs and pids.
    pub fn processes(&mut self) -> [&mut ChildProcess; 5] {
        [
            &mut self.kubelet,
            &mut self.kube_proxy,
            &mut self.scheduler,
            &mut self.controller_manager,
            &mut self.containerd,
        ]
    }

    /// `kubectl ARGS` against the node, its output or its error, for diagnostics.
    fn kubectl_text(&self, args: &[&str]) -> String {
        let Ok(kubectl) = assets::find("kubectl") else {
            return "(no kubectl)".to_owned();
        };
        match Command::new(kubectl)
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .output()
        {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(err) => format!("(kubectl: {err})"),
        }
    }
}

/// The docker-archive `name.tar` that `tests/env/node/build.sh` wrote (`pause`, `coredns`,
/// `netcheck`).
pub fn image_archive(name: &str) -> Result<PathBuf> {
    let path = assets::find_dir("node-images")?.join(format!("{name}.tar"));
    ensure!(
        path.is_file(),
        "{} missing: run `bash tests/env/setup.sh` first",
        path.display()
    );
    Ok(path)
}

/// What a node had running and changed, to check after its teardown.
#[derive(Debug, Clone)]
pub struct Footprint {
    dir: PathBuf,
    /// (pid, start time): a pid that is reused later is not the node's process.
    processes: Vec<(u32, u64)>,
    sysctls: BTreeMap<String, String>,
    shim_sockets: Vec<PathBuf>,
    created: Vec<PathBuf>,
    /// The pods' host-side veth interfaces.
    veths: Vec<String>,
    /// The recorded sysctls that the running node had changed, as `KEY: BEFORE -> NOW`.
    changed_sysctls: Vec<String>,
}

impl Footprint {
    /// The sysctls that the node had changed when this footprint was taken (teardown restores
    /// them), as `KEY: BEFORE -> NOW`.
    pub fn changed_sysctls(&self) -> &[String] {
        &self.changed_sysctls
    }

    /// Everything the node left behind, described; empty after a complete teardown.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for (pid, started) in &self.processes {
            if procfs::start_time(*pid) == Some(*started) {
                left.push(format!("process {pid} ({}) runs", comm(*pid)));
            }
        }
        for pid in kubepods_pids() {
            left.push(format!("process {pid} ({}) in /kubepods runs", comm(pid)));
        }
        if self.dir.exists() {
            left.push(format!("folder {} exists", self.dir.display()));
        }
        for mount in mounts_under(&self.dir) {
            left.push(format!("mount {}", mount.display()));
        }
        for socket in &self.shim_sockets {
            if socket.exists() {
                left.push(format!("shim socket {}", socket.display()));
            }
        }
        if Path::new("/sys/class/net").join(BRIDGE).exists() {
            left.push(format!("bridge {BRIDGE} exists"));
        }
        for veth in &self.veths {
            if Path::new("/sys/class/net").join(veth).exists() {
                left.push(format!("interface {veth} exists"));
            }
        }
        for iptables in ["iptables", "ip6tables"] {
            for chain in our_chains(iptables) {
                left.push(format!("{iptables} chain {chain}"));
            }
        }
        for cgroup in kubepods_cgroups() {
            left.push(format!("cgroup {}", cgroup.display()));
        }
        for (key, value) in &self.sysctls {
            let now = read_sysctl(key).unwrap_or_default();
            if &now != value {
                left.push(format!("sysctl {key} = {now}, was {value}"));
            }
        }
        for link in container_log_links(&self.dir) {
            left.push(format!("log link {}", link.display()));
        }
        for dir in &self.created {
            if dir.exists() {
                left.push(format!("folder {} exists", dir.display()));
            }
        }
        left
    }
}

/// The host side of a node: the lock, its folder and the recorded sysctls. Dropping it undoes
/// everything the node did to the host (its processes must already be dead).
struct Host {
    paths: Paths,
    sysctls: BTreeMap<String, String>,
    /// Whether teardown says how long it took (not for the clean-up after a dead node).
    report: bool,
    /// The node lock (none for the clean-up after a dead node, done under the new node's lock).
    _lock: Option<Flock<File>>,
}

impl Host {
    /// Takes the machine's node lock, cleans up after a node whose process died, records the
    /// sysctls and creates the node's folder.
    fn claim() -> Result<Self> {
        let lock = File::create(LOCK_FILE).with_context(|| format!("creating {LOCK_FILE}"))?;
        let Ok(lock) = Flock::lock(lock, FlockArg::LockExclusiveNonblock) else {
            bail!(
                "another RealNode runs on this machine ({LOCK_FILE} is locked): one at a time, \
                 as nodes share iptables, the CNI bridge, the /kubepods cgroups and sysctls"
            );
        };
        if let Ok(text) = std::fs::read_to_string(STATE_FILE) {
            let state: Value = serde_json::from_str(&text).unwrap_or_default();
            if let Some(dir) = state["dir"].as_str() {
                eprintln!("node: cleaning up after a node that was not stopped ({dir})");
                let sysctls = serde_json::from_value(state["sysctls"].clone()).unwrap_or_default();
                let created = serde_json::from_value(state["created"].clone()).unwrap_or_default();
                let host = Host {
                    paths: Paths {
                        dir: PathBuf::from(dir),
                        created,
                    },
                    sysctls,
                    report: false,
                    _lock: None,
                };
                drop(host);
            }
            let _ = std::fs::remove_file(STATE_FILE);
        }
        let mut sysctls = BTreeMap::new();
        for key in SYSCTLS {
            if let Some(value) = read_sysctl(key) {
                sysctls.insert(key.to_owned(), value);
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("real-node-")
            .tempdir()?
            .keep();
        let paths = Paths {
            dir,
            created: FIXED_DIRS
                .iter()
                .map(PathBuf::from)
                .filter(|d| !d.exists())
                .collect(),
        };
        let state = json!({"dir": paths.dir, "sysctls": sysctls, "created": paths.created});
        std::fs::write(STATE_FILE, serde_json::to_vec_pretty(&state)?)?;
        Ok(Self {
            paths,
            sysctls,
            report: true,
            _lock: Some(lock),
        })
    }

    /// Puts [`GUARD_CHAIN`] in the filter table's OUTPUT and FORWARD chains (after the NAT of
    /// kube-proxy, so it sees only what was not translated).
    fn install_guard(&self) -> Result<()> {
        let iptables =
            |args: &[&str]| run_checked("iptables", &[&["-w", "-t", "filter"], args].concat());
        if iptables(&["-N", GUARD_CHAIN]).is_err() {
            iptables(&["-F", GUARD_CHAIN])?;
        }
        iptables(&["-A", GUARD_CHAIN, "-d", SERVICE_CIDR, "-j", "REJECT"])?;
        // In OUTPUT, `-o` is the device of the route before kube-proxy's DNAT: translated
        // packets (to a Service's pods) are let through by conntrack state instead.
        iptables(&[
            "-A",
            GUARD_CHAIN,
            "-d",
            CLUSTER_CIDR,
            "!",
            "-o",
            BRIDGE,
            "-m",
            "conntrack",
            "!",
            "--ctstate",
            "DNAT",
            "-j",
            "REJECT",
        ])?;
        for chain in ["OUTPUT", "FORWARD"] {
            if iptables(&["-C", chain, "-j", GUARD_CHAIN]).is_err() {
                iptables(&["-I", chain, "1", "-j", GUARD_CHAIN])?;
            }
        }
        Ok(())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let started = Instant::now();
        let problems = self.paths.clean_up(&self.sysctls);
        for problem in &problems {
            eprintln!("node teardown: {problem}");
        }
        if problems.is_empty() {
            let _ = std::fs::remove_file(STATE_FILE);
        }
        if self.report {
            eprintln!(
                "node: host cleaned up in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
}

/// The node's files, all under one folder.
#[derive(Clone)]
struct Paths {
    dir: PathBuf,
    /// The [`FIXED_DIRS`] that did not exist before the node.
    created: Vec<PathBuf>,
}

impl Paths {
    fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }
    fn containerd_config(&self) -> PathBuf {
        self.dir.join("containerd.toml")
    }
    fn containerd_state(&self) -> PathBuf {
        self.dir.join("containerd-state")
    }
    fn runc_root(&self) -> PathBuf {
        self.dir.join("runc")
    }
    fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni-conf")
    }
    fn kubelet_root(&self) -> PathBuf {
        self.dir.join("kubelet")
    }

    fn write_configs(&self) -> Result<()> {
        let dir = &self.dir;
        let cni_bin = assets::find_dir("cni")?;
        for plugin in ["bridge", "host-local", "loopback", "portmap", "firewall"] {
            ensure!(
                cni_bin.join(plugin).is_file(),
                "CNI plugin {plugin} missing in {}: run `bash tests/env/setup.sh` first",
                cni_bin.display()
            );
        }
        // Own root, state, socket, runc root and CNI folders: nothing shared with another
        // containerd (a Docker engine's). containerd 1.6 reads this version-2 format.
        let containerd = format!(
            r#"version = 2
root = "{dir}/containerd-root"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/containerd-opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # root lacks CAP_SYS_RESOURCE here: runc cannot lower a process's oom_score_adj.
  restrict_oom_score_adj = true
  # Network namespaces in the state folder, not /var/run/netns.
  netns_mounts_under_state_dir = true
  # As containerd 2 (and so most clusters) defaults: pods may bind ports < 1024 and ping.
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{runc_root}"
        SystemdCgroup = false
"#,
            dir = dir.display(),
            state = self.containerd_state().display(),
            socket = self.containerd_socket().display(),
            cni_bin = cni_bin.display(),
            cni_conf = self.cni_conf_dir().display(),
            runc_root = self.runc_root().display(),
        );
        std::fs::write(self.containerd_config(), containerd)?;

        // The firewall plugin accepts pod traffic in FORWARD whatever its policy (a Docker
        // engine sets DROP). Every plugin on the iptables backend, whose chains teardown removes.
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": true,
                    "ipMasq": true,
                    "ipMasqBackend": "iptables",
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": dir.join("cni-ipam"),
                        "ranges": [[{"subnet": POD_SUBNET}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "backend": "iptables", "capabilities": {"portMappings": true}},
                {"type": "firewall", "backend": "iptables"},
            ],
        });
        std::fs::create_dir_all(self.cni_conf_dir())?;
        std::fs::write(
            self.cni_conf_dir().join("10-tracing-lab-node.conflist"),
            serde_json::to_vec_pretty(&conflist)?,
        )?;
        Ok(())
    }

    fn spawn_containerd(&self) -> Result<ChildProcess> {
        let mut command = Command::new(assets::find("containerd")?);
        command.arg("--config").arg(self.containerd_config());
        ChildProcess::spawn("containerd", command)
    }

    fn spawn_kubelet(&self, cluster: &TestCluster, node_ip: Ipv4Addr) -> Result<ChildProcess> {
        // With systemd-resolved, /etc/resolv.conf names a loopback stub that pods cannot reach
        // (and CoreDNS's loop plugin would stop on): take the real upstreams then, as kubeadm does.
        let resolved = Path::new("/run/systemd/resolve/resolv.conf");
        let resolv_conf = if resolved.is_file() {
            resolved
        } else {
            Path::new("/etc/resolv.conf")
        };
        let config = json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            // This machine: cgroup v1 (kubelet 1.35 refuses it by default), containerd 1.6
            // (no RuntimeConfig RPC to learn the cgroup driver from).
            "failCgroupV1": false,
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": format!("unix://{}", self.containerd_socket().display()),
            "address": node_ip.to_string(),
            "port": ports::free_port(),
            "readOnlyPort": 0,
            "healthzPort": 0,
            // Only the API server (its kubelet client certificate) gets in.
            "authentication": {
                "anonymous": {"enabled": false},
                "webhook": {"enabled": false},
                "x509": {"clientCAFile": cluster.pki_file(Pki::CA_CERT)},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "clusterDomain": "cluster.local",
            "clusterDNS": [CLUSTER_DNS.to_string()],
            "resolvConf": resolv_conf,
            // Images cannot be pulled again: never collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
                "imagefs.inodesFree": "1%",
            },
            "podLogsDir": self.dir.join("pod-logs"),
            "volumePluginDir": self.dir.join("volume-plugins"),
            // Raising its own OOM priority needs CAP_SYS_RESOURCE.
            "oomScoreAdj": 0,
            "failSwapOn": false,
            "rotateCertificates": false,
            "serverTLSBootstrap": false,
        });
        let config_path = self.dir.join("kubelet.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let kubeconfig = cluster.kubeconfig_for_user(&format!("system:node:{NODE_NAME}"))?;
        let mut command = Command::new(assets::find("kubelet")?);
        command
            .arg("--config")
            .arg(&config_path)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--root-dir")
            .arg(self.kubelet_root())
            .arg("--cert-dir")
            .arg(self.dir.join("kubelet-pki"))
            .args(["--hostname-override", NODE_NAME])
            .arg(format!("--node-ip={node_ip}"));
        ChildProcess::spawn("kubelet", command)
    }

    fn spawn_kube_proxy(&self, cluster: &TestCluster) -> Result<ChildProcess> {
        let config = json!({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": cluster.kubeconfig_for_user("system:kube-proxy")?},
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": CLUSTER_CIDR,
            "healthzBindAddress": format!("127.0.0.1:{}", ports::free_port()),
            "metricsBindAddress": format!("127.0.0.1:{}", ports::free_port()),
            // Leave the host's conntrack table size and timeouts alone.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            // No NodePorts on 127.0.0.1, which would need route_localnet.
            "iptables": {"localhostNodePorts": false},
            "oomScoreAdj": 0,
        });
        let config_path = self.dir.join("kube-proxy.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let mut command = Command::new(assets::find("kube-proxy")?);
        command.arg("--config").arg(&config_path);
        ChildProcess::spawn("kube-proxy", command)
    }

    /// Undoes everything a node did to the host; its processes are dead already, except the
    /// containers and their shims. Returns what could not be undone.
    fn clean_up(&self, sysctls: &BTreeMap<String, String>) -> Vec<String> {
        let mut problems = Vec::new();
        let mut note = |what: &str, result: Result<()>| {
            if let Err(err) = result {
                problems.push(format!("{what}: {err:#}"));
            }
        };
        let sockets = shim_sockets(self);
        let sandboxes = self.sandbox_ids();
        note("containers", self.kill_containers());
        note("mounts", unmount_all(&self.dir));
        for socket in sockets {
            let _ = std::fs::remove_file(socket);
        }
        note("cgroups", remove_kubepods_cgroups());
        note("iptables", remove_chains());
        note("bridge", remove_bridge());
        note("CNI cache", remove_cni_cache(&sandboxes));
        note("log links", remove_log_links(&self.dir));
        if self
            .created
            .iter()
            .any(|d| d == Path::new("/var/lib/kubelet"))
        {
            let _ = std::fs::remove_file(DEVICE_PLUGIN_SOCKET);
        }
        for dir in &self.created {
            remove_empty_tree(dir);
        }
        for (key, value) in sysctls {
            note(&format!("sysctl {key}"), write_sysctl(key, value));
        }
        if mounts_under(&self.dir).is_empty() {
            note(
                "node folder",
                std::fs::remove_dir_all(&self.dir)
                    .or_else(|e| {
                        if e.kind() == std::io::ErrorKind::NotFound {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .with_context(|| format!("removing {}", self.dir.display())),
            );
        } else {
            problems.push(format!("{} still has mounts: kept", self.dir.display()));
        }
        problems
    }

    /// Kills every container (runc), any process left in `/kubepods`, and the shims.
    fn kill_containers(&self) -> Result<()> {
        let runc = assets::find("runc")?;
        let root = self.runc_root().join("k8s.io");
        if root.is_dir() {
            for entry in std::fs::read_dir(&root)? {
                let id = entry?.file_name();
                let out = Command::new(&runc)
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force"])
                    .arg(&id)
                    .output()?;
                ensure!(
                    out.status.success() || !root.join(&id).exists(),
                    "runc delete --force {id:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids: Vec<u32> = kubepods_pids()
                .into_iter()
                .chain(shim_pids(&self.containerd_socket()))
                .collect();
            if pids.is_empty() {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "processes {pids:?} survive SIGKILL"
            );
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The ids of the pod sandboxes containerd made (they name the CNI cache entries).
    fn sandbox_ids(&self) -> Vec<String> {
        let dir = self
            .dir
            .join("containerd-root/io.containerd.grpc.v1.cri/sandboxes");
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The CNI library's results of the node's sandboxes (`NETWORK-ID-IFNAME`).
fn remove_cni_cache(sandboxes: &[String]) -> Result<()> {
    let results = Path::new(CNI_CACHE).join("results");
    if let Ok(entries) = std::fs::read_dir(&results) {
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with(&format!("{CNI_NETWORK}-"))
                || sandboxes.iter().any(|id| name.contains(&format!("-{id}-")));
            if ours {
                std::fs::remove_file(entry.path())?;
            }
        }
    }
    Ok(())
}

/// The kubelet's links in `/var/log/containers` to the pod logs in `dir`.
fn remove_log_links(dir: &Path) -> Result<()> {
    for link in container_log_links(dir) {
        std::fs::remove_file(&link).with_context(|| link.display().to_string())?;
    }
    Ok(())
}

fn apiserver_options(node_ip: Ipv4Addr) -> ApiServerOptions {
    let users = [
        (format!("system:node:{NODE_NAME}"), "system:nodes"),
        ("system:kube-proxy".to_owned(), "system:authenticated"),
        (
            "system:kube-controller-manager".to_owned(),
            "system:authenticated",
        ),
        ("system:kube-scheduler".to_owned(), "system:authenticated"),
    ];
    ApiServerOptions {
        address: IpAddr::V4(node_ip),
        // The `kubernetes` Service's address and names, for pods (CoreDNS, the operator).
        extra_sans: [
            "IP:10.96.0.1",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
        .map(str::to_owned)
        .to_vec(),
        users: users
            .into_iter()
            .map(|(user, group)| (user, group.to_owned()))
            .collect(),
        kubelet_client_cert: true,
        extra_args: [
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            &format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            // The `kubernetes` Service's endpoints: this API server.
            "--endpoint-reconciler-type=lease",
            // `kubectl exec/logs` reach the kubelet at the node's InternalIP.
            "--kubelet-preferred-address-types=InternalIP,Hostname",
        ]
        .map(str::to_owned)
        .to_vec(),
    }
}

fn spawn_controller_manager(cluster: &TestCluster, flex_volume_dir: &Path) -> Result<ChildProcess> {
    let kubeconfig = cluster.kubeconfig_for_user("system:kube-controller-manager")?;
    let mut command = Command::new(assets::find("kube-controller-manager")?);
    command
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!(
            "--service-account-private-key-file={}",
            cluster.pki_file(Pki::SERVICE_ACCOUNT_KEY).display()
        ))
        .arg(format!(
            "--root-ca-file={}",
            cluster.pki_file(Pki::CA_CERT).display()
        ))
        .arg(format!(
            "--cluster-signing-cert-file={}",
            cluster.pki_file(Pki::CA_CERT).display()
        ))
        .arg(format!(
            "--cluster-signing-key-file={}",
            cluster.pki_file(Pki::CA_KEY).display()
        ))
        .args([
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            &format!("--secure-port={}", ports::free_port()),
            &format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--cluster-name=tracing-lab",
        ])
        // Not /usr/libexec/kubernetes/kubelet-plugins/volume/exec, which it would create.
        .arg(format!(
            "--flex-volume-plugin-dir={}",
            flex_volume_dir.display()
        ));
    ChildProcess::spawn("kube-controller-manager", command)
}

fn spawn_scheduler(cluster: &TestCluster) -> Result<ChildProcess> {
    let kubeconfig = cluster.kubeconfig_for_user("system:kube-scheduler")?;
    let mut command = Command::new(assets::find("kube-scheduler")?);
    command
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args([
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            &format!("--secure-port={}", ports::free_port()),
        ]);
    ChildProcess::spawn("kube-scheduler", command)
}

/// CoreDNS as kubeadm installs it: ServiceAccount, RBAC, Corefile, Deployment, `kube-dns`.
async fn install_coredns(client: Client) -> Result<()> {
    let ns = "kube-system";
    let labels = json!({"k8s-app": "kube-dns"});
    create::<ServiceAccount>(
        Api::namespaced(client.clone(), ns),
        json!({"metadata": {"name": "coredns", "namespace": ns}}),
    )
    .await?;
    create::<ClusterRole>(
        Api::all(client.clone()),
        json!({
            "metadata": {"name": "system:coredns"},
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                 "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                 "verbs": ["list", "watch"]},
            ],
        }),
    )
    .await?;
    create::<ClusterRoleBinding>(
        Api::all(client.clone()),
        json!({
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}],
        }),
    )
    .await?;
    let corefile = ".:53 {
    errors
    health
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
";
    create::<ConfigMap>(
        Api::namespaced(client.clone(), ns),
        json!({"metadata": {"name": "coredns", "namespace": ns}, "data": {"Corefile": corefile}}),
    )
    .await?;
    create::<Deployment>(
        Api::namespaced(client.clone(), ns),
        json!({
            "metadata": {"name": "coredns", "namespace": ns, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "priorityClassName": "system-cluster-critical",
                        "dnsPolicy": "Default",
                        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
                        "containers": [{
                            "name": "coredns",
                            "image": COREDNS_IMAGE,
                            "imagePullPolicy": "Never",
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "ports": [
                                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                            ],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "70Mi"},
                                "limits": {"memory": "170Mi"},
                            },
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/etc/coredns", "readOnly": true},
                            ],
                            "livenessProbe": {
                                "httpGet": {"path": "/health", "port": 8080},
                                "initialDelaySeconds": 60,
                                "failureThreshold": 5,
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": 8181},
                                "periodSeconds": 1,
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                                "readOnlyRootFilesystem": true,
                            },
                        }],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        }),
    )
    .await?;
    create::<Service>(
        Api::namespaced(client, ns),
        json!({
            "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
            "spec": {
                "clusterIP": CLUSTER_DNS.to_string(),
                "selector": labels,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            },
        }),
    )
    .await?;
    Ok(())
}

async fn create<K>(api: Api<K>, object: Value) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let object: K = serde_json::from_value(object)?;
    api.create(&PostParams::default(), &object)
        .await
        .with_context(|| format!("creating {} {name}", K::kind(&Default::default())))?;
    Ok(())
}

async fn node_ready(client: Client) -> Result<()> {
    let node = Api::<Node>::all(client)
        .get_opt(NODE_NAME)
        .await?
        .context("not registered")?;
    let conditions = node.status.and_then(|s| s.conditions).unwrap_or_default();
    let ready = conditions.iter().find(|c| c.type_ == "Ready");
    match ready {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => bail!(
            "Ready={}: {}",
            c.status,
            c.message.clone().unwrap_or_default()
        ),
        None => bail!("no Ready condition"),
    }
}

async fn default_service_account(client: Client, namespace: &str) -> Result<()> {
    Api::<ServiceAccount>::namespaced(client, namespace)
        .get_opt("default")
        .await?
        .map(|_| ())
        .with_context(|| format!("no ServiceAccount {namespace}/default yet"))
}

async fn ctr_version(socket: &Path) -> Result<()> {
    let out = tokio::process::Command::new(assets::find("ctr")?)
        .arg("--address")
        .arg(socket)
        .arg("version")
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

async fn import(socket: &Path, archive: &Path) -> Result<()> {
    let out = tokio::process::Command::new(assets::find("ctr")?)
        .arg("--address")
        .arg(socket)
        .args(["-n", "k8s.io", "images", "import"])
        .arg(archive)
        .output()
        .await
        .context("running ctr")?;
    ensure!(
        out.status.success(),
        "ctr images import {}: {}{}",
        archive.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The host's address for the node: the IPv4 address of the default route's interface, else
/// the first global IPv4 address.
fn node_ip() -> Result<Ipv4Addr> {
    let ip = |args: &[&str]| -> Result<String> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .context("running ip")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let route = ip(&["-4", "route", "show", "default"])?;
    let device = route
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .map(str::to_owned);
    let mut args = vec!["-4", "-o", "addr", "show", "scope", "global"];
    if let Some(device) = &device {
        args.extend(["dev", device]);
    }
    let addrs = ip(&args)?;
    addrs
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next()?.parse().ok())
        .context("no global IPv4 address on this host for the node (ip -4 addr)")
}

/// Asks `server` (UDP port 53) for the A records of `name`.
pub async fn resolve(server: Ipv4Addr, name: &str) -> Result<Vec<Ipv4Addr>> {
    let socket = tokio::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    socket.connect((server, 53)).await?;
    let id: u16 = rand::random();
    socket.send(&dns_query(id, name)).await?;
    let mut buf = [0u8; 1500];
    let len = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
        .await
        .with_context(|| format!("no answer from {server} within 2 s"))??;
    parse_a_records(&buf[..len], id)
}

fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut query = Vec::with_capacity(64);
    query.extend(id.to_be_bytes());
    query.extend([0x01, 0x00]); // recursion desired
    query.extend([0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.trim_end_matches('.').split('.') {
        query.push(label.len() as u8);
        query.extend(label.as_bytes());
    }
    query.push(0);
    query.extend([0, 1, 0, 1]); // type A, class IN
    query
}

fn parse_a_records(msg: &[u8], id: u16) -> Result<Vec<Ipv4Addr>> {
    let u16_at = |pos: usize| -> Result<u16> {
        let bytes = msg.get(pos..pos + 2).context("truncated DNS answer")?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    };
    let skip_name = |mut pos: usize| -> Result<usize> {
        loop {
            let len = *msg.get(pos).context("truncated DNS name")?;
            if len == 0 {
                return Ok(pos + 1);
            }
            if len & 0xc0 == 0xc0 {
                return Ok(pos + 2);
            }
            pos += 1 + usize::from(len);
        }
    };
    ensure!(u16_at(0)? == id, "DNS answer for another query");
    let rcode = msg[3] & 0x0f;
    ensure!(rcode == 0, "DNS rcode {rcode}");
    let questions = u16_at(4)?;
    let answers = u16_at(6)?;
    let mut pos = 12;
    for _ in 0..questions {
        pos = skip_name(pos)? + 4;
    }
    let mut ips = Vec::new();
    for _ in 0..answers {
        pos = skip_name(pos)?;
        let kind = u16_at(pos)?;
        let len = usize::from(u16_at(pos + 8)?);
        let data = msg
            .get(pos + 10..pos + 10 + len)
            .context("truncated DNS record")?;
        if kind == 1 && len == 4 {
            ips.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        pos += 10 + len;
    }
    Ok(ips)
}

fn run_checked(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

fn read_sysctl(key: &str) -> Option<String> {
    Some(
        std::fs::read_to_string(sysctl_path(key))
            .ok()?
            .trim()
            .to_owned(),
    )
}

fn write_sysctl(key: &str, value: &str) -> Result<()> {
    if read_sysctl(key).as_deref() == Some(value) {
        return Ok(());
    }
    std::fs::write(sysctl_path(key), value)?;
    Ok(())
}

/// Every process id in /proc.
fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Processes in a `/kubepods` cgroup: the node's containers.
fn kubepods_pids() -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|text| {
                text.lines().any(|line| {
                    let path = line.splitn(3, ':').nth(2).unwrap_or("");
                    path == "/kubepods" || path.starts_with("/kubepods/")
                })
            })
        })
        .collect()
}

/// The containerd shims serving the containerd at `socket` (`-address SOCKET` in their
/// command line).
fn shim_pids(socket: &Path) -> Vec<u32> {
    let socket = socket.to_string_lossy();
    all_pids()
        .into_iter()
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_shim = args
                .first()
                .is_some_and(|a| String::from_utf8_lossy(a).contains("containerd-shim"));
            is_shim
                && args
                    .windows(2)
                    .any(|w| w[0] == b"-address" && w[1] == socket.as_bytes())
        })
        .collect()
}

/// The sockets of the node's shims in [`SHIM_SOCKETS`] (each task's `address` file names it).
fn shim_sockets(paths: &Paths) -> Vec<PathBuf> {
    let tasks = paths
        .containerd_state()
        .join("io.containerd.runtime.v2.task");
    let mut sockets = Vec::new();
    for namespace in std::fs::read_dir(tasks).into_iter().flatten().flatten() {
        for task in std::fs::read_dir(namespace.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(address) = std::fs::read_to_string(task.path().join("address")) {
                let path = PathBuf::from(address.trim().trim_start_matches("unix://"));
                if path.starts_with(SHIM_SOCKETS) && !sockets.contains(&path) {
                    sockets.push(path);
                }
            }
        }
    }
    sockets
}

/// Field 22 of /proc/PID/stat: when the process started (tells a reused pid apart).
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_owned())
        .unwrap_or_default()
}

/// Mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|escaped| PathBuf::from(unescape_mount_path(escaped)))
        .filter(|path| path.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts.dedup();
    mounts
}

/// mountinfo writes space, tab, newline and backslash as `\OOO` octal escapes.
fn unescape_mount_path(escaped: &str) -> String {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4);
        if bytes[i] == b'\\' && octal.is_some_and(|o| o.iter().all(|b| (b'0'..=b'7').contains(b))) {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lazily unmounts everything at or under `dir` (container root filesystems, `/dev/shm` of
/// sandboxes, network namespaces, volumes, the kubelet's shared bind mount of its root).
fn unmount_all(dir: &Path) -> Result<()> {
    for _ in 0..10 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return Ok(());
        }
        for mount in mounts {
            let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let left = mounts_under(dir);
    ensure!(left.is_empty(), "still mounted: {left:?}");
    Ok(())
}

/// `/kubepods` in every cgroup hierarchy (v1: one per controller; v2: the unified one).
fn kubepods_cgroups() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut found = Vec::new();
    if root.join("kubepods").is_dir() {
        found.push(root.join("kubepods"));
    }
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let candidate = entry.path().join("kubepods");
        if candidate.is_dir() {
            found.push(candidate);
        }
    }
    found
}

/// Removes the `/kubepods` cgroup trees, children first (their processes are dead).
fn remove_kubepods_cgroups() -> Result<()> {
    fn remove_tree(dir: &Path) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                remove_tree(&entry.path())?;
            }
        }
        std::fs::remove_dir(dir)
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut last = None;
        for cgroup in kubepods_cgroups() {
            if let Err(err) = remove_tree(&cgroup) {
                last = Some(format!("{}: {err}", cgroup.display()));
            }
        }
        match last {
            None => return Ok(()),
            Some(err) if Instant::now() > deadline => bail!("removing {err}"),
            Some(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn is_ours(chain: &str) -> bool {
    CHAIN_PREFIXES
        .iter()
        .any(|prefix| chain.starts_with(prefix))
}

const TABLES: [&str; 4] = ["filter", "nat", "mangle", "raw"];

/// The node's chains (by prefix) in every table, as `TABLE/CHAIN`.
fn our_chains(iptables: &str) -> Vec<String> {
    let mut chains = Vec::new();
    for table in TABLES {
        let Ok(rules) = run_checked(iptables, &["-w", "-t", table, "-S"]) else {
            continue;
        };
        for line in rules.lines() {
            if let Some(chain) = line.strip_prefix("-N ")
                && is_ours(chain)
            {
                chains.push(format!("{table}/{chain}"));
            }
        }
    }
    chains
}

/// `kube-proxy --cleanup`, then every rule jumping to a chain of the node and those chains
/// themselves, in iptables and ip6tables.
fn remove_chains() -> Result<()> {
    if let Ok(kube_proxy) = assets::find("kube-proxy") {
        let _ = Command::new(kube_proxy).arg("--cleanup").output();
    }
    for iptables in ["iptables", "ip6tables"] {
        for table in TABLES {
            let Ok(rules) = run_checked(iptables, &["-w", "-t", table, "-S"]) else {
                continue;
            };
            let chains: Vec<&str> = rules
                .lines()
                .filter_map(|l| l.strip_prefix("-N "))
                .collect();
            let builtin: Vec<&str> = rules
                .lines()
                .filter_map(|l| l.strip_prefix("-P ")?.split(' ').next())
                .collect();
            // Jumps from the built-in chains, by rule number, last first.
            for chain in &builtin {
                let listing = run_checked(
                    iptables,
                    &["-w", "-t", table, "-L", chain, "-n", "--line-numbers"],
                )?;
                let numbers: Vec<String> = listing
                    .lines()
                    .skip(2)
                    .filter_map(|line| {
                        let mut words = line.split_whitespace();
                        let number = words.next()?;
                        let target = words.next()?;
                        is_ours(target).then(|| number.to_owned())
                    })
                    .collect();
                for number in numbers.iter().rev() {
                    run_checked(iptables, &["-w", "-t", table, "-D", chain, number])?;
                }
            }
            let ours: Vec<&str> = chains.into_iter().filter(|c| is_ours(c)).collect();
            for chain in &ours {
                run_checked(iptables, &["-w", "-t", table, "-F", chain])?;
            }
            for chain in &ours {
                run_checked(iptables, &["-w", "-t", table, "-X", chain])?;
            }
        }
    }
    Ok(())
}

/// Deletes the CNI bridge, after the pods' veths (which go with their network namespaces).
fn remove_bridge() -> Result<()> {
    let bridge = Path::new("/sys/class/net").join(BRIDGE);
    if !bridge.exists() {
        return Ok(());
    }
    let ports = bridge_ports();
    run_checked("ip", &["link", "delete", BRIDGE])?;
    let deadline = Instant::now() + Duration::from_secs(5);
    for port in ports {
        let path = Path::new("/sys/class/net").join(&port);
        while path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if path.exists() {
            run_checked("ip", &["link", "delete", &port])?;
        }
    }
    Ok(())
}

/// The interfaces attached to the CNI bridge (the pods' veths).
fn bridge_ports() -> Vec<String> {
    let ports = Path::new("/sys/class/net").join(BRIDGE).join("brif");
    std::fs::read_dir(ports)
        .map(|entries| {
            entries
                .filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Links in `/var/log/containers` that point into `dir`.
fn container_log_links(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(CONTAINER_LOG_LINKS)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            std::fs::read_link(entry.path()).is_ok_and(|target| target.starts_with(dir))
        })
        .map(|entry| entry.path())
        .collect()
}

/// Removes `dir` and its sub-folders if they hold no file.
fn remove_empty_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_answers_are_parsed() {
        let query = dns_query(0x1234, "kube-dns.kube-system.svc.cluster.local");
        // The answer repeats the question and adds an A record whose name points at it.
        let mut answer = query.clone();
        answer[2] = 0x81;
        answer[3] = 0x80;
        answer[7] = 1;
        answer.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 96, 0, 10]);
        assert_eq!(
            parse_a_records(&answer, 0x1234).unwrap(),
            [Ipv4Addr::new(10, 96, 0, 10)]
        );
        assert!(parse_a_records(&answer, 0x4321).is_err());
        answer[3] = 0x83; // NXDOMAIN
        assert!(parse_a_records(&answer, 0x1234).is_err());
    }

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
    }
}
