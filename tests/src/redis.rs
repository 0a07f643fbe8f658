//! A real `redis-server` on 127.0.0.1 without persistence.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;
use tracing_lab_operator::render::{self, Children};

use crate::kubelet::{Loopback, Prepared};
use crate::{assets, ports, process::ChildProcess};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A `redis-server` process (no RDB snapshots, no AOF), killed on drop.
pub struct RedisServer {
    process: ChildProcess,
    port: u16,
    _dir: TempDir,
}

impl RedisServer {
    /// Starts the server and waits until it answers PING.
    pub async fn start() -> Result<Self> {
        let binary = assets::find("redis-server")?;
        let dir = tempfile::Builder::new().prefix("redis-").tempdir()?;
        let port = ports::free_port();
        let mut command = Command::new(binary);
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path());
        Self::spawn(command, port, dir).await
    }

    /// The rendered Redis container: Debian's `redis-server` with the rendered arguments, listening
    /// where `loopback` maps the container's port, its data in the `/data` volume.
    pub async fn start_rendered(children: &Children, loopback: &Loopback) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("redis-").tempdir()?;
        let component = render::redis::REDIS.suffix;
        let prepared = Prepared::new(children, loopback, component, component, dir.path())?;
        let port = loopback.port(component, render::redis::PORT)?;
        let data = prepared
            .volume("/data")
            .context("Redis is rendered without /data")?;
        // The image's entrypoint runs the arguments, which start with the program's name.
        let args = match prepared.args.split_first() {
            Some((program, rest)) if program == "redis-server" => rest.to_vec(),
            _ => bail!("Redis is rendered with arguments {:?}", prepared.args),
        };
        let mut command = Command::new(assets::find("redis-server")?);
        command
            .args(args)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(data);
        Self::spawn(command, port, dir).await
    }

    async fn spawn(command: Command, port: u16, dir: TempDir) -> Result<Self> {
        let mut process = ChildProcess::spawn("redis-server", command)?;
        let url = url(port);
        process
            .wait_until("answering PING", READY_TIMEOUT, || ping(&url))
            .await?;
        Ok(Self {
            process,
            port,
            _dir: dir,
        })
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        url(self.port)
    }

    /// The server process (log, pid, kill).
    pub fn process(&mut self) -> &mut ChildProcess {
        &mut self.process
    }
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

async fn ping(url: &str) -> Result<()> {
    let client = redis::Client::open(url)?;
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting")?;
    let _: String = redis::cmd("PING").query_async(&mut connection).await?;
    Ok(())
}
