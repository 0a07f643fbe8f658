//! `tracing-lab-operator crd` prints the CRD, `tracing-lab-operator reference` its field reference,
//! `tracing-lab-operator images` the images a lab runs, `tracing-lab-operator logs` the log lines
//! of one trace, `tracing-lab-operator check` whether an exercise's outcome shows in a lab;
//! `tracing-lab-operator run` runs the controller.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing_lab_operator::metrics::Shared;
use tracing_lab_operator::{Config, TracingLab, check, crd, http, reference, run, trace_logs};

#[derive(Parser)]
#[command(
    version,
    about = "Kubernetes operator for TracingLab distributed-tracing labs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the TracingLab CustomResourceDefinition as YAML.
    Crd,
    /// Print the TracingLab field reference as Markdown.
    Reference,
    /// Print every container image a lab runs, one per line (to pull them once for a class).
    Images {
        /// The lab's manifest (`-` reads standard input); without it, a lab with the default spec.
        /// Several labs, as YAML documents separated by `---`, print the images of all of them.
        #[arg(short = 'f', long = "filename", value_name = "LAB.yaml")]
        file: Option<std::path::PathBuf>,
    },
    /// Print every log line of a lab's pods that carries a trace id, in time order.
    Logs(LogsArgs),
    /// Say whether an exercise's outcome shows in a lab (its traces in Jaeger, its status); exit
    /// status 0 when it does, 1 when not yet.
    Check(CheckArgs),
    /// Watch TracingLabs and reconcile them into labs.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct LogsArgs {
    /// The trace id, as Jaeger shows it (32 hexadecimal digits).
    #[arg(value_name = "TRACE_ID", value_parser = trace_logs::parse_trace_id)]
    trace_id: String,
    #[command(flatten)]
    lab: LabArgs,
}

/// Which lab a student's command reads.
#[derive(clap::Args)]
struct LabArgs {
    /// The lab's namespace (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
    /// The lab (default: the only TracingLab in the namespace).
    #[arg(long)]
    lab: Option<String>,
}

impl LabArgs {
    /// A client with the kubeconfig's (or the pod's) credentials, and the namespace to read.
    async fn connect(&self) -> anyhow::Result<(kube::Client, String)> {
        let client = kube::Client::try_default()
            .await
            .context("connecting to Kubernetes (KUBECONFIG or in-cluster config)")?;
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        Ok((client, namespace))
    }
}

#[derive(clap::Args)]
struct CheckArgs {
    /// The exercise.
    #[arg(value_enum)]
    exercise: check::Exercise,
    #[command(flatten)]
    lab: LabArgs,
    /// How far back to read traces (e.g. 15m, 1h).
    #[arg(long, default_value = "15m", value_parser = positive_duration)]
    since: std::time::Duration,
    /// Jaeger's address, e.g. http://localhost:16686 behind `kubectl port-forward`; by default
    /// the lab's Jaeger through the API server's service proxy.
    #[arg(long, value_name = "URL", value_parser = http_url)]
    jaeger: Option<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(
        long = "listen-addr",
        alias = "listen",
        env = "LISTEN_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    listen_addr: SocketAddr,
    /// Kafka address dialled for lag measurement instead of each lab's own Kafka Service
    /// (`<lab>-kafka.<namespace>.svc:9092`), for running the operator outside the cluster.
    #[arg(long, value_name = "HOST:PORT")]
    kafka_bootstrap: Option<String>,
    /// How often each lab's Kafka consumer lag is measured (e.g. 10s, 500ms, 1m).
    #[arg(long, env = "LAG_INTERVAL", default_value = "10s", value_parser = positive_duration)]
    lag_interval: std::time::Duration,
    /// Bound on connecting to a lab's Kafka and on each request to it.
    #[arg(long, default_value = "3s", value_parser = positive_duration)]
    kafka_timeout: std::time::Duration,
}

/// A duration such as `10s`, `500ms` or `1m`, above zero.
fn positive_duration(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be greater than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (examples: 10s, 500ms, 1m)")),
    }
}

/// An http URL (a port-forward's; the API server's proxy is the way to Jaeger over TLS).
fn http_url(text: &str) -> Result<String, String> {
    match reqwest::Url::parse(text) {
        Ok(url) if url.scheme() == "http" && url.has_host() => Ok(text.to_owned()),
        _ => Err("expected an http URL such as http://localhost:16686".into()),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", crd::crd_yaml());
            Ok(())
        }
        Command::Reference => {
            use kube::CustomResourceExt as _;
            print!("{}", reference::markdown(&TracingLab::crd()));
            Ok(())
        }
        Command::Images { file } => {
            for image in lab_images(file.as_deref())? {
                println!("{image}");
            }
            Ok(())
        }
        Command::Logs(args) => tokio::runtime::Runtime::new()
            .context("starting the async runtime")?
            .block_on(logs(args)),
        Command::Check(args) => {
            let done = tokio::runtime::Runtime::new()
                .context("starting the async runtime")?
                .block_on(check(args))?;
            std::process::exit(if done { 0 } else { 1 })
        }
        Command::Run(args) => tokio::runtime::Runtime::new()
            .context("starting the async runtime")?
            .block_on(serve(args)),
    }
}

async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let (client, namespace) = args.lab.connect().await?;
    let (lab, lines) =
        trace_logs::of_trace(client, &namespace, args.lab.lab.as_deref(), &args.trace_id).await?;
    if lines.is_empty() {
        anyhow::bail!(
            "no log line of lab {lab:?} in namespace {namespace:?} carries trace {} \
             (read: each container's log since it started, and before its last restart)",
            args.trace_id
        );
    }
    let mut out = std::io::stdout().lock();
    for line in lines {
        match writeln!(out, "{line}") {
            // A reader such as `head` that has seen enough.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            written => written.context("writing to standard output")?,
        }
    }
    Ok(())
}

/// Prints whether the exercise's outcome shows in the lab; returns whether it does.
async fn check(args: CheckArgs) -> anyhow::Result<bool> {
    let (client, namespace) = args.lab.connect().await?;
    let exercise = args.exercise;
    let jaeger = args.jaeger.as_deref().map(check::Jaeger::at);
    let (lab, outcome) = check::check(
        client,
        &namespace,
        args.lab.lab.as_deref(),
        exercise,
        args.since,
        jaeger,
    )
    .await?;
    let name = clap::ValueEnum::to_possible_value(&exercise)
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    let verdict = if outcome.done { "done" } else { "not yet" };
    println!(
        "{name} in lab {lab:?} ({namespace}): {verdict}: {}",
        outcome.says
    );
    Ok(outcome.done)
}

/// The images of the labs in `file` (or of a default lab), as the operator would render them,
/// sorted, each once.
fn lab_images(file: Option<&std::path::Path>) -> anyhow::Result<Vec<String>> {
    let specs: Vec<tracing_lab_operator::TracingLabSpec> = match file {
        None => vec![Default::default()],
        Some(path) => {
            let text = if path == std::path::Path::new("-") {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?
            };
            let labs: Vec<TracingLab> = serde_saphyr::from_str_multiple(&text)
                .with_context(|| format!("{} is not a TracingLab", path.display()))?;
            anyhow::ensure!(!labs.is_empty(), "{} holds no TracingLab", path.display());
            labs.into_iter().map(|lab| lab.spec).collect()
        }
    };
    let mut images = std::collections::BTreeSet::new();
    for spec in specs {
        // Names do not change images: render under placeholders, with the uid owner references
        // need.
        let mut lab = TracingLab::new("lab", spec);
        lab.metadata.namespace = Some("default".into());
        lab.metadata.uid = Some("images".into());
        let lab_ref = tracing_lab_operator::render::LabRef::new(&lab).context("a lab reference")?;
        let valid = tracing_lab_operator::validate::validated(&lab.spec)
            .map_err(|problems| anyhow::anyhow!("the lab is invalid: {}", problems.join("; ")))?;
        let children = tracing_lab_operator::render::render(&lab_ref, &valid);
        images.extend(tracing_lab_operator::render::images(&children));
    }
    Ok(images.into_iter().collect())
}

async fn serve(args: RunArgs) -> anyhow::Result<()> {
    let telemetry = tracing_lab_telemetry::init("tracing-lab-operator")?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    let shared = Arc::new(Shared::default());
    let listener = tokio::net::TcpListener::bind(args.listen_addr)
        .await
        .with_context(|| format!("binding --listen-addr {}", args.listen_addr))?;
    tracing::info!(addr = %args.listen_addr, "serving /healthz, /readyz and /metrics");
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, http::router(shared.clone()))
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );
    // Returns after SIGTERM/Ctrl-C once the reconciles in flight are done.
    run(
        client,
        Config {
            namespace: args.namespace,
            shared,
            lag: tracing_lab_operator::lag::Config {
                interval: args.lag_interval,
                timeout: args.kafka_timeout,
                bootstrap: args.kafka_bootstrap,
            },
        },
    )
    .await;
    let _ = stop_http.send(());
    server
        .await
        .context("HTTP server task")?
        .context("HTTP server")?;
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .context("telemetry shutdown task")??;
    Ok(())
}
