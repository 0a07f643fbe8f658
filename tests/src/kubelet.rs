//! What a kubelet and the cluster's DNS do for a rendered container, so that it can run as a local
//! process: its environment (field references, `$(VAR)` expansion), its volumes (ConfigMap files,
//! emptyDirs and volume claims as local folders) and its addresses. Each container port of each component gets
//! a free port on 127.0.0.1; [`Loopback::rewrite`] maps the in-cluster host names and listen
//! addresses in an environment value or a config file to them and leaves everything else as
//! rendered.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::{
    Container, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, Service,
};
use regex::{Captures, Regex};
use tracing_lab_operator::render::Children;
use tracing_lab_operator::render::common::COMPONENT;

use crate::ports;
use crate::process::ChildProcess;

/// How long a program may take to pass its readiness probe.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The component a pod template belongs to.
pub fn component(template: &PodTemplateSpec) -> Option<&str> {
    template
        .metadata
        .as_ref()?
        .labels
        .as_ref()?
        .get(COMPONENT)
        .map(String::as_str)
}

/// The pod a container runs in, for field references.
#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
}

/// The container's environment as the kubelet gives it: field references filled in for `pod`,
/// `$(VAR)` references expanded from the variables before them.
pub fn container_env(container: &Container, pod: &Pod) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for var in container.env.as_deref().unwrap_or_default() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                let Some(field) = &from.field_ref else {
                    bail!("{}: only field references are supported", var.name);
                };
                match field.field_path.as_str() {
                    "metadata.name" => pod.name.clone(),
                    "metadata.namespace" => pod.namespace.clone(),
                    other => bail!("{}: unsupported field reference {other}", var.name),
                }
            }
            (None, None) => String::new(),
        };
        let expanded = out.iter().fold(value, |v, (name, val)| {
            v.replace(&format!("$({name})"), val)
        });
        out.push((var.name.clone(), expanded));
    }
    Ok(out)
}

/// A rendered container made ready to run here: environment and arguments with local addresses
/// and paths, its volumes as folders under a root folder the caller owns.
#[derive(Debug)]
pub struct Prepared {
    pub pod: Pod,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    pub security: PodSecurityContext,
    /// What the readiness probe checks, on local addresses.
    pub readiness: Option<Readiness>,
    /// The pod's `terminationGracePeriodSeconds`.
    pub grace: Option<Duration>,
    /// (mount path in the container, local folder)
    volumes: Vec<(String, PathBuf)>,
}

impl Prepared {
    /// Container `container` of the first pod of `component` (`-0`, as a StatefulSet names it).
    pub fn new(
        children: &Children,
        loopback: &Loopback,
        component: &str,
        container: &str,
        root: &Path,
    ) -> Result<Self> {
        Self::of_replica(children, loopback, component, container, root, 0)
    }

    /// Container `container` of pod number `replica` of `component`, named `<workload>-<replica>`.
    /// ConfigMap volumes get their files (see [`config_map_files`]); emptyDirs and a StatefulSet's
    /// claims are folders owned the way the kubelet makes them (group `fsGroup`, setgid, writable
    /// by all). A folder already there keeps what it holds.
    pub fn of_replica(
        children: &Children,
        loopback: &Loopback,
        component: &str,
        container: &str,
        root: &Path,
        replica: usize,
    ) -> Result<Self> {
        let (workload, namespace, template) = workload(children, component)?;
        let name = format!("{workload}-{replica}");
        let spec = template.spec.as_ref().context("a template without a pod")?;
        if let Some(init) = spec.init_containers.as_deref().and_then(<[_]>::first) {
            bail!(
                "{component}: init container {} would have to run first",
                init.name
            );
        }
        let found = spec
            .containers
            .iter()
            .find(|c| c.name == container)
            .with_context(|| format!("{component} has no container {container}"))?;
        let pod = Pod { name, namespace };
        let security = spec.security_context.clone().unwrap_or_default();
        std::fs::create_dir_all(root)?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))?;
        let mut volumes = Vec::new();
        for mount in found.volume_mounts.iter().flatten() {
            let local = root.join(&mount.name);
            std::fs::create_dir_all(&local)?;
            let Some(volume) = spec.volumes.iter().flatten().find(|v| v.name == mount.name) else {
                // A StatefulSet's claim: a folder of its own that outlives the process, as a
                // claim outlives the container (the caller keeps `root` across restarts).
                ensure!(
                    claims(children, &workload).any(|c| c == mount.name),
                    "{component}: no volume {}",
                    mount.name
                );
                kubelet_owned(&local, &security)?;
                volumes.push((mount.mount_path.clone(), local));
                continue;
            };
            if volume.config_map.is_some() {
                // Written once every volume is known: a file may name a path in another volume.
            } else if volume.empty_dir.is_some() {
                kubelet_owned(&local, &security)?;
            } else {
                bail!(
                    "{component}: volume {} is neither a ConfigMap, an emptyDir nor a claim",
                    mount.name
                );
            }
            volumes.push((mount.mount_path.clone(), local));
        }
        let readiness = found
            .readiness_probe
            .as_ref()
            .map(|p| Readiness::of(p, loopback, component))
            .transpose()?;
        let mut prepared = Self {
            pod,
            env: Vec::new(),
            args: Vec::new(),
            security,
            readiness,
            grace: spec
                .termination_grace_period_seconds
                .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0))),
            volumes,
        };
        for (path, text) in config_map_files(children, loopback, component, spec, found, root)? {
            std::fs::write(path, text)?;
        }
        prepared.env = container_env(found, &prepared.pod)?
            .into_iter()
            .map(|(k, v)| (k, prepared.map_paths(&loopback.rewrite(component, &v))))
            .collect();
        prepared.args = found
            .command
            .iter()
            .flatten()
            .chain(found.args.iter().flatten())
            .map(|a| prepared.map_paths(&loopback.rewrite(component, a)))
            .collect();
        Ok(prepared)
    }

    /// The local folder of the volume mounted at `mount_path`.
    pub fn volume(&self, mount_path: &str) -> Option<&Path> {
        self.volumes
            .iter()
            .find(|(m, _)| m == mount_path)
            .map(|(_, local)| local.as_path())
    }

    /// `text` with the container's mount paths replaced by their folders (see [`map_paths`]).
    pub fn map_paths(&self, text: &str) -> String {
        map_paths(&self.volumes, text)
    }

    /// `program` with `leading` arguments, then the container's; a clean environment holding only
    /// `PATH` (and `JAVA_HOME` when set) besides the container's. With `as_user`, it runs as the
    /// pod's `runAsUser`/`runAsGroup`.
    pub fn command(&self, program: &Path, leading: &[String], as_user: bool) -> Result<Command> {
        let mut command = Command::new(program);
        command
            .args(leading)
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        if let Some(java_home) = std::env::var_os("JAVA_HOME") {
            command.env("JAVA_HOME", java_home);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        if as_user {
            if let Some(uid) = self.security.run_as_user {
                command.uid(u32::try_from(uid)?);
            }
            if let Some(gid) = self.security.run_as_group {
                command.gid(u32::try_from(gid)?);
            }
        }
        Ok(command)
    }
}

/// A writable volume the way the kubelet hands it over: group `fsGroup`, setgid, writable by all.
fn kubelet_owned(folder: &Path, security: &PodSecurityContext) -> Result<()> {
    if let Some(group) = security.fs_group {
        std::os::unix::fs::chown(folder, Some(0), Some(u32::try_from(group)?))?;
    }
    std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o2777))?;
    Ok(())
}

/// The names of the volume claim templates of StatefulSet `workload`.
fn claims<'a>(children: &'a Children, workload: &str) -> impl Iterator<Item = &'a str> {
    children
        .stateful_sets
        .iter()
        .filter(move |s| s.metadata.name.as_deref() == Some(workload))
        .filter_map(|s| s.spec.as_ref()?.volume_claim_templates.as_ref())
        .flatten()
        .filter_map(|c| c.metadata.name.as_deref())
}

/// Starts `component`'s container `container` with `program` as its image's entrypoint (as root),
/// its volumes under `root`, and waits until its readiness probe passes.
pub async fn run(
    children: &Children,
    loopback: &Loopback,
    component: &str,
    container: &str,
    program: &Path,
    root: &Path,
) -> Result<ChildProcess> {
    let prepared = Prepared::new(children, loopback, component, container, root)?;
    let mut process = ChildProcess::spawn(component, prepared.command(program, &[], false)?)?;
    let readiness = prepared
        .readiness
        .with_context(|| format!("{component} is rendered without a readiness probe"))?;
    readiness.wait(&mut process, READY_TIMEOUT).await?;
    Ok(process)
}

/// A readiness probe's check, on local addresses.
#[derive(Debug, Clone, PartialEq)]
pub enum Readiness {
    /// `GET` answering 2xx.
    Http(String),
    /// A TCP connection accepted.
    Tcp(String),
    /// A command exiting 0 (run as it is, e.g. `redis-cli ping`).
    Exec(Vec<String>),
}

impl Readiness {
    fn of(probe: &Probe, loopback: &Loopback, component: &str) -> Result<Self> {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        let port = |port: &IntOrString| match port {
            IntOrString::Int(p) => loopback.address(component, *p),
            IntOrString::String(named) => bail!("{component}: named probe port {named}"),
        };
        if let Some(get) = &probe.http_get {
            let path = get.path.as_deref().unwrap_or("/");
            return Ok(Self::Http(format!("http://{}{path}", port(&get.port)?)));
        }
        if let Some(tcp) = &probe.tcp_socket {
            return Ok(Self::Tcp(port(&tcp.port)?));
        }
        if let Some(exec) = &probe.exec {
            return Ok(Self::Exec(exec.command.clone().unwrap_or_default()));
        }
        bail!("{component}: a readiness probe of a kind this harness does not run")
    }

    /// Waits until the check passes, failing with `process`'s log when it exits or `timeout` passes.
    pub async fn wait(&self, process: &mut ChildProcess, timeout: Duration) -> Result<()> {
        process
            .wait_until(&format!("readiness ({self:?})"), timeout, || self.check())
            .await
    }

    /// One probe, bounded the way the kubelet bounds it (1 s, `timeoutSeconds`' default).
    pub async fn check(&self) -> Result<()> {
        const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
        match self {
            Self::Http(url) => {
                let answer = reqwest::Client::new()
                    .get(url)
                    .timeout(PROBE_TIMEOUT)
                    .send()
                    .await?;
                ensure!(
                    answer.status().is_success(),
                    "GET {url}: {}",
                    answer.status()
                );
                Ok(())
            }
            Self::Tcp(address) => {
                tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address))
                    .await??;
                Ok(())
            }
            Self::Exec(command) => bail!("exec probes are not run here: {command:?}"),
        }
    }
}

/// `text` with each volume's mount path (as a whole path, at the start of a word or a value)
/// replaced by its folder, in one pass so that a replacement is never mapped again.
fn map_paths(volumes: &[(String, PathBuf)], text: &str) -> String {
    let mut mounts: Vec<(&str, String)> = volumes
        .iter()
        .map(|(m, local)| (m.as_str(), local.display().to_string()))
        .collect();
    mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    let mut out = String::new();
    let mut rest = text;
    let mut at_boundary = true;
    while let Some(c) = rest.chars().next() {
        let found = mounts.iter().find(|(m, _)| {
            at_boundary
                && rest.strip_prefix(m).is_some_and(|after| {
                    after.is_empty() || after.starts_with(['/', ',', ' ', ':'])
                })
        });
        if let Some((mount, local)) = found {
            out.push_str(local);
            rest = &rest[mount.len()..];
            at_boundary = false;
            continue;
        }
        out.push(c);
        at_boundary = matches!(c, '=' | ' ' | ',' | ':');
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The files of `container`'s ConfigMap volumes in `root` (each volume a folder named after it),
/// as the program there reads them: addresses rewritten to this lab's local ports, and the mount
/// paths of its volumes to their folders.
fn config_map_files(
    children: &Children,
    loopback: &Loopback,
    component: &str,
    spec: &PodSpec,
    container: &Container,
    root: &Path,
) -> Result<Vec<(PathBuf, String)>> {
    let mounts = container.volume_mounts.iter().flatten();
    let volumes: Vec<(String, PathBuf)> = mounts
        .clone()
        .map(|m| (m.mount_path.clone(), root.join(&m.name)))
        .collect();
    let mut files = Vec::new();
    for mount in mounts {
        let source = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .and_then(|v| v.config_map.as_ref());
        let Some(source) = source else { continue };
        let map = children
            .config_maps
            .iter()
            .find(|m| m.metadata.name.as_deref() == Some(source.name.as_str()))
            .with_context(|| format!("{component}: ConfigMap {} not rendered", source.name))?;
        for (file, text) in map.data.iter().flatten() {
            let text = map_paths(&volumes, &loopback.rewrite(component, text));
            files.push((root.join(&mount.name).join(file), text));
        }
    }
    Ok(files)
}

/// What the kubelet does when a mounted ConfigMap (not a subPath) changes: the files of
/// `component`'s container in `root` (prepared by [`Prepared::of`]) that differ from the
/// ConfigMaps in `children` are replaced, each whole, so that a program reading it never sees
/// half a file. The files replaced.
pub fn update_config_maps(
    children: &Children,
    loopback: &Loopback,
    component: &str,
    container: &str,
    root: &Path,
) -> Result<Vec<PathBuf>> {
    let (_, _, template) = workload(children, component)?;
    let spec = template.spec.as_ref().context("a template without a pod")?;
    let found = spec
        .containers
        .iter()
        .find(|c| c.name == container)
        .with_context(|| format!("{component} has no container {container}"))?;
    let mut replaced = Vec::new();
    for (path, text) in config_map_files(children, loopback, component, spec, found, root)? {
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        let next = path.with_extension("next");
        std::fs::write(&next, text)?;
        std::fs::rename(&next, &path)?;
        replaced.push(path);
    }
    Ok(replaced)
}

/// The name, namespace and pod template of `component`'s workload.
fn workload<'a>(
    children: &'a Children,
    component: &str,
) -> Result<(String, String, &'a PodTemplateSpec)> {
    if let Some((meta, template)) = children
        .workloads()
        .find(|(_, t)| self::component(t) == Some(component))
    {
        let name = meta.name.clone().unwrap_or_default();
        return Ok((name, meta.namespace.clone().unwrap_or_default(), template));
    }
    bail!("no workload of component {component} rendered")
}

/// One lab's addresses on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct Loopback {
    /// (component, container port) → local port.
    local: BTreeMap<(String, i32), u16>,
    /// Service name → what it selects.
    services: BTreeMap<String, Selected>,
    namespace: String,
    pattern: Regex,
}

impl Loopback {
    /// Gives every container port of every rendered workload a free local port.
    pub fn new(children: &Children, namespace: &str) -> Result<Self> {
        let mut local = BTreeMap::new();
        for (_, template) in children.workloads() {
            let component =
                self::component(template).context("a pod template without a component label")?;
            let pod: &PodSpec = template.spec.as_ref().context("a template without a pod")?;
            for container in &pod.containers {
                for port in container.ports.iter().flatten() {
                    local.insert(
                        (component.to_owned(), port.container_port),
                        ports::free_port(),
                    );
                }
            }
        }
        let services = children
            .services
            .iter()
            .map(service_targets)
            .collect::<Result<_>>()?;
        Ok(Self {
            local,
            services,
            namespace: namespace.to_owned(),
            pattern: Regex::new(r"(?P<host>[A-Za-z0-9.-]*):(?P<port>[0-9]+)").expect("valid"),
        })
    }

    /// Gives `component`'s container port `port` the local port `local` (one chosen before the
    /// lab was rendered, e.g. for a program started earlier that dials it).
    pub fn pin(&mut self, component: &str, port: i32, local: u16) -> Result<()> {
        let slot = self
            .local
            .get_mut(&(component.to_owned(), port))
            .with_context(|| format!("{component} has no container port {port}"))?;
        *slot = local;
        Ok(())
    }

    /// The addresses as another pod of `component` sees them: its own container ports on fresh
    /// local ports, every other component's as before. (The lab's Services keep sending to the
    /// first pod, which is enough for a pod that only dials out.)
    pub fn another_pod(&self, component: &str) -> Self {
        let mut other = self.clone();
        for ((owner, _), local) in &mut other.local {
            if owner == component {
                *local = ports::free_port();
            }
        }
        other
    }

    /// The local port of `component`'s container port `port`.
    pub fn port(&self, component: &str, port: i32) -> Result<u16> {
        self.local
            .get(&(component.to_owned(), port))
            .copied()
            .with_context(|| format!("{component} has no container port {port}"))
    }

    /// `127.0.0.1:PORT` of `component`'s container port `port`.
    pub fn address(&self, component: &str, port: i32) -> Result<String> {
        Ok(format!("127.0.0.1:{}", self.port(component, port)?))
    }

    /// `text` as `component` sees it here: its own listen addresses (`:P`, `0.0.0.0:P`,
    /// `localhost:P`) and the lab's Service names (short, `.NS.svc` or `.NS.svc.cluster.local`)
    /// with their ports become local addresses. Anything else stays as it is.
    pub fn rewrite(&self, component: &str, text: &str) -> String {
        self.pattern
            .replace_all(text, |c: &Captures| {
                let (host, port) = (&c["host"], &c["port"]);
                let Ok(port) = port.parse::<i32>() else {
                    return c[0].to_owned();
                };
                let target = match host {
                    "" | "0.0.0.0" | "localhost" | "127.0.0.1" => {
                        self.local.get(&(component.to_owned(), port))
                    }
                    _ => self.service_name(host).and_then(|name| {
                        let selected = self.services.get(name)?;
                        let target = *selected.target_ports.get(&port)?;
                        self.local.get(&(selected.component.clone(), target))
                    }),
                };
                match target {
                    Some(local) => format!("127.0.0.1:{local}"),
                    None => c[0].to_owned(),
                }
            })
            .into_owned()
    }

    /// The Service a host name resolves to in the lab's namespace, if it is one of the lab's.
    fn service_name<'a>(&self, host: &'a str) -> Option<&'a str> {
        let suffixes = [
            format!(".{}.svc.cluster.local", self.namespace),
            format!(".{}.svc", self.namespace),
            String::new(),
        ];
        suffixes
            .iter()
            .find_map(|s| host.strip_suffix(s.as_str()))
            .filter(|name| self.services.contains_key(*name))
    }
}

/// The pods a Service sends to, and where.
#[derive(Debug, Clone)]
struct Selected {
    component: String,
    /// Service port → container port.
    target_ports: BTreeMap<i32, i32>,
}

fn service_targets(service: &Service) -> Result<(String, Selected)> {
    let name = service
        .metadata
        .name
        .clone()
        .context("a Service without a name")?;
    let spec = service.spec.as_ref().context("a Service without a spec")?;
    let component = spec
        .selector
        .as_ref()
        .and_then(|s| s.get(COMPONENT).cloned())
        .with_context(|| format!("Service {name} selects no component"))?;
    let mut targets = BTreeMap::new();
    for port in spec.ports.iter().flatten() {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        let target = match &port.target_port {
            Some(IntOrString::Int(p)) => *p,
            None => port.port,
            Some(IntOrString::String(named)) => bail!("Service {name}: named target port {named}"),
        };
        targets.insert(port.port, target);
    }
    Ok((
        name,
        Selected {
            component,
            target_ports: targets,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::{rendered, stored};

    fn children() -> Children {
        rendered(&stored("shop", "class-1", serde_json::json!({})).unwrap())
            .unwrap()
            .0
    }

    #[test]
    fn lab_host_names_and_listen_addresses_map_to_each_components_local_ports() {
        let loopback = Loopback::new(&children(), "class-1").unwrap();
        let kafka = loopback.address("kafka", 9092).unwrap();
        let controller = loopback.address("kafka", 9093).unwrap();
        assert_eq!(
            loopback.rewrite("kafka", "PLAINTEXT://:9092,CONTROLLER://:9093"),
            format!("PLAINTEXT://{kafka},CONTROLLER://{controller}")
        );
        assert_eq!(
            loopback.rewrite("kafka", "1@localhost:9093"),
            format!("1@{controller}")
        );
        assert_eq!(
            loopback.rewrite("api", "shop-kafka.class-1.svc:9092"),
            kafka
        );
        // The collector's own receivers and Jaeger's OTLP/HTTP one, which the collector exports to.
        let collector = loopback.address("collector", 4317).unwrap();
        let jaeger = loopback.address("jaeger", 4318).unwrap();
        assert_ne!(collector, jaeger);
        assert_eq!(loopback.rewrite("collector", "0.0.0.0:4317"), collector);
        assert_eq!(
            loopback.rewrite("collector", "http://shop-jaeger-otlp:4318"),
            format!("http://{jaeger}")
        );
        assert_eq!(
            loopback.rewrite(
                "api",
                "http://shop-collector.class-1.svc.cluster.local:4317"
            ),
            format!("http://{collector}")
        );
    }

    #[test]
    fn a_claimed_volume_is_a_folder_that_outlives_the_container() {
        let spec = serde_json::json!({"kafka": {"storage": {"type": "persistentVolumeClaim"}}});
        let children = rendered(&stored("shop", "class-1", spec).unwrap())
            .unwrap()
            .0;
        let loopback = Loopback::new(&children, "class-1").unwrap();
        let root = tempfile::tempdir().unwrap();
        let data = |prepared: &Prepared| prepared.volume("/var/lib/kafka/data").unwrap().to_owned();
        let first = Prepared::new(&children, &loopback, "kafka", "kafka", root.path()).unwrap();
        std::fs::write(data(&first).join("meta.properties"), "formatted").unwrap();
        let again = Prepared::new(&children, &loopback, "kafka", "kafka", root.path()).unwrap();
        assert_eq!(data(&again), data(&first));
        assert_eq!(
            std::fs::read_to_string(data(&again).join("meta.properties")).unwrap(),
            "formatted"
        );
    }

    #[test]
    fn mount_paths_map_once_and_only_as_whole_paths() {
        let prepared = Prepared {
            pod: Pod {
                name: "p".into(),
                namespace: "n".into(),
            },
            env: Vec::new(),
            args: Vec::new(),
            security: PodSecurityContext::default(),
            readiness: None,
            grace: None,
            volumes: vec![
                ("/tmp".into(), PathBuf::from("/tmp/x/tmp")),
                ("/etc/jaeger".into(), PathBuf::from("/tmp/x/config")),
            ],
        };
        assert_eq!(
            prepared.map_paths("--config=/etc/jaeger/config.yaml"),
            "--config=/tmp/x/config/config.yaml"
        );
        assert_eq!(prepared.map_paths("/tmp"), "/tmp/x/tmp");
        assert_eq!(
            prepared.map_paths("a:/tmp/b,/tmp"),
            "a:/tmp/x/tmp/b,/tmp/x/tmp"
        );
        for unchanged in ["/tmpfoo", "/var/tmp", "x/etc/jaeger", "/etc/jaegers"] {
            assert_eq!(prepared.map_paths(unchanged), unchanged);
        }
    }

    #[test]
    fn other_hosts_ports_and_text_stay_as_rendered() {
        let loopback = Loopback::new(&children(), "class-1").unwrap();
        for text in [
            "other-kafka.class-1.svc:9092",
            "shop-kafka.class-2.svc:9092",
            "shop-kafka:1234",
            "example.org:443",
            "-Xms512m -Xmx512m",
            "dHJhY2luZ2xhYi1rYWZrYQ",
        ] {
            assert_eq!(loopback.rewrite("kafka", text), text);
        }
    }
}
