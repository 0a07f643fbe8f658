//! A real Kubernetes control plane for tests: etcd + kube-apiserver (the version
//! `tests/env/kube/go.mod` pins, inside the range the operator's `k8s-openapi` feature targets),
//! serving TLS on 127.0.0.1 with RBAC, a static admin token and ServiceAccount tokens.
//!
//! No controller-manager and no kubelet run: pods never start, Deployments get no ReplicaSets, and
//! namespaces get no `default` ServiceAccount (tests patch workload `/status` themselves). For a
//! real node (`node.rs`), `TestCluster::start_with` serves on the node's address with its flags.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};
use serde_json::json;
use tempfile::TempDir;

use crate::{assets, ports, process::ChildProcess};

const ETCD_TIMEOUT: Duration = Duration::from_secs(30);
const APISERVER_TIMEOUT: Duration = Duration::from_secs(90);
const CRD_TIMEOUT: Duration = Duration::from_secs(30);
/// Lifetime of minted ServiceAccount tokens: longer than any test.
const TOKEN_SECONDS: i64 = 24 * 3600;

/// etcd + kube-apiserver, killed (and their folders removed) on drop.
pub struct TestCluster {
    // Processes before folders: fields drop in order, so servers die before their files go.
    apiserver: ChildProcess,
    etcd: ChildProcess,
    url: String,
    client: Client,
    kubeconfig: PathBuf,
    kubeconfigs_written: AtomicUsize,
    /// Static tokens of [`ApiServerOptions::users`], by user name.
    user_tokens: HashMap<String, String>,
    dir: TempDir,
    _etcd_data: TempDir,
}

/// How [`TestCluster::start_with`] differs from the plain control plane of [`TestCluster::start`]
/// (what a real node needs: see `node.rs`).
pub(crate) struct ApiServerOptions {
    /// The address served on and advertised (in the `kubernetes` Service's endpoints).
    pub address: IpAddr,
    /// More subjectAltName entries of the serving certificate (`IP:10.96.0.1`, `DNS:name`).
    pub extra_sans: Vec<String>,
    /// Users (name, group) that get a static token, for [`TestCluster::kubeconfig_for_user`].
    pub users: Vec<(String, String)>,
    /// Issue a client certificate (group `system:masters`) for the API server's connections to
    /// kubelets, and pass it with `--kubelet-client-certificate/-key`.
    pub kubelet_client_cert: bool,
    /// More flags (`--name=value`), each replacing the default flag of the same name.
    pub extra_args: Vec<String>,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        Self {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            extra_sans: Vec::new(),
            users: Vec::new(),
            kubelet_client_cert: false,
            extra_args: Vec::new(),
        }
    }
}

impl TestCluster {
    /// Starts etcd and kube-apiserver on free ports and waits until `/readyz` passes.
    pub async fn start() -> Result<Self> {
        Self::start_with(ApiServerOptions::default()).await
    }

    /// [`Self::start`] with `options`.
    pub(crate) async fn start_with(options: ApiServerOptions) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("apiserver-").tempdir()?;
        let pki = Pki::create(dir.path(), &options).await?;
        let admin_token = hex::encode(rand::random::<[u8; 16]>());
        let tokens = dir.path().join("tokens.csv");
        let mut token_lines = format!("{admin_token},admin,admin,\"system:masters\"\n");
        let mut user_tokens = HashMap::new();
        for (user, group) in &options.users {
            let token = hex::encode(rand::random::<[u8; 16]>());
            token_lines.push_str(&format!("{token},{user},{user},\"{group}\"\n"));
            user_tokens.insert(user.clone(), token);
        }
        std::fs::write(&tokens, token_lines)?;

        let (etcd, etcd_url, etcd_data) = start_etcd().await?;

        let port = ports::free_port();
        let address = options.address;
        let url = format!("https://{address}:{port}");
        let mut command = Command::new(assets::find("kube-apiserver")?);
        let file_flags = [
            ("--tls-cert-file", &pki.server_cert),
            ("--tls-private-key-file", &pki.server_key),
            ("--token-auth-file", &tokens),
            ("--service-account-key-file", &pki.service_account_key),
            (
                "--service-account-signing-key-file",
                &pki.service_account_key,
            ),
            ("--cert-dir", &dir.path().join("certs")),
        ];
        for (flag, path) in file_flags {
            command.arg(format!("{flag}={}", path.display()));
        }
        if let Some((cert, key)) = &pki.kubelet_client {
            command.arg(format!("--kubelet-client-certificate={}", cert.display()));
            command.arg(format!("--kubelet-client-key={}", key.display()));
        }
        let defaults = [
            format!("--etcd-servers={etcd_url}"),
            format!("--bind-address={address}"),
            format!("--advertise-address={address}"),
            format!("--secure-port={port}"),
            "--authorization-mode=RBAC".to_owned(),
            "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
            "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
            // Nothing serves the `kubernetes` Service's endpoints: skip reconciling them.
            "--endpoint-reconciler-type=none".to_owned(),
            "--profiling=false".to_owned(),
        ];
        // An extra flag replaces the default of the same name (list flags would append).
        let name = |flag: &str| flag.split('=').next().unwrap_or(flag).to_owned();
        let replaced: Vec<String> = options.extra_args.iter().map(|f| name(f)).collect();
        command.args(defaults.iter().filter(|f| !replaced.contains(&name(f))));
        command.args(&options.extra_args);
        let apiserver = ChildProcess::spawn("kube-apiserver", command)?;

        let kubeconfig = dir.path().join("admin.kubeconfig");
        let admin = kubeconfig_json(&url, &dir.path().join(Pki::CA_CERT), &admin_token);
        std::fs::write(&kubeconfig, serde_json::to_vec_pretty(&admin)?)?;
        let client = client_from(admin).await?;

        let mut cluster = Self {
            apiserver,
            etcd,
            url,
            client,
            kubeconfig,
            kubeconfigs_written: AtomicUsize::new(0),
            user_tokens,
            dir,
            _etcd_data: etcd_data,
        };
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let client = self.client.clone();
        self.apiserver
            .wait_until("GET /readyz passing", APISERVER_TIMEOUT, || {
                let client = client.clone();
                async move {
                    let request = axum::http::Request::get("/readyz").body(Vec::new())?;
                    let body = client.request_text(request).await?;
                    ensure!(body.trim() == "ok", "readyz said {body}");
                    Ok(())
                }
            })
            .await
    }

    /// `https://127.0.0.1:PORT`
    pub fn server_url(&self) -> &str {
        &self.url
    }

    /// A client authenticated as the admin (group `system:masters`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The admin's kubeconfig file, for kubectl, helm or a `KUBECONFIG` variable.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A client that authenticates with `token` (e.g. from [`Self::mint_service_account_token`]).
    pub async fn client_for_token(&self, token: &str) -> Result<Client> {
        client_from(kubeconfig_json(&self.url, &self.ca_cert(), token)).await
    }

    /// Writes a kubeconfig file that authenticates with `token` and returns its path (inside the
    /// cluster's temporary folder).
    pub fn kubeconfig_for_token(&self, token: &str) -> Result<PathBuf> {
        let n = self.kubeconfigs_written.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("token-{n}.kubeconfig"));
        let config = kubeconfig_json(&self.url, &self.ca_cert(), token);
        std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
        Ok(path)
    }

    /// Writes a kubeconfig for the static token of `user` (one of [`ApiServerOptions::users`]).
    pub(crate) fn kubeconfig_for_user(&self, user: &str) -> Result<PathBuf> {
        let token = self
            .user_tokens
            .get(user)
            .with_context(|| format!("no static token for user {user}"))?;
        self.kubeconfig_for_token(token)
    }

    /// A file of the cluster's PKI: [`Pki::CA_CERT`], [`Pki::CA_KEY`],
    /// [`Pki::SERVICE_ACCOUNT_KEY`].
    pub(crate) fn pki_file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Creates the namespace `name`.
    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(())
    }

    /// Installs the project's TracingLab CRD (`crds/tracinglab.yaml`), as `make install` does.
    pub async fn install_lab_crd(&self) -> Result<()> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/tracinglab.yaml");
        let yaml = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        self.install_crd(&yaml).await
    }

    /// Creates the CustomResourceDefinition in `yaml` (one document) and waits until it is
    /// Established, so its resources can be used at once.
    pub async fn install_crd(&self, yaml: &str) -> Result<()> {
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(yaml).context("parsing the CRD YAML")?;
        let Some(name) = crd.metadata.name.clone() else {
            bail!("the CRD has no metadata.name");
        };
        let crds = Api::<CustomResourceDefinition>::all(self.client());
        crds.create(&PostParams::default(), &crd)
            .await
            .with_context(|| format!("creating CRD {name}"))?;
        tokio::time::timeout(
            CRD_TIMEOUT,
            await_condition(crds, &name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not Established within {CRD_TIMEOUT:?}"))??;
        Ok(())
    }

    /// A token for the existing ServiceAccount `namespace/name`, from the TokenRequest API (which
    /// the API server serves itself; no controller-manager needed). Requests made with it are
    /// authenticated as `system:serviceaccount:NAMESPACE:NAME` and authorized by RBAC.
    pub async fn mint_service_account_token(&self, namespace: &str, name: &str) -> Result<String> {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(TOKEN_SECONDS),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let response = Api::<ServiceAccount>::namespaced(self.client(), namespace)
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("requesting a token for ServiceAccount {namespace}/{name}"))?;
        match response.status {
            Some(status) if !status.token.is_empty() => Ok(status.token),
            _ => bail!("the API server returned no token for ServiceAccount {namespace}/{name}"),
        }
    }

    /// The API server process (log, pid).
    pub fn apiserver_process(&mut self) -> &mut ChildProcess {
        &mut self.apiserver
    }

    /// The etcd process (log, pid).
    pub fn etcd_process(&mut self) -> &mut ChildProcess {
        &mut self.etcd
    }

    fn ca_cert(&self) -> PathBuf {
        self.dir.path().join(Pki::CA_CERT)
    }
}

/// Starts etcd with its data on tmpfs when available (etcd fsyncs every write).
async fn start_etcd() -> Result<(ChildProcess, String, TempDir)> {
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix("etcd-").to_owned();
    let data = if shm.is_dir() {
        builder.tempdir_in(shm)?
    } else {
        builder.tempdir()?
    };
    let client_url = format!("http://127.0.0.1:{}", ports::free_port());
    let peer_url = format!("http://127.0.0.1:{}", ports::free_port());
    let mut command = Command::new(assets::find("etcd")?);
    command
        .arg("--data-dir")
        .arg(data.path())
        .args(["--name", "test"])
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("test={peer_url}")])
        .args(["--log-level", "warn"]);
    let mut etcd = ChildProcess::spawn("etcd", command)?;
    let health = format!("{client_url}/health");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    etcd.wait_until("GET /health reporting healthy", ETCD_TIMEOUT, || async {
        let body = http.get(&health).send().await?.text().await?;
        ensure!(body.contains(r#""health":"true""#), "health said {body}");
        Ok(())
    })
    .await?;
    Ok((etcd, client_url, data))
}

/// The TLS and ServiceAccount keys, made with the `openssl` command (EC P-256: fast to generate).
pub(crate) struct Pki {
    server_cert: PathBuf,
    server_key: PathBuf,
    service_account_key: PathBuf,
    /// Certificate and key of the API server as a kubelet's client, if asked for.
    kubelet_client: Option<(PathBuf, PathBuf)>,
}

impl Pki {
    pub(crate) const CA_CERT: &str = "ca.crt";
    pub(crate) const CA_KEY: &str = "ca.key";
    pub(crate) const SERVICE_ACCOUNT_KEY: &str = "service-account.key";

    async fn create(dir: &Path, options: &ApiServerOptions) -> Result<Self> {
        let mut sans = vec!["IP:127.0.0.1".to_owned(), "DNS:localhost".to_owned()];
        let address = format!("IP:{}", options.address);
        if !sans.contains(&address) {
            sans.push(address);
        }
        sans.extend(options.extra_sans.iter().cloned());
        std::fs::write(
            dir.join("server.ext"),
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth\nsubjectAltName={}\n",
                sans.join(",")
            ),
        )?;
        std::fs::write(
            dir.join("client.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=clientAuth\n",
        )?;
        let ec_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        let mut steps = vec![
            format!(
                "req -x509 {ec_key} -days 3650 -keyout ca.key -out {} -subj /CN=tracing-lab-test-ca \
                 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
                Self::CA_CERT
            ),
            format!("req {ec_key} -keyout server.key -out server.csr -subj /CN=kube-apiserver"),
            format!(
                "x509 -req -in server.csr -CA {} -CAkey ca.key -CAcreateserial -days 3650 \
                 -extfile server.ext -out server.crt",
                Self::CA_CERT
            ),
            format!(
                "ecparam -name prime256v1 -genkey -noout -out {}",
                Self::SERVICE_ACCOUNT_KEY
            ),
        ];
        if options.kubelet_client_cert {
            // The CN and group of kubeadm's apiserver-kubelet-client certificate.
            steps.extend([
                format!(
                    "req {ec_key} -keyout kubelet-client.key -out kubelet-client.csr \
                     -subj /O=system:masters/CN=kube-apiserver-kubelet-client"
                ),
                format!(
                    "x509 -req -in kubelet-client.csr -CA {} -CAkey ca.key -CAcreateserial \
                     -days 3650 -extfile client.ext -out kubelet-client.crt",
                    Self::CA_CERT
                ),
            ]);
        }
        let openssl = assets::find("openssl")?;
        for args in steps {
            let output = tokio::process::Command::new(&openssl)
                .args(args.split_whitespace())
                .current_dir(dir)
                .output()
                .await
                .context("running openssl")?;
            ensure!(
                output.status.success(),
                "openssl {args} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(Self {
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            service_account_key: dir.join(Self::SERVICE_ACCOUNT_KEY),
            kubelet_client: options.kubelet_client_cert.then(|| {
                (
                    dir.join("kubelet-client.crt"),
                    dir.join("kubelet-client.key"),
                )
            }),
        })
    }
}

fn kubeconfig_json(url: &str, ca_cert: &Path, token: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": url, "certificate-authority": ca_cert}}],
        "users": [{"name": "test", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "current-context": "test",
    })
}

async fn client_from(kubeconfig: serde_json::Value) -> Result<Client> {
    let kubeconfig: Kubeconfig = serde_json::from_value(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}
