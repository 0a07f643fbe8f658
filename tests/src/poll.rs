//! Waiting for an eventually consistent system (an API server and its controllers) to get there.

use std::time::{Duration, Instant};

/// Pause between two probes: short enough for quick tests, long enough not to load the server.
const INTERVAL: Duration = Duration::from_millis(100);

/// Calls `probe` until it returns `Ok`. Panics after `timeout` with `what` and the probe's last
/// complaint, so a failing test says what it was waiting for and what it saw instead.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    within(timeout, INTERVAL, probe)
        .await
        .unwrap_or_else(|last| panic!("timed out waiting for {what}; last seen: {last}"))
}

/// Calls `probe` every `every` until it returns `Ok`; after `timeout`, gives back the probe's
/// last error, for a caller that has more to say about what it waited for (a log, a status).
pub async fn within<T, E>(
    timeout: Duration,
    every: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() > deadline => return Err(last),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// Reads `value` until it has not changed for `quiet`, and returns it: what settles once a burst
/// of activity (reconciles, restarts, spans on their way) is over. Panics after `timeout` with
/// `what`.
pub async fn settled<T: PartialEq + std::fmt::Debug>(
    what: &str,
    quiet: Duration,
    timeout: Duration,
    mut value: impl AsyncFnMut() -> T,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut last = (value().await, Instant::now());
    loop {
        tokio::time::sleep(INTERVAL).await;
        let now = value().await;
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= quiet {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never settled; last seen: {:?}",
            last.0
        );
    }
}
