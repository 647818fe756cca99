//! `PyEventBusConfig` (which bus, validated when built) and the engine / server settings
//! the Python `SubscriptionConfig` passes as a dict.

use std::sync::Arc;
use std::time::Duration;

use fraiseql_eventbus_postgres::{PostgresBus, PostgresBusConfig};
use fraiseql_eventbus_redis::{RedisBus, RedisBusConfig, RedisMode};
use fraiseql_protocol::ConnectionConfig;
use fraiseql_subscriptions::limits::{LimitsConfig, RateLimit};
use fraiseql_subscriptions::security::SecurityPolicy;
use fraiseql_subscriptions::{EngineConfig, EventBus, InMemoryBus, OverflowPolicy};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;

use crate::convert::{json_type, py_to_value};
use crate::errors::{self, config};

#[derive(Debug, Clone)]
enum BusKind {
    Memory { capacity: Option<usize> },
    Redis(Box<RedisBusConfig>),
    Postgres(Box<PostgresBusConfig>),
}

/// Which event bus carries events between publishers and subscribers.
///
/// `memory()` keeps them in this process; `redis(url, ...)` and `postgresql(dsn, ...)`
/// share them between every process on the same server. Settings are checked when the
/// config is built (`ConfigurationError`, a `ValueError`, naming the setting); the server
/// is contacted when the executor starts.
#[pyclass(
    name = "EventBusConfig",
    module = "fraiseql_subscriptions._native",
    frozen
)]
#[derive(Debug, Clone)]
pub(crate) struct PyEventBusConfig {
    kind: BusKind,
}

fn secs(name: &str, value: Option<f64>) -> PyResult<Option<Duration>> {
    value
        .map(|v| {
            Duration::try_from_secs_f64(v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    config(format!(
                        "{name} must be a positive number of seconds, got {v}"
                    ))
                })
        })
        .transpose()
}

#[pymethods]
impl PyEventBusConfig {
    /// The in-process bus (the default): no server, events stay in this process.
    #[staticmethod]
    #[pyo3(signature = (*, capacity = None))]
    fn memory(capacity: Option<usize>) -> PyResult<Self> {
        if capacity == Some(0) {
            return Err(config("capacity must be at least 1"));
        }
        Ok(Self {
            kind: BusKind::Memory { capacity },
        })
    }

    /// A Redis bus: `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS;
    /// a Redis Cluster: `redis-cluster://host:7000,host:7001` (sharded pub/sub, Redis >= 7);
    /// a primary behind Sentinel: `redis-sentinel://host:26379,host:26380?service=mymaster`.
    /// `mode` is `"pubsub"` (lowest latency, at-most-once) or `"streams"` (durable:
    /// resumes after a disconnect); `prefix` separates deployments sharing one Redis.
    /// `consumer_group` (the original plan's argument) is refused with an error naming
    /// `mode="streams"`: a consumer group hands each event to one process only, which
    /// would starve the subscribers of every other process.
    #[staticmethod]
    #[pyo3(signature = (url, *, mode = "pubsub", prefix = None, stream_max_len = None, command_timeout = None, connect_timeout = None, consumer_group = None))]
    #[allow(clippy::too_many_arguments)]
    fn redis(
        url: &str,
        mode: &str,
        prefix: Option<String>,
        stream_max_len: Option<u64>,
        command_timeout: Option<f64>,
        connect_timeout: Option<f64>,
        consumer_group: Option<String>,
    ) -> PyResult<Self> {
        if let Some(group) = consumer_group {
            return Err(config(format!(
                "consumer_group={group:?} is not supported: a Redis consumer group hands each \
                 event to one process only, so subscribers connected to the other processes \
                 would miss it. For delivery that survives a disconnect use \
                 EventBusConfig.redis(url, mode=\"streams\") (every process reads every \
                 event and resumes from its last id); drop consumer_group="
            )));
        }
        let mut cfg = RedisBusConfig::from_url(url).map_err(|e| config(e.to_string()))?;
        let mode: RedisMode = mode
            .parse()
            .map_err(|e: fraiseql_eventbus_redis::RedisBusError| config(e.to_string()))?;
        cfg = cfg.with_mode(mode);
        if let Some(prefix) = prefix {
            cfg = cfg.with_prefix(prefix);
        }
        if let Some(len) = stream_max_len {
            cfg = cfg.with_stream_max_len(len);
        }
        if let Some(timeout) = secs("command_timeout", command_timeout)? {
            cfg = cfg.with_command_timeout(timeout);
        }
        if let Some(timeout) = secs("connect_timeout", connect_timeout)? {
            cfg = cfg.with_connect_timeout(timeout);
        }
        cfg.validate().map_err(|e| config(e.to_string()))?;
        Ok(Self {
            kind: BusKind::Redis(Box::new(cfg)),
        })
    }

    /// A PostgreSQL bus (LISTEN/NOTIFY plus an events table for large payloads and
    /// catch-up): `postgres://user[:password]@host[:port]/db` or the `key=value` form.
    /// `install=False` leaves the schema to your migrations (see the guide).
    /// `connection_string=` is the original plan's name for `dsn` (give one of them).
    #[staticmethod]
    #[pyo3(signature = (dsn = None, *, prefix = None, schema = None, events_table = None, retention_seconds = None, retention_max_count = None, install = true, connect_timeout = None, connection_string = None))]
    #[allow(clippy::too_many_arguments)]
    fn postgresql(
        dsn: Option<&str>,
        prefix: Option<String>,
        schema: Option<String>,
        events_table: Option<String>,
        retention_seconds: Option<f64>,
        retention_max_count: Option<u64>,
        install: bool,
        connect_timeout: Option<f64>,
        connection_string: Option<&str>,
    ) -> PyResult<Self> {
        let dsn = match (dsn, connection_string) {
            (Some(dsn), None) | (None, Some(dsn)) => dsn,
            (Some(_), Some(_)) => {
                return Err(config(
                    "give the PostgreSQL address once: dsn or connection_string, not both",
                ))
            }
            (None, None) => {
                return Err(config(
                    "EventBusConfig.postgresql needs the database address: \
                     postgresql(\"postgres://user@host:5432/db\")",
                ))
            }
        };
        let mut cfg = PostgresBusConfig::from_url(dsn).map_err(|e| config(e.to_string()))?;
        if let Some(prefix) = prefix {
            cfg = cfg.with_prefix(prefix);
        }
        if let Some(schema) = schema {
            cfg = cfg.with_schema(schema);
        }
        if let Some(table) = events_table {
            cfg = cfg.with_events_table(table);
        }
        if let Some(age) = secs("retention_seconds", retention_seconds)? {
            cfg = cfg.with_retention_max_age(Some(age));
        }
        if let Some(count) = retention_max_count {
            cfg = cfg.with_retention_max_count(Some(count));
        }
        if let Some(timeout) = secs("connect_timeout", connect_timeout)? {
            cfg = cfg.with_connect_timeout(timeout);
        }
        cfg = cfg.with_install(install);
        cfg.validate().map_err(|e| config(e.to_string()))?;
        Ok(Self {
            kind: BusKind::Postgres(Box::new(cfg)),
        })
    }

    /// `"memory"`, `"redis"` or `"postgresql"`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.kind {
            BusKind::Memory { .. } => "memory",
            BusKind::Redis(_) => "redis",
            BusKind::Postgres(_) => "postgresql",
        }
    }

    /// For a Redis bus, the deployment its URL names: `"single"`, `"cluster"` or
    /// `"sentinel"`; `None` for the other buses.
    #[getter]
    fn topology(&self) -> Option<&'static str> {
        match &self.kind {
            BusKind::Redis(cfg) => Some(cfg.topology().name()),
            _ => None,
        }
    }

    /// The original plan's name for `kind`.
    #[getter]
    fn bus_type(&self) -> &'static str {
        self.kind()
    }

    fn __repr__(&self) -> String {
        match &self.kind {
            BusKind::Memory { .. } => "EventBusConfig.memory()".to_owned(),
            BusKind::Redis(cfg) => format!("EventBusConfig.redis({:?})", cfg.redacted_url()),
            BusKind::Postgres(cfg) => format!("EventBusConfig.postgresql({:?})", cfg.target()),
        }
    }
}

impl PyEventBusConfig {
    /// The in-memory bus with its default capacity.
    pub(crate) fn default_memory() -> Self {
        Self {
            kind: BusKind::Memory { capacity: None },
        }
    }

    /// Opens the bus (connects to its server).
    pub(crate) async fn connect(&self) -> PyResult<Arc<dyn EventBus>> {
        Ok(match &self.kind {
            BusKind::Memory { capacity } => match capacity {
                Some(capacity) => Arc::new(InMemoryBus::with_capacity(*capacity)),
                None => Arc::new(InMemoryBus::new()),
            },
            BusKind::Redis(cfg) => Arc::new(
                RedisBus::connect((**cfg).clone())
                    .await
                    .map_err(|e| errors::error(errors::Kind::Bus, e.to_string()))?,
            ),
            BusKind::Postgres(cfg) => Arc::new(
                PostgresBus::connect((**cfg).clone())
                    .await
                    .map_err(|e| errors::error(errors::Kind::Bus, e.to_string()))?,
            ),
        })
    }
}

/// Everything the executor is built with, read from the `SubscriptionConfig` dict.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) engine: EngineConfig,
    pub(crate) connection: ConnectionConfig,
    pub(crate) path: String,
    /// Aliases of `path` also served natively (`legacy_path`).
    pub(crate) extra_paths: Vec<String>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) write_timeout: Duration,
    pub(crate) publish_token: Option<String>,
}

/// The keys `Settings::from_dict` understands (the `SubscriptionConfig` fields).
const KEYS: &[&str] = &[
    "preset",
    "path",
    "legacy_path",
    "outbox_capacity",
    "overflow",
    "subscribe_rate",
    "message_rate",
    "delivery_rate",
    "max_subscriptions_per_connection",
    "max_subscriptions_per_user",
    "max_connections_per_user",
    "max_connections",
    "init_timeout",
    "keep_alive",
    "max_message_bytes",
    "max_id_bytes",
    "max_query_depth",
    "multi_tenant",
    "user_arguments",
    "tenant_arguments",
    "act_for_roles",
    "write_timeout",
    "publish_token",
];

fn get<'py>(dict: &Bound<'py, PyDict>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(dict.get_item(key)?.filter(|v| !v.is_none()))
}

fn get_u32(dict: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<u32>> {
    get(dict, key)?
        .map(|v| {
            v.extract::<u32>()
                .map_err(|_| config(format!("{key} must be a non-negative integer")))
        })
        .transpose()
}

fn get_usize(dict: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<usize>> {
    get(dict, key)?
        .map(|v| {
            v.extract::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| config(format!("{key} must be a positive integer")))
        })
        .transpose()
}

fn get_secs(dict: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<Duration>> {
    let value = get(dict, key)?
        .map(|v| {
            v.extract::<f64>()
                .map_err(|_| config(format!("{key} must be a number of seconds")))
        })
        .transpose()?;
    secs(key, value)
}

fn get_strings(dict: &Bound<'_, PyDict>, key: &str) -> PyResult<Vec<String>> {
    let Some(value) = get(dict, key)? else {
        return Ok(Vec::new());
    };
    match py_to_value(&value)? {
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                other => Err(config(format!(
                    "{key} must be a list of str, found {}",
                    json_type(&other)
                ))),
            })
            .collect(),
        other => Err(config(format!(
            "{key} must be a list of str, not {}",
            json_type(&other)
        ))),
    }
}

/// A per-second rate: 0 turns the limit off; burst is twice the rate.
fn rate(
    dict: &Bound<'_, PyDict>,
    key: &str,
    current: Option<RateLimit>,
) -> PyResult<Option<RateLimit>> {
    Ok(match get_u32(dict, key)? {
        None => current,
        Some(0) => None,
        Some(n) => Some(RateLimit::new(n, n.saturating_mul(2))),
    })
}

impl Settings {
    /// Reads the settings; an unknown key or a bad value is a `ConfigurationError` naming it.
    pub(crate) fn from_dict(
        py: Python<'_>,
        schema: Option<String>,
        dict: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        match dict {
            Some(dict) => Self::read(schema, dict),
            None => Self::read(schema, &PyDict::new(py)),
        }
    }

    fn read(schema: Option<String>, dict: &Bound<'_, PyDict>) -> PyResult<Self> {
        for key in dict.keys() {
            let key: String = key.extract()?;
            if !KEYS.contains(&key.as_str()) {
                return Err(config(format!(
                    "unknown setting {key:?}; the settings are: {}",
                    KEYS.join(", ")
                )));
            }
        }
        let preset: String = get(dict, "preset")?
            .map(|v| v.extract())
            .transpose()?
            .unwrap_or_else(|| "production".to_owned());
        let mut limits = match preset.as_str() {
            "development" => LimitsConfig::development(),
            "production" => LimitsConfig::production(),
            "high_performance" | "high-performance" => LimitsConfig::high_performance(),
            other => {
                return Err(config(format!(
                    "unknown preset {other:?}: use \"development\", \"production\" or \"high_performance\""
                )))
            }
        };
        if let Some(capacity) = get_usize(dict, "outbox_capacity")? {
            limits.outbox_capacity = capacity;
        }
        limits.subscribe_rate_per_user =
            rate(dict, "subscribe_rate", limits.subscribe_rate_per_user)?;
        limits.message_rate_per_connection =
            rate(dict, "message_rate", limits.message_rate_per_connection)?;
        limits.delivery_rate_per_subscription =
            rate(dict, "delivery_rate", limits.delivery_rate_per_subscription)?;
        if let Some(n) = get_usize(dict, "max_subscriptions_per_connection")? {
            limits.max_subscriptions_per_connection = Some(n);
        }
        if let Some(n) = get_usize(dict, "max_subscriptions_per_user")? {
            limits.max_subscriptions_per_user = Some(n);
        }
        if let Some(n) = get_usize(dict, "max_connections_per_user")? {
            limits.max_connections_per_user = Some(n);
        }
        limits.validate().map_err(|e| config(e.to_string()))?;
        let overflow = match get(dict, "overflow")?
            .map(|v| v.extract::<String>())
            .transpose()?
            .as_deref()
        {
            None | Some("close") => OverflowPolicy::CloseConnection,
            Some("drop_oldest" | "drop-oldest") => OverflowPolicy::DropOldest,
            Some(other) => {
                return Err(config(format!(
                "unknown overflow policy {other:?}: use \"close\" (close 1008) or \"drop_oldest\""
            )))
            }
        };
        let mut connection = ConnectionConfig::builder();
        if let Some(timeout) = get_secs(dict, "init_timeout")? {
            connection = connection.connection_init_timeout(timeout);
        }
        if let Some(interval) = get_secs(dict, "keep_alive")? {
            connection = connection.keep_alive(interval, interval.saturating_mul(2));
        }
        if let Some(bytes) = get_usize(dict, "max_message_bytes")? {
            connection = connection.max_message_bytes(bytes);
        }
        if let Some(bytes) = get_usize(dict, "max_id_bytes")? {
            connection = connection.max_id_bytes(bytes);
        }
        let connection = connection.build().map_err(|e| config(e.to_string()))?;
        let mut engine = EngineConfig {
            schema,
            limits,
            overflow_policy: overflow,
            security: SecurityPolicy {
                multi_tenant: get(dict, "multi_tenant")?
                    .map(|v| v.is_truthy())
                    .transpose()?
                    .unwrap_or(false),
                user_arguments: get_strings(dict, "user_arguments")?,
                tenant_arguments: get_strings(dict, "tenant_arguments")?,
                act_for_roles: get_strings(dict, "act_for_roles")?,
                ..SecurityPolicy::default()
            },
            ..EngineConfig::default()
        };
        if let Some(depth) = get_usize(dict, "max_query_depth")? {
            engine.document_limits.max_depth = depth;
        }
        let path: String = get(dict, "path")?
            .map(|v| v.extract())
            .transpose()?
            .unwrap_or_else(|| "/graphql".to_owned());
        let extra_paths = get(dict, "legacy_path")?
            .map(|v| v.extract::<String>())
            .transpose()?
            .into_iter()
            .collect();
        Ok(Self {
            engine,
            connection,
            path,
            extra_paths,
            max_connections: get_usize(dict, "max_connections")?,
            write_timeout: get_secs(dict, "write_timeout")?.unwrap_or(Duration::from_secs(10)),
            publish_token: get(dict, "publish_token")?
                .map(|v| v.extract::<String>())
                .transpose()?,
        })
    }
}

/// Registers the classes.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PyEventBusConfig>()
}
