//! librdkafka 2.12 forgets every broker it knows when a metadata response lists topics but no
//! brokers (confluentinc/librdkafka#5301), and a KRaft broker answers so while it is fenced for
//! shutdown: on every `kubectl delete pod` of the lab's single broker. The client then has nobody
//! to ask and stays disconnected after the broker is back. A client that knew the cluster and
//! now knows no broker is given its bootstrap servers again, as a re-bootstrap would.

use anyhow::Context as _;
use rdkafka::bindings::{rd_kafka_brokers_add, rd_kafka_brokers_learned_ids, rd_kafka_mem_free};
use rdkafka::client::{Client, ClientContext};
use std::ffi::CString;
use std::sync::Weak;
use std::time::Duration;

/// How often the client's brokers are looked at; a forgotten cluster costs at most this.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Pause after the bootstrap servers were added, while they connect and answer.
const ADDED_PAUSE: Duration = Duration::from_secs(5);

/// Watches the client of `owner` until `owner` is dropped. Needs a Tokio runtime.
pub(super) fn watch<T, C>(
    owner: Weak<T>,
    client: fn(&T) -> &Client<C>,
    bootstrap: &str,
) -> anyhow::Result<()>
where
    T: Send + Sync + 'static,
    C: ClientContext + 'static,
{
    let servers = CString::new(bootstrap).context("bootstrap servers contain a NUL byte")?;
    tokio::spawn(async move {
        let mut knew_cluster = false;
        loop {
            tokio::time::sleep(CHECK_INTERVAL).await;
            let Some(owner) = owner.upgrade() else {
                return;
            };
            let client = client(&owner);
            if learned_brokers(client) > 0 {
                knew_cluster = true;
                continue;
            }
            if !knew_cluster {
                // Still bootstrapping: the bootstrap servers are there.
                continue;
            }
            tracing::warn!(
                bootstrap = %servers.to_string_lossy(),
                "the Kafka client forgot every broker; adding the bootstrap servers again"
            );
            // SAFETY: the client is alive (`owner` is held) and `servers` is a C string;
            // librdkafka copies it.
            unsafe { rd_kafka_brokers_add(client.native_ptr(), servers.as_ptr()) };
            drop(owner);
            tokio::time::sleep(ADDED_PAUSE).await;
        }
    });
    Ok(())
}

/// Brokers the client learned from metadata (bootstrap servers not counted).
fn learned_brokers<C: ClientContext>(client: &Client<C>) -> usize {
    let mut count = 0;
    // SAFETY: the client is alive; the returned array is librdkafka's to free, with its allocator.
    unsafe {
        let ids = rd_kafka_brokers_learned_ids(client.native_ptr(), &mut count);
        rd_kafka_mem_free(client.native_ptr(), ids.cast());
    }
    count
}
