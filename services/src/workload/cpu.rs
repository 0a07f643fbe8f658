//! CPU-heavy operations. Each returns how many items it processed and a checksum (kept so the
//! optimiser cannot remove the work). Sizes are per call; the caller picks them per intensity.

use crate::resources::measure;
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::time::Duration;

/// Light: builds `items` JSON records, serialises, parses back and aggregates them, `rounds` times.
pub fn json_processing(items: u64, rounds: u32) -> u64 {
    let mut checksum = 0u64;
    for round in 0..rounds {
        let records: Vec<serde_json::Value> = (0..items)
            .map(|i| serde_json::json!({"id": i, "round": round, "price": i as f64 * 1.25, "tags": ["a", "b", i.to_string()]}))
            .collect();
        let text = serde_json::to_string(&records).unwrap_or_default();
        let parsed: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        checksum = parsed
            .iter()
            .filter_map(|r| r["id"].as_u64())
            .fold(checksum, u64::wrapping_add);
    }
    black_box(checksum)
}

/// Medium: SHA-256 of each item, chained `rounds` times.
pub fn hash_computation(items: u64, rounds: u32) -> u64 {
    black_box(
        (0..items)
            .map(|i| chained_hash(i, rounds))
            .fold(0, u64::wrapping_add),
    )
}

/// SHA-256 of `value`, re-hashed `rounds - 1` more times; the first 8 bytes as a number.
fn chained_hash(value: u64, rounds: u32) -> u64 {
    let mut digest = Sha256::digest(value.to_le_bytes());
    for _ in 1..rounds {
        digest = Sha256::digest(digest);
    }
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(head)
}

/// Heavy: primality by trial division of `items` numbers from `start`, factorisation of the
/// composites, and a multi-round hash of every prime found.
pub fn intensive_prime_computation(start: u64, items: u64) -> u64 {
    let mut checksum = 0u64;
    for n in start..start + items {
        if is_prime(n) {
            checksum = checksum.wrapping_add(chained_hash(n, 8));
        } else {
            checksum = checksum.wrapping_add(smallest_factor(n));
        }
    }
    black_box(checksum)
}

/// Severe: the heavy computation over `items` numbers split across `threads` threads, plus
/// `memory_mb` of memory written and read back (memory stress). Returns the checksum and the CPU
/// time the helper threads used (the caller's own thread is measured by the caller).
pub fn extreme_cpu_computation(
    start: u64,
    items: u64,
    threads: usize,
    memory_mb: usize,
) -> (u64, Duration) {
    let threads = threads.max(1) as u64;
    let share = items.div_ceil(threads);
    let stress = memory_stress(memory_mb);
    let (sum, helper_cpu) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let from = (start + t * share).min(start + items);
                let to = (from + share).min(start + items);
                scope.spawn(move || measure(|| intensive_prime_computation(from, to - from)))
            })
            .collect();
        workers
            .into_iter()
            .fold((0u64, Duration::ZERO), |(sum, cpu), worker| {
                match worker.join() {
                    Ok((part, usage)) => (sum.wrapping_add(part), cpu + usage.cpu_time),
                    Err(_) => (sum, cpu),
                }
            })
    });
    (black_box(sum.wrapping_add(stress)), helper_cpu)
}

fn memory_stress(memory_mb: usize) -> u64 {
    let mut block = vec![0u8; memory_mb * 1024 * 1024];
    for (i, byte) in block.iter_mut().enumerate().step_by(4096) {
        *byte = i as u8;
    }
    black_box(block.iter().step_by(4096).map(|&b| u64::from(b)).sum())
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    smallest_factor(n) == n
}

fn smallest_factor(n: u64) -> u64 {
    if n.is_multiple_of(2) {
        return 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return d;
        }
        d += 2;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_and_factors_are_right() {
        assert!(is_prime(2) && is_prime(97) && is_prime(1_000_000_007));
        assert!(!is_prime(1) && !is_prime(91));
        assert_eq!(smallest_factor(91), 7);
    }

    #[test]
    fn operations_are_deterministic() {
        assert_eq!(json_processing(10, 2), json_processing(10, 2));
        assert_eq!(hash_computation(5, 3), hash_computation(5, 3));
        assert_ne!(hash_computation(5, 3), hash_computation(5, 4));
        // Splitting over threads computes the same sum as one thread does.
        let one = intensive_prime_computation(1_000, 2_000);
        let (split, helper_cpu) = extreme_cpu_computation(1_000, 2_000, 3, 1);
        assert_eq!(split, one.wrapping_add(memory_stress(1)));
        assert!(helper_cpu > Duration::ZERO);
    }
}
