//! Free TCP ports on 127.0.0.1 for the servers a test starts.
//!
//! A lab's ports are all chosen when it is rendered, and its servers bind them up to minutes
//! later (a JVM starting under load), so "free now" is not enough: another test process could
//! choose the same port in between and wire its services to this lab's broker. Every process
//! therefore records what it hands out in a folder all test processes share, one file per port
//! naming the process that holds it; a holder that has exited frees its ports.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};

use crate::procfs;

/// Below Linux's ephemeral range (32768+), so the source port of some outgoing connection never
/// steals one between allocation and the server's bind, and below the NodePort range
/// (30000-32767), which a real node's kube-proxy forwards.
const RANGE: std::ops::Range<u16> = 20000..30000;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port on 127.0.0.1 that is free and that no running test process has handed out.
/// Each process scans from its own starting point (the process id times a step near the golden
/// ratio of the range), so processes started close together rarely contend for one port.
pub fn free_port() -> u16 {
    let mut guard = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let taken = guard.get_or_insert_with(HashSet::new);
    let registry = Registry::lock();
    let span = RANGE.end - RANGE.start;
    let start = (std::process::id() as u64 * 7417 % u64::from(span)) as u16;
    for step in 0..span {
        let port = RANGE.start + (start + step) % span;
        if !taken.contains(&port)
            && registry.is_free(port)
            && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        {
            registry.reserve(port);
            taken.insert(port);
            return port;
        }
    }
    panic!("no free TCP port left in {RANGE:?} on 127.0.0.1");
}

/// The shared folder of reservations, locked against other processes while one chooses.
struct Registry {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl Registry {
    fn lock() -> Self {
        let dir = std::env::temp_dir().join("tracing-lab-ports");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))
            .unwrap_or_else(|e| panic!("opening {}/.lock: {e}", dir.display()));
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .unwrap_or_else(|(_, e)| panic!("locking {}/.lock: {e}", dir.display()));
        Self { dir, _lock: lock }
    }

    /// Whether `port` is unreserved, or reserved by a process that has exited.
    fn is_free(&self, port: u16) -> bool {
        let Ok(holder) = std::fs::read_to_string(self.dir.join(port.to_string())) else {
            return true;
        };
        let mut fields = holder.split_whitespace().map(str::parse::<u64>);
        match (fields.next(), fields.next()) {
            (Some(Ok(pid)), Some(Ok(started))) => {
                u32::try_from(pid).ok().and_then(procfs::start_time) != Some(started)
            }
            _ => true,
        }
    }

    fn reserve(&self, port: u16) {
        let me = std::process::id();
        let started = procfs::start_time(me).expect("this process is alive");
        let path = self.dir.join(port.to_string());
        File::create(&path)
            .and_then(|mut f| writeln!(f, "{me} {started}"))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        for port in ports {
            assert!(RANGE.contains(&port));
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("handed-out port is bindable");
        }
    }

    #[test]
    fn a_port_handed_out_here_is_not_free_for_another_process() {
        let port = free_port();
        let registry = Registry::lock();
        assert!(!registry.is_free(port));
        // A reservation left by an exited process does not hold its port.
        let outside = RANGE.start - 1;
        let stale = registry.dir.join(outside.to_string());
        std::fs::write(&stale, "4294967 1\n").unwrap();
        assert!(registry.is_free(outside));
        std::fs::remove_file(stale).unwrap();
    }
}
