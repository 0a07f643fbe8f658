//! Wiring of one role: dependencies, the HTTP server, the work loop, and the shutdown order
//! (stop taking work → finish in flight, cancelled at `SHUTDOWN_DRAIN_SECONDS` → commit → flush).

use crate::http::{self, Readiness};
use crate::kafka::{self, Consumer, Producer};
use crate::metrics::Metrics;
use crate::quote::QuoteClient;
use crate::resources::ResourceMonitor;
use crate::roles::{self, Service, until_connected};
use crate::settings::Settings;
use crate::store::Store;
use crate::workload::Simulator;
use anyhow::Context as _;
use axum::Router;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing_lab_config::{Role, quote};

/// Runs `role` until `stop` is cancelled.
pub async fn run_role(
    role: Role,
    settings: Settings,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let monitor = ResourceMonitor::start(&settings.lab().resource_sampling)?;
    let metrics = Arc::new(Metrics::new(monitor.clone()));
    let (client, redis) = redis_connection(&settings.redis_url)?;
    let producer = match role.output_topic() {
        Some(_) => Some(Producer::new(&settings.kafka_bootstrap)?),
        None => None,
    };
    let role_settings = settings.role(role).clone();
    let quote = &settings.lab().quote;
    let quote_client = (role == quote::CLIENT && quote.enabled)
        .then(|| QuoteClient::new(&settings.quote_url, quote))
        .transpose()
        .with_context(|| {
            format!(
                "{}={}",
                tracing_lab_config::contract::env::QUOTE_URL,
                settings.quote_url
            )
        })?;
    let service = Arc::new(Service {
        role,
        faults: role_settings.faults.clone(),
        simulator: Simulator::new(
            role_settings.workload.clone(),
            redis.clone(),
            settings.tmp_dir.clone(),
            role.name(),
        ),
        monitor: monitor.clone(),
        metrics: metrics.clone(),
        store: Store::new(&client, redis.clone()),
        producer: producer.clone(),
        quote: quote_client,
        tracer: crate::spans::tracer(),
        permanent_errors: Default::default(),
    });

    // Topics first: a consumer subscribing to a missing topic would only log errors.
    let topics: Vec<&str> = [role.input_topic(), role.output_topic()]
        .into_iter()
        .flatten()
        .collect();
    until_connected("creating Kafka topics", &stop, || {
        kafka::ensure_topics(
            &settings.kafka_bootstrap,
            &topics,
            settings.topic_partitions,
        )
    })
    .await?;

    let result = match role.input_topic() {
        None => {
            let kafka = producer.clone().context("the api publishes")?;
            let ready = readiness(redis.clone(), move || {
                let kafka = kafka.clone();
                async move { kafka.check().await }
            });
            http::serve(
                settings.listen_addr,
                roles::api::routes(service.clone()),
                ready,
                metrics,
                stop.clone(),
                settings.drain_timeout(),
            )
            .await
        }
        Some(topic) => {
            let group = role
                .consumer_group()
                .context("consumer roles have a group")?;
            let consumer = Arc::new(Consumer::new(&settings.kafka_bootstrap, group, topic)?);
            let (probe, permanent) = (consumer.clone(), service.permanent_errors.clone());
            let ready = readiness(redis.clone(), move || {
                let (probe, permanent) = (probe.clone(), permanent.clone());
                async move {
                    permanent.check()?;
                    probe.check().await
                }
            });
            let routes = if role == quote::SERVER {
                crate::quote::server::routes(service.clone(), quote)
            } else {
                Router::new()
            };
            let server = tokio::spawn(http::serve(
                settings.listen_addr,
                routes,
                ready,
                metrics,
                stop.clone(),
                settings.drain_timeout(),
            ));
            let concurrency = role_settings.concurrency as usize;
            tracing::info!(topic, group, concurrency, "consuming");
            let worker = service.clone();
            let consumed = consumer
                .run(
                    concurrency,
                    stop.clone(),
                    settings.drain_timeout(),
                    move |message, slot| roles::stage::handle(worker.clone(), message, slot),
                )
                .await;
            // The HTTP server stops with `stop`; a consumer failure must stop it too.
            stop.cancel();
            let served = server.await.context("HTTP server task")?;
            consumed.and(served)
        }
    };
    if let Some(producer) = &producer {
        producer.flush().await;
    }
    monitor.stop();
    result
}

/// Runs the load generator until `stop` is cancelled.
pub async fn run_loadgen(settings: Settings, stop: CancellationToken) -> anyhow::Result<()> {
    let monitor = ResourceMonitor::start(&settings.lab().resource_sampling)?;
    let metrics = Arc::new(Metrics::new(monitor.clone()));
    let ready: Readiness = Arc::new(|| Box::pin(async { Ok(()) }));
    let server = tokio::spawn(http::serve(
        settings.listen_addr,
        Router::new(),
        ready,
        metrics.clone(),
        stop.clone(),
        settings.drain_timeout(),
    ));
    let sent = roles::loadgen::run(
        &settings.loadgen_target,
        settings.lab().loadgen.orders_per_second,
        metrics,
        stop.clone(),
    )
    .await;
    stop.cancel();
    let served = server.await.context("HTTP server task")?;
    monitor.stop();
    sent.and(served)
}

/// A Redis connection that connects on first use and reconnects by itself, and its client (where
/// Redis is, for the spans of its calls).
fn redis_connection(url: &str) -> anyhow::Result<(redis::Client, ConnectionManager)> {
    let client = redis::Client::open(url).with_context(|| format!("REDIS_URL={url:?}"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_max_delay(Duration::from_secs(2));
    let redis = client
        .get_connection_manager_lazy(config)
        .context("creating the Redis connection")?;
    Ok((client, redis))
}

/// Ready when Redis answers PING and `kafka` succeeds.
fn readiness<F, Fut>(redis: ConnectionManager, kafka: F) -> Readiness
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let kafka = Arc::new(kafka);
    Arc::new(move || {
        let (mut redis, kafka) = (redis.clone(), kafka.clone());
        Box::pin(async move {
            let _: String = redis::cmd("PING")
                .query_async(&mut redis)
                .await
                .context("Redis unreachable")?;
            kafka().await
        })
    })
}
