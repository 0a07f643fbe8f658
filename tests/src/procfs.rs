//! What the kernel reports about a process: CPU time per thread (scheduler accounting, in
//! nanoseconds), fields of `/proc/PID/status`, and when it started (a pid with its start time
//! names one process, even after the pid is reused).

use anyhow::{Context, Result};
use std::time::Duration;

/// Name and CPU time used so far of every thread of `pid` (this process when `None`).
pub fn threads_cpu(pid: Option<u32>) -> Result<Vec<(String, Duration)>> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}/task"),
        None => "/proc/self/task".to_owned(),
    };
    let mut threads = Vec::new();
    for task in std::fs::read_dir(&dir).with_context(|| dir.clone())? {
        let task = task?.path();
        let name = std::fs::read_to_string(task.join("comm"))?
            .trim()
            .to_owned();
        let ns: u64 = std::fs::read_to_string(task.join("schedstat"))?
            .split_whitespace()
            .next()
            .context("schedstat")?
            .parse()?;
        threads.push((name, Duration::from_nanos(ns)));
    }
    Ok(threads)
}

/// CPU time used so far by every thread of the processes `pids`.
pub fn processes_cpu(pids: &[u32]) -> Result<Duration> {
    let mut total = Duration::ZERO;
    for pid in pids {
        total += threads_cpu(Some(*pid))?.iter().map(|(_, cpu)| *cpu).sum();
    }
    Ok(total)
}

/// A `kB` field of `/proc/PID/status`, e.g. `VmRSS:`.
pub fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .with_context(|| format!("{field} in /proc/{pid}/status"))
}

/// When the live process `pid` started; `None` once it has exited, even while it waits as a
/// zombie for whoever adopted it (a killed shim's parent is PID 1, which reaps when it likes).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 2..].split_whitespace();
    if matches!(fields.next()?, "Z" | "X") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}
