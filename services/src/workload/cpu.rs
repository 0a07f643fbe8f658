//! CPU-heavy operations. Each returns a checksum (kept so the optimiser cannot remove the work).
//! Sizes are per call, from the calibration and the intensity's target.

use crate::resources::measure;
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::time::Duration;

/// First number tested by the prime computations: large enough that trial division costs.
pub const PRIME_BASE: u64 = 1_000_000_000;
/// Chained SHA-256 rounds of one hash item.
const HASH_ROUNDS: u32 = 16;

/// Light: builds `records` JSON records, serialises, parses back and aggregates them.
pub fn json_processing(records: u64) -> u64 {
    let records: Vec<serde_json::Value> = (0..records)
        .map(|i| serde_json::json!({"id": i, "price": i as f64 * 1.25, "tags": ["a", "b", i.to_string()]}))
        .collect();
    let text = serde_json::to_string(&records).unwrap_or_default();
    let parsed: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
    black_box(
        parsed
            .iter()
            .filter_map(|r| r["id"].as_u64())
            .fold(0, u64::wrapping_add),
    )
}

/// Medium: for each of `items` values, SHA-256 chained 16 times.
pub fn hash_computation(items: u64) -> u64 {
    black_box(
        (0..items)
            .map(|i| chained_hash(i, HASH_ROUNDS))
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

/// Severe: the heavy computation over `items` numbers from `start`, split across `threads`
/// threads. Returns the checksum and the CPU time the threads used (the caller only waits).
pub fn extreme_cpu_computation(start: u64, items: u64, threads: u32) -> (u64, Duration) {
    let threads = u64::from(threads.max(1));
    let share = items.div_ceil(threads);
    std::thread::scope(|scope| {
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
    })
}

/// `mib` MiB allocated and written, so that resident memory shows it while the caller holds it.
pub fn held_memory(mib: u32) -> Vec<u8> {
    // A non-zero fill: zeroed allocations map pages lazily and would not count as resident.
    black_box(vec![0xA5u8; mib as usize * 1024 * 1024])
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
        assert_eq!(json_processing(10), json_processing(10));
        assert_eq!(hash_computation(5), hash_computation(5));
        assert_ne!(hash_computation(5), hash_computation(6));
        // Splitting over threads computes the same sum as one thread does.
        let one = intensive_prime_computation(1_000, 2_001);
        let (split, cpu) = extreme_cpu_computation(1_000, 2_001, 3);
        assert_eq!(split, one);
        assert!(cpu > Duration::ZERO);
    }

    #[test]
    fn held_memory_is_written() {
        let block = held_memory(2);
        assert_eq!(block.len(), 2 * 1024 * 1024);
        assert!(block.iter().step_by(4096).all(|&b| b == 0xA5));
    }
}
