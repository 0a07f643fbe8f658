//! Free TCP ports on 127.0.0.1 for the servers a test starts.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

/// Ports are drawn below Linux's ephemeral range (32768+), so the source port of some outgoing
/// connection never steals one between allocation and the server's bind.
const RANGE: std::ops::Range<u16> = 20000..32000;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port on 127.0.0.1 that was free a moment ago and that this process has not handed out
/// before. Each process hands out a block from its own starting point: the process id times a
/// step near the golden ratio of the range, which keeps processes started close together (as
/// parallel tests are) far apart, so one does not take a port the other has not yet bound.
pub fn free_port() -> u16 {
    let mut guard = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let taken = guard.get_or_insert_with(HashSet::new);
    let span = RANGE.end - RANGE.start;
    let start = (std::process::id() as u64 * 7417 % u64::from(span)) as u16;
    for step in 0..span {
        let port = RANGE.start + (start + step) % span;
        if !taken.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            taken.insert(port);
            return port;
        }
    }
    panic!("no free TCP port left in {RANGE:?} on 127.0.0.1");
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
}
