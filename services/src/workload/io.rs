//! IO-heavy operations: Redis round trips and file writes/reads under `TMPDIR`. Each returns the
//! number of items (Redis operations + file lines) it processed and the CPU time of its blocking
//! file work.

use crate::resources::measure;
use redis::aio::ConnectionManager;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Keys written by workloads expire quickly: they are load, not data.
const KEY_TTL_SECONDS: u64 = 60;

pub struct IoTarget {
    pub redis: ConnectionManager,
    pub dir: PathBuf,
    /// Prefix of every key and file name (role + random id), so concurrent calls never collide.
    pub prefix: String,
}

/// Light: `ops` SET+GET pairs.
pub async fn redis_basic(target: &mut IoTarget, ops: u64) -> anyhow::Result<u64> {
    for i in 0..ops {
        let key = format!("workload:{}:{i}", target.prefix);
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(i)
            .arg("EX")
            .arg(KEY_TTL_SECONDS)
            .query_async(&mut target.redis)
            .await?;
        let _: Option<u64> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut target.redis)
            .await?;
    }
    Ok(ops * 2)
}

/// Medium to severe: `passes` times, write `lines` lines to a file, read them back, and store a
/// digest of every hundredth line in a Redis hash through one pipeline; then delete the file.
pub async fn file_and_redis(
    target: &mut IoTarget,
    lines: u64,
    passes: u32,
) -> anyhow::Result<(u64, Duration)> {
    let mut items = 0;
    let mut cpu = Duration::ZERO;
    for pass in 0..passes {
        let path = target
            .dir
            .join(format!("tracing-lab-{}-{pass}.txt", target.prefix));
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
