//! Child processes (servers and the project's own binaries) whose output goes to a log file, so a
//! failure can show what the process said; they are killed when dropped.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tempfile::NamedTempFile;

use crate::poll;

/// A folder to copy every process's log into when it stops (the logs are temporary files).
const KEEP_LOGS: &str = "TRACING_LAB_KEEP_LOGS";
/// How many log lines an error or a failing test shows.
const TAIL_LINES: usize = 40;
const POLL: Duration = Duration::from_millis(50);

/// A running child process. Its stdout and stderr go to one log file; it runs in its own process
/// group, which is killed (SIGKILL) on drop. If the test is panicking at that moment, the log tail
/// is printed to stderr.
///
/// The child also gets SIGKILL when the thread that spawned it ends (so a test killed by a timeout
/// leaves no server behind): spawn from the test's thread or a runtime worker, never from
/// `spawn_blocking` (its threads exit after 10 s idle, which would kill the child).
pub struct ChildProcess {
    name: String,
    command: Command,
    child: Option<Child>,
    log: NamedTempFile,
}

impl ChildProcess {
    /// Starts `command`, logging to a fresh temporary file. `name` appears in every error.
    pub fn spawn(name: &str, command: Command) -> Result<Self> {
        let log = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .suffix(".log")
            .tempfile()
            .context("creating a log file")?;
        let mut command = command;
        command.process_group(0);
        // SAFETY: the closure only makes the prctl system call, which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut process = Self {
            name: name.to_owned(),
            command,
            child: None,
            log,
        };
        process.start()?;
        Ok(process)
    }

    /// Kills the process if it still runs and starts the same command again; the log continues.
    pub fn respawn(&mut self) -> Result<()> {
        self.kill()?;
        self.start()
    }

    fn start(&mut self) -> Result<()> {
        let out = OpenOptions::new().append(true).open(self.log.path())?;
        let err = out.try_clone()?;
        self.command.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = self.command.spawn().with_context(|| {
            format!("starting {} ({:?})", self.name, self.command.get_program())
        })?;
        self.child = Some(child);
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Process id, or `None` once it has been stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    /// The last `lines` lines the process wrote.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(self.log.path(), lines)
    }

    /// `Some(status)` once the process has exited (it is then reaped).
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(child) => Ok(child.try_wait()?),
            None => bail!("{} was already stopped", self.name),
        }
    }

    /// Calls `probe` until it succeeds. Fails, showing the log tail, when the process exits first
    /// or `timeout` passes (with the probe's last error).
    pub async fn wait_until<F, Fut>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut probe: F,
    ) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        // Ok: the wait is over, reached or not (the process exited); Err: not yet.
        let over = poll::within(timeout, POLL, async || match probe().await {
            Ok(()) => Ok(Ok(())),
            Err(last) => match self.exit_status() {
                Ok(None) => Err(last),
                Ok(Some(status)) => Ok(Err(anyhow!(
                    "{} exited ({}) before {what}; its log ends with:\n{}",
                    self.name,
                    describe(status),
                    self.log_tail(TAIL_LINES)
                ))),
                Err(e) => Ok(Err(e)),
            },
        })
        .await;
        match over {
            Ok(result) => result,
            Err(last) => bail!(
                "{}: {what} not reached within {timeout:?} (last check: {last:#}); its log ends with:\n{}",
                self.name,
                self.log_tail(TAIL_LINES)
            ),
        }
    }

    /// Waits until `GET url` answers with a 2xx status.
    pub async fn wait_http_ok(&mut self, url: &str, timeout: Duration) -> Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        self.wait_until(&format!("GET {url} answering 2xx"), timeout, || async {
            let status = http.get(url).send().await?.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(anyhow!("status {status}"))
            }
        })
        .await
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit; returns its exit status.
    /// If it is still running then, it is killed and an error is returned.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        // Not `poll::within`: a future that polls through an async closure cannot be shown `Send`
        // (the stand-in spawns stops), so this one loop stays here.
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.exit_status()? {
                self.child = None;
                return Ok(status);
            }
            tokio::time::sleep(POLL).await;
        }
        self.kill()?;
        bail!(
            "{} did not exit within {timeout:?} of SIGTERM; its log ends with:\n{}",
            self.name,
            self.log_tail(TAIL_LINES)
        )
    }

    /// Kills the whole process group with SIGKILL and reaps the process; a no-op once stopped.
    pub fn kill(&mut self) -> Result<Option<ExitStatus>> {
        if self.child.is_none() {
            return Ok(None);
        }
        self.signal(Signal::SIGKILL)?;
        let status = self
            .child
            .take()
            .map(|mut child| child.wait())
            .transpose()?;
        Ok(status)
    }

    fn signal(&mut self, signal: Signal) -> Result<()> {
        let Some(child) = &mut self.child else {
            bail!("{} was already stopped", self.name);
        };
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        let group = Pid::from_raw(i32::try_from(child.id())?);
        match killpg(group, signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(err) => Err(anyhow!("sending {signal} to {}: {err}", self.name)),
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; the process group is gone or unreachable either way.
        let _ = self.kill();
        if let Some(dir) = std::env::var_os(KEEP_LOGS) {
            let kept = Path::new(&dir).join(self.log.path().file_name().unwrap_or_default());
            if let Err(err) = std::fs::copy(self.log.path(), &kept) {
                eprintln!(
                    "keeping the log of {} in {}: {err}",
                    self.name,
                    kept.display()
                );
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {} ({}) ---\n{}",
                self.name,
                self.log.path().display(),
                self.log_tail(TAIL_LINES)
            );
        }
    }
}

/// The project's binary `name` (`tracing-lab-service`, `tracing-lab-operator`) from the cargo target
/// folder: the running test's own profile folder first, then `$CARGO_TARGET_DIR` and the
/// workspace's `target/`, debug before release.
pub fn project_binary(name: &str) -> Result<PathBuf> {
    let own_profile_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()));
    let target_dirs = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")]);
    let profile_dirs = target_dirs.flat_map(|t| [t.join("debug"), t.join("release")]);
    own_profile_dir
        .into_iter()
        .chain(profile_dirs)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            anyhow!("binary `{name}` not found in the cargo target folder: run `cargo build -p {name}` first")
        })
}

/// A [`Command`] for the project's binary `name` (see [`project_binary`]).
pub fn project_command(name: &str) -> Result<Command> {
    Ok(Command::new(project_binary(name)?))
}

/// `make -C REPOSITORY --no-print-directory` as someone types it in the repository, not as a
/// sub-make of the `make test` the suite may run under, whose flags would leak in. Found on this
/// process's PATH, so that a test may give the recipes another.
pub fn make() -> Result<Command> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let make = std::env::split_paths(&path)
        .map(|dir| dir.join("make"))
        .find(|candidate| candidate.is_file())
        .context("make is not on PATH")?;
    let mut command = Command::new(make);
    command
        .arg("-C")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .arg("--no-print-directory");
    for inherited in ["MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"] {
        command.env_remove(inherited);
    }
    Ok(command)
}

/// "exit code 1" or "signal 9".
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// Last `lines` lines of a log file; reads at most its last 64 KiB.
fn tail(path: &Path, lines: usize) -> String {
    const MAX: u64 = 64 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(log {} unreadable: {err})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[tokio::test]
    async fn early_exit_is_reported_with_the_log_tail() {
        let mut process = ChildProcess::spawn("failing", shell("echo boom-line; exit 3")).unwrap();
        let err = process
            .wait_until("never", Duration::from_secs(5), || async {
                Err(anyhow!("not yet"))
            })
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exit code 3") && err.contains("boom-line"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn terminate_returns_the_exit_status_and_respawn_appends_to_the_log() {
        let script =
            "trap 'echo got-term; exit 7' TERM; echo started; while :; do sleep 0.05; done";
        let mut process = ChildProcess::spawn("looping", shell(script)).unwrap();
        let log = process.log_path().to_path_buf();
        process
            .wait_until("started", Duration::from_secs(5), || async {
                let text = std::fs::read_to_string(&log)?;
                text.contains("started")
                    .then_some(())
                    .ok_or_else(|| anyhow!("not started"))
            })
            .await
            .unwrap();
        let status = process.terminate(Duration::from_secs(5)).await.unwrap();
        assert_eq!(status.code(), Some(7));
        process.respawn().unwrap();
        assert!(process.exit_status().unwrap().is_none());
        assert_eq!(process.kill().unwrap().and_then(|s| s.signal()), Some(9));
        assert!(process.log_tail(10).contains("got-term"));
    }

    #[test]
    fn missing_project_binary_says_how_to_build_it() {
        let err = project_binary("no-such-binary").unwrap_err().to_string();
        assert!(err.contains("cargo build -p no-such-binary"), "{err}");
    }
}
