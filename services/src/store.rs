//! The order store: Redis, each call on an order's data a client span under the current span,
//! named and described by the database semantic conventions, so that a trace shows every round
//! trip an order made to Redis and how long it took. The workloads' Redis traffic is load, not
//! order data: up to hundreds of round trips a step, summed up on the step's span instead.

use crate::spans::{ActiveSpan, record_exception};
use opentelemetry::KeyValue;
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::SpanKind;
use opentelemetry_semantic_conventions::attribute as semconv;
use redis::ConnectionAddr;
use redis::aio::ConnectionManager;
use std::future::Future;
use std::sync::Arc;

/// One kind of call the services make, as its span describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// `db.query.summary`, also the span's name: low-cardinality, no key or value in it.
    pub summary: &'static str,
    /// `db.operation.name`: the Redis command, or `PIPELINE` for several in one round trip.
    pub operation: &'static str,
    /// `db.stored_procedure.name`: the Lua script an `EVALSHA` runs.
    pub script: Option<&'static str>,
    /// `db.operation.batch.size`: the commands of a pipeline.
    pub batch: Option<i64>,
}

impl Call {
    const fn command(operation: &'static str) -> Self {
        Self {
            summary: operation,
            operation,
            script: None,
            batch: None,
        }
    }

    const fn script(summary: &'static str, script: &'static str) -> Self {
        Self {
            summary,
            operation: "EVALSHA",
            script: Some(script),
            batch: None,
        }
    }

    /// The api stores a new order: its hash and the hash's expiry, in one round trip.
    pub const STORE_ORDER: Self = Self {
        summary: "PIPELINE HSET EXPIRE",
        operation: "PIPELINE",
        script: None,
        batch: Some(2),
    };
    /// The api reads an order for `GET /order/{id}`.
    pub const READ_ORDER: Self = Self::command("HGETALL");
    /// The api removes an order Kafka never received.
    pub const REMOVE_ORDER: Self = Self::command("DEL");
    /// A stage records its progress on the order (and analytics counts it once).
    pub const RECORD_PROGRESS: Self = Self::script("EVALSHA record_progress", "record_progress");
    /// A stage marks the order failed (`faults.errorRate`).
    pub const MARK_FAILED: Self = Self::script("EVALSHA mark_failed", "mark_failed");
}

/// Redis as the services' spans name it.
pub struct Store {
    redis: ConnectionManager,
    tracer: BoxedTracer,
    /// `db.system.name`, `server.address`, `server.port`, `db.namespace`: the same on every call.
    attributes: Arc<[KeyValue]>,
}

impl Store {
    pub fn new(client: &redis::Client, redis: ConnectionManager) -> Self {
        let info = client.get_connection_info();
        let mut attributes = vec![KeyValue::new(semconv::DB_SYSTEM_NAME, "redis")];
        match info.addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                attributes.push(KeyValue::new(semconv::SERVER_ADDRESS, host.clone()));
                attributes.push(KeyValue::new(semconv::SERVER_PORT, i64::from(*port)));
            }
            ConnectionAddr::Unix(path) => attributes.push(KeyValue::new(
                semconv::SERVER_ADDRESS,
                path.display().to_string(),
            )),
            _ => {}
        }
        attributes.push(KeyValue::new(
            semconv::DB_NAMESPACE,
            info.redis_settings().db().to_string(),
        ));
        Self {
            redis,
            tracer: crate::spans::tracer(),
            attributes: attributes.into(),
        }
    }

    /// A handle on the shared connection, for the query that [`Store::traced`] wraps.
    pub fn connection(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Runs `query` in a client span that describes `call`; a failure marks the span failed with
    /// the Redis error's code as `error.type`.
    pub async fn traced<T>(
        &self,
        call: Call,
        query: impl Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        let mut attributes = self.attributes.to_vec();
        attributes.push(KeyValue::new(semconv::DB_OPERATION_NAME, call.operation));
        attributes.push(KeyValue::new(semconv::DB_QUERY_SUMMARY, call.summary));
        if let Some(script) = call.script {
            attributes.push(KeyValue::new(semconv::DB_STORED_PROCEDURE_NAME, script));
        }
        if let Some(batch) = call.batch {
            attributes.push(KeyValue::new(semconv::DB_OPERATION_BATCH_SIZE, batch));
        }
        let span = ActiveSpan::start(
            &self.tracer,
            call.summary,
            SpanKind::Client,
            &opentelemetry::Context::current(),
            attributes,
        );
        let result = span.within(query).await;
        if let Err(err) = &result {
            let kind = error_type(err);
            span.span()
                .set_attribute(KeyValue::new(semconv::ERROR_TYPE, kind.clone()));
            record_exception(&span.span(), &kind, &err.to_string());
        }
        result
    }
}

/// The error's Redis code (`WRONGTYPE`, `NOSCRIPT`…) when the server answered one, else its kind.
fn error_type(err: &redis::RedisError) -> String {
    err.code()
        .map_or_else(|| format!("{:?}", err.kind()), str::to_owned)
}
