use clap::{Parser, Subcommand};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tracing_lab_config::{Role, contract};
use tracing_lab_service::{app, settings::Settings};

/// One of the TracingLab services. Settings come from the environment: the standard OTEL_*
/// variables, and those below (each also a flag, given before the role).
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Subcommand, Clone, Copy)]
enum Command {
    /// HTTP front door: POST /order → Redis + topic `orders`.
    Api,
    /// Consumes `orders`, publishes `processed-orders`.
    Processing,
    /// Consumes `processed-orders`, publishes `notified-orders`.
    Notification,
    /// Consumes `notified-orders`.
    Analytics,
    /// Sends orders to the api at LabConfig.loadgen.ordersPerSecond.
    Loadgen,
}

impl Command {
    fn role(self) -> Option<Role> {
        match self {
            Self::Api => Some(Role::Api),
            Self::Processing => Some(Role::Processing),
            Self::Notification => Some(Role::Notification),
            Self::Analytics => Some(Role::Analytics),
            Self::Loadgen => None,
        }
    }

    fn name(self) -> &'static str {
        self.role().map_or(contract::LOADGEN, Role::name)
    }
}

fn main() -> ExitCode {
    let Cli { command, settings } = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(command, settings))
}

async fn run(command: Command, settings: Settings) -> ExitCode {
    let telemetry = match tracing_lab_telemetry::init(command.name()) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("invalid telemetry settings: {err:#}");
            return ExitCode::from(2);
        }
    };
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));
    tracing::info!(service = command.name(), "starting");
    let result = match command.role() {
        Some(role) => app::run_role(role, settings, stop).await,
        None => app::run_loadgen(settings, stop).await,
    };
    let code = match &result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "failed");
            ExitCode::FAILURE
        }
    };
    // Exporting the last spans blocks; it needs the runtime alive but not this worker thread.
    match tokio::task::spawn_blocking(move || telemetry.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => eprintln!("{err:#}"),
        Err(err) => eprintln!("telemetry shutdown: {err}"),
    }
    code
}

/// SIGTERM (Kubernetes) or SIGINT (a terminal) starts a graceful shutdown.
async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    stop.cancel();
}
