//! IO-heavy operations: Redis round trips and file writes/reads under `TMPDIR`, run until the
//! call's IO budget is spent, so their wall time holds on any disk. Each returns the number of
//! items (Redis operations + file lines) it processed and the CPU time of its blocking file work.

use crate::resources::measure;
use redis::aio::ConnectionManager;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// Keys written by workloads expire quickly: they are load, not data.
const KEY_TTL_SECONDS: u64 = 60;
/// Length of one file round. A round's real work takes a few milliseconds; the rest of the round
/// is waited out, as a service waits on a slower disk or backend. So IO spans show IO-bound CPU
/// figures, and the disk and Redis see bounded load however long the budget.
pub const ROUND: Duration = Duration::from_millis(50);

pub struct IoTarget {
    pub redis: ConnectionManager,
    pub dir: PathBuf,
    /// Prefix of every key and file name (role + random id), so concurrent calls never collide.
    pub prefix: String,
}

/// Light: SET+GET pairs until `deadline` (at least one pair).
pub async fn redis_basic(target: &mut IoTarget, deadline: Instant) -> anyhow::Result<u64> {
    let mut ops = 0;
    loop {
        let key = format!("workload:{}:{ops}", target.prefix);
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(ops)
            .arg("EX")
            .arg(KEY_TTL_SECONDS)
            .query_async(&mut target.redis)
            .await?;
        let _: Option<u64> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut target.redis)
            .await?;
        ops += 2;
        if Instant::now() >= deadline {
            return Ok(ops);
        }
    }
}

/// Medium to severe: rounds of [`ROUND`] until `deadline` (at least one): write `lines` lines to
/// a file, sync, read them back, store every hundredth line in a Redis hash through one pipeline,
/// delete the file, wait for the round's end.
pub async fn file_and_redis(
    target: &mut IoTarget,
    lines: u64,
    deadline: Instant,
) -> anyhow::Result<(u64, Duration)> {
    let mut items = 0;
    let mut cpu = Duration::ZERO;
    for round in 0u64.. {
        let round_end = Instant::now() + ROUND;
        let path = target
            .dir
            .join(format!("tracing-lab-{}-{round}.txt", target.prefix));
        let (read, usage) =
            tokio::task::spawn_blocking(move || measure(|| write_and_read(&path, lines))).await?;
        cpu += usage.cpu_time;
        let read = read?;
        let hash = format!("workload:{}:lines", target.prefix);
        let mut pipe = redis::pipe();
        for (i, line) in read.iter().enumerate() {
            pipe.hset(&hash, i, line).ignore();
        }
        pipe.expire(&hash, KEY_TTL_SECONDS as i64).ignore();
        pipe.hlen(&hash);
        let (stored,): (u64,) = pipe.query_async(&mut target.redis).await?;
        items += lines + stored;
        tokio::time::sleep_until(round_end.min(deadline)).await;
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok((items, cpu))
}

/// Writes `lines` lines, syncs them to the device, reads them back; returns every hundredth line.
fn write_and_read(path: &Path, lines: u64) -> anyhow::Result<Vec<String>> {
    let result = (|| {
        let mut file = BufWriter::new(std::fs::File::create(path)?);
        for i in 0..lines {
            writeln!(
                file,
                "{i:08} order-event status=processed amount={}",
                i * 7 % 1000
            )?;
        }
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        let reader = BufReader::new(std::fs::File::open(path)?);
        let mut sampled = Vec::new();
        for (i, line) in reader.lines().enumerate() {
            let line = line?;
            if i % 100 == 0 {
                sampled.push(line);
            }
        }
        Ok(sampled)
    })();
    // Best effort: the file is scratch space.
    let _ = std::fs::remove_file(path);
    result
}
