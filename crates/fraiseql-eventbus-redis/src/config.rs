//! [`RedisBusConfig`]: where Redis is, which delivery mode, and the knobs of each mode.

use std::fmt;
use std::time::Duration;

use crate::error::RedisBusError;

/// How events travel through Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RedisMode {
    /// `PUBLISH` / `SUBSCRIBE`: lowest latency, at-most-once. A node that is disconnected
    /// when an event is published never sees it.
    #[default]
    PubSub,
    /// Redis Streams (`XADD` / `XREAD`): durable. Each node reads every stream it needs from
    /// the last id it saw, so a disconnect or a Redis restart loses nothing that Redis still
    /// holds; events trimmed before they were read are reported as a gap
    /// ([`fraiseql_subscriptions::Event::gap`]).
    Streams,
}

impl RedisMode {
    /// The mode's name as [`fraiseql_subscriptions::BusStats::mode`] shows it.
    #[must_use]
    pub const fn stats_name(self) -> &'static str {
        match self {
            Self::PubSub => "redis/pubsub",
            Self::Streams => "redis/streams",
        }
    }
}

impl std::str::FromStr for RedisMode {
    type Err = RedisBusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pubsub" | "pub/sub" | "pub-sub" => Ok(Self::PubSub),
            "streams" | "stream" => Ok(Self::Streams),
            _ => Err(RedisBusError::InvalidConfig {
                field: "mode",
                reason: format!("{s:?} is not a Redis bus mode: use \"pubsub\" or \"streams\""),
            }),
        }
    }
}

impl fmt::Display for RedisMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PubSub => "pubsub",
            Self::Streams => "streams",
        })
    }
}

/// Which Redis deployment the bus talks to, read from the URL's scheme.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RedisTopology {
    /// One server (`redis://`, `rediss://`).
    #[default]
    Single,
    /// A Redis Cluster (`redis-cluster://`, `rediss-cluster://`): sharded pub/sub
    /// (`SPUBLISH` / `SSUBSCRIBE`, Redis >= 7) in pubsub mode, and hash-tagged stream keys
    /// read slot by slot in streams mode, so a channel's traffic touches only the shard
    /// that owns it.
    Cluster,
    /// A primary found through Redis Sentinel (`redis-sentinel://`, `rediss-sentinel://`):
    /// after a failover the bus reconnects to the promoted replica and listens again.
    Sentinel {
        /// The name the sentinels monitor the primary under (`?service=mymaster`).
        service: String,
    },
}

impl RedisTopology {
    /// `"single"`, `"cluster"` or `"sentinel"`.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Cluster => "cluster",
            Self::Sentinel { .. } => "sentinel",
        }
    }
}

/// The default key and channel prefix.
pub const DEFAULT_PREFIX: &str = "fraiseql:";

/// Configuration of a [`crate::RedisBus`]. Build with [`RedisBusConfig::from_url`] and the
/// `with_*` setters; [`crate::RedisBus::connect`] validates it.
///
/// ```
/// use std::time::Duration;
/// use fraiseql_eventbus_redis::{RedisBusConfig, RedisMode};
/// let config = RedisBusConfig::from_url("redis://:secret@127.0.0.1:6379/2")?
///     .with_mode(RedisMode::Streams)
///     .with_prefix("myapp:")
///     .with_stream_max_len(50_000)
///     .with_reconnect_backoff(Duration::from_millis(50), Duration::from_secs(5));
/// config.validate()?;
/// assert_eq!(config.host(), "127.0.0.1:6379");
/// # Ok::<(), fraiseql_eventbus_redis::RedisBusError>(())
/// ```
#[derive(Clone)]
pub struct RedisBusConfig {
    pub(crate) url: String,
    pub(crate) host: String,
    pub(crate) fred: fred::types::config::Config,
    pub(crate) topology: RedisTopology,
    /// Delivery mode (default [`RedisMode::PubSub`]).
    pub mode: RedisMode,
    /// Prefix of every key and channel name (default `"fraiseql:"`); processes that share
    /// events must use the same prefix, separate deployments on one Redis different ones.
    pub prefix: String,
    /// Streams mode: each channel's stream is trimmed to about this many entries
    /// (`XADD ... MAXLEN ~ cap`). Default 100 000.
    pub stream_max_len: u64,
    /// Streams mode: most entries read per stream per `XREAD`. Default 512.
    pub read_batch: u64,
    /// Streams mode: how long one `XREAD` blocks before it is issued again. Default 1 s;
    /// channel changes wake the reader at once, so this only bounds idle round trips.
    pub read_block: Duration,
    /// First delay before reconnecting; doubles up to `reconnect_max`. Default 50 ms.
    pub reconnect_min: Duration,
    /// Longest delay between reconnect attempts. Default 5 s.
    pub reconnect_max: Duration,
    /// How long a command (publish, subscribe, health check) may wait, including while
    /// Redis is unreachable, before it fails with a clear error. Default 5 s.
    pub command_timeout: Duration,
    /// How long connecting may take. Default 5 s.
    pub connect_timeout: Duration,
    /// Queue length of each [`fraiseql_subscriptions::EventStream`]. Default 4096.
    pub stream_capacity: usize,
    /// Pubsub mode: messages buffered between the Redis connection and the dispatcher;
    /// beyond it a slow node drops messages (counted, logged). Default 65 536.
    pub pubsub_buffer: usize,
    /// Redis Cluster: how often the bus reads the cluster's slot map to notice a slot that
    /// moved (a resharding, a failover) and listen again where the slot now lives; in
    /// streams mode also how often every stream is read even without a wake-up. Everywhere:
    /// how soon a resubscription that failed after a reconnect is tried again. Default 1 s.
    pub topology_check: Duration,
}

impl fmt::Debug for RedisBusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL itself: it may hold a password.
        f.debug_struct("RedisBusConfig")
            .field("host", &self.host)
            .field("topology", &self.topology)
            .field("mode", &self.mode)
            .field("prefix", &self.prefix)
            .field("stream_max_len", &self.stream_max_len)
            .field("read_batch", &self.read_batch)
            .field("read_block", &self.read_block)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("command_timeout", &self.command_timeout)
            .field("stream_capacity", &self.stream_capacity)
            .finish_non_exhaustive()
    }
}

impl RedisBusConfig {
    /// A configuration for the deployment `url` names; everything else takes its default.
    ///
    /// - one server: `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS;
    /// - a Redis Cluster: `redis-cluster://[user[:password]@]host:port[,host:port...]`
    ///   (any reachable nodes; the rest are discovered), or `rediss-cluster://`;
    /// - Sentinel: `redis-sentinel://[user[:password]@]host:port[,host:port...][/db]?service=mymaster`
    ///   (the sentinels' addresses), or `rediss-sentinel://`.
    ///
    /// # Errors
    /// [`RedisBusError::InvalidConfig`] for a URL that is not one of these.
    pub fn from_url(url: &str) -> Result<Self, RedisBusError> {
        use fred::types::config::{Config, ServerConfig};
        let invalid = |reason: String| RedisBusError::InvalidConfig {
            field: "url",
            reason,
        };
        let scheme = url.split_once("://").map(|(s, _)| s);
        let tls = matches!(
            scheme,
            Some("rediss" | "rediss-cluster" | "rediss-sentinel")
        );
        let read = |result: Result<Config, fred::error::Error>| {
            result
                .map_err(|err| invalid(format!("cannot read {:?}: {}", redact(url), err.details())))
        };
        let (fred, topology) = match scheme {
            Some("redis" | "rediss") => (
                read(Config::from_url_centralized(url))?,
                RedisTopology::Single,
            ),
            Some("redis-cluster" | "rediss-cluster") => {
                let fred_url = fred_multi_host_url(url, None).map_err(invalid)?;
                (
                    read(Config::from_url_clustered(&fred_url))?,
                    RedisTopology::Cluster,
                )
            }
            Some("redis-sentinel" | "rediss-sentinel") => {
                let service = query_value(url, "service")
                    .or_else(|| query_value(url, "sentinelServiceName"))
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        invalid(format!(
                            "{:?} names no service: add ?service=<the name the sentinels \
                             monitor the primary under>, e.g. ?service=mymaster",
                            redact(url)
                        ))
                    })?;
                let fred_url = fred_multi_host_url(url, Some(&service)).map_err(invalid)?;
                (
                    read(Config::from_url_sentinel(&fred_url))?,
                    RedisTopology::Sentinel { service },
                )
            }
            _ => {
                return Err(invalid(format!(
                    "{:?} is not a Redis URL: use redis://host:6379[/db], rediss://host:6380 \
                     (TLS), redis-cluster://host:7000,host:7001 or \
                     redis-sentinel://host:26379,host:26380?service=mymaster",
                    redact(url)
                )))
            }
        };
        if tls && !cfg!(feature = "tls") {
            return Err(invalid(format!(
                "{}:// needs the `tls` feature of fraiseql-eventbus-redis",
                scheme.unwrap_or_default()
            )));
        }
        let servers = |servers: &[fred::types::config::Server]| {
            let mut names: Vec<String> = servers
                .iter()
                .map(|s| format!("{}:{}", s.host, s.port))
                .collect();
            names.sort();
            names.join(",")
        };
        let host = match (&fred.server, &topology) {
            (ServerConfig::Centralized { server }, _) => format!("{}:{}", server.host, server.port),
            (ServerConfig::Clustered { hosts, .. }, _) => format!("cluster {}", servers(hosts)),
            (ServerConfig::Sentinel { hosts, .. }, RedisTopology::Sentinel { service }) => {
                format!("sentinel {service}@{}", servers(hosts))
            }
            _ => redact(url),
        };
        Ok(Self {
            url: url.to_owned(),
            host,
            fred,
            topology,
            mode: RedisMode::default(),
            prefix: DEFAULT_PREFIX.to_owned(),
            stream_max_len: 100_000,
            read_batch: 512,
            read_block: Duration::from_secs(1),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            stream_capacity: fraiseql_subscriptions::DEFAULT_STREAM_CAPACITY,
            pubsub_buffer: 65_536,
            topology_check: Duration::from_secs(1),
        })
    }

    /// The deployment the URL names: one server, a cluster, or a primary behind Sentinel.
    #[must_use]
    pub const fn topology(&self) -> &RedisTopology {
        &self.topology
    }

    /// The server as `host:port` (`cluster host:port,...` or `sentinel service@host:port,...`),
    /// for messages (never the password).
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The URL with any password replaced by `***`.
    #[must_use]
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// Sets the delivery mode.
    #[must_use]
    pub const fn with_mode(mut self, mode: RedisMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the key and channel prefix.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the approximate cap of each channel's stream (streams mode).
    #[must_use]
    pub const fn with_stream_max_len(mut self, max_len: u64) -> Self {
        self.stream_max_len = max_len;
        self
    }

    /// Sets how many entries one `XREAD` takes per stream, and how long it blocks.
    #[must_use]
    pub const fn with_read(mut self, batch: u64, block: Duration) -> Self {
        self.read_batch = batch;
        self.read_block = block;
        self
    }

    /// Sets the reconnect backoff: first delay, doubled up to `max`.
    #[must_use]
    pub const fn with_reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max;
        self
    }

    /// Sets how long a command may wait before failing.
    #[must_use]
    pub const fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Sets how long connecting may take.
    #[must_use]
    pub const fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the queue length of each event stream.
    #[must_use]
    pub const fn with_stream_capacity(mut self, capacity: usize) -> Self {
        self.stream_capacity = capacity;
        self
    }

    /// Sets how often a cluster's slot map is checked (and, in streams mode, every stream
    /// read without a wake-up).
    #[must_use]
    pub const fn with_topology_check(mut self, every: Duration) -> Self {
        self.topology_check = every;
        self
    }

    /// Sets the pubsub-mode message buffer.
    #[must_use]
    pub const fn with_pubsub_buffer(mut self, buffer: usize) -> Self {
        self.pubsub_buffer = buffer;
        self
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`RedisBusError::InvalidConfig`] naming the setting and what to change.
    pub fn validate(&self) -> Result<(), RedisBusError> {
        let invalid = |field: &'static str, reason: &str| {
            Err(RedisBusError::InvalidConfig {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.prefix.is_empty() {
            return invalid(
                "prefix",
                "the key prefix is empty: use e.g. \"fraiseql:\" so bus keys are recognisable",
            );
        }
        if self.prefix.len() > 128 || self.prefix.chars().any(char::is_control) {
            return invalid(
                "prefix",
                "the key prefix must be at most 128 bytes with no control characters",
            );
        }
        if self.stream_max_len < 100 {
            return invalid(
                "stream_max_len",
                "must be at least 100 (Redis trims approximately, in nodes of ~100 entries)",
            );
        }
        if self.read_batch == 0 || self.read_batch > 100_000 {
            return invalid("read_batch", "must be between 1 and 100000");
        }
        if self.read_block < Duration::from_millis(1) || self.read_block > Duration::from_secs(60) {
            return invalid("read_block", "must be between 1 ms and 60 s");
        }
        if self.reconnect_min.is_zero() || self.reconnect_min > self.reconnect_max {
            return invalid(
                "reconnect_min",
                "must be above zero and at most reconnect_max",
            );
        }
        if self.command_timeout < Duration::from_millis(10) {
            return invalid("command_timeout", "must be at least 10 ms");
        }
        if self.connect_timeout < Duration::from_millis(10) {
            return invalid("connect_timeout", "must be at least 10 ms");
        }
        if self.stream_capacity == 0 {
            return invalid("stream_capacity", "must be at least 1");
        }
        if self.pubsub_buffer == 0 {
            return invalid("pubsub_buffer", "must be at least 1");
        }
        if self.topology_check < Duration::from_millis(10)
            || self.topology_check > Duration::from_secs(60)
        {
            return invalid("topology_check", "must be between 10 ms and 60 s");
        }
        Ok(())
    }

    /// The Redis key of a channel's stream, or the Redis channel of a channel. On a cluster
    /// the channel is the key's hash tag (`fraiseql:{room:1}`): the slot, and so the shard,
    /// follows the channel alone, and a stream and its wake-up channel share one.
    pub(crate) fn key_of(&self, channel: &str) -> String {
        if self.topology == RedisTopology::Cluster {
            format!("{}{{{channel}}}", self.prefix)
        } else {
            format!("{}{channel}", self.prefix)
        }
    }

    /// The channel a key of [`Self::key_of`] names, if it is one of this bus's.
    pub(crate) fn channel_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(self.prefix.as_str())?;
        if self.topology == RedisTopology::Cluster {
            rest.strip_prefix('{')?.strip_suffix('}')
        } else {
            Some(rest)
        }
    }
}

/// The value of `name` in `url`'s query, if present.
fn query_value(url: &str, name: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| value.to_owned())
    })
}

/// `scheme://auth@h1:p1,h2:p2/path?query` as fred reads several hosts:
/// `scheme://auth@h1:p1/path?node=h2:p2&...`, with `service=` renamed `sentinelServiceName=`.
fn fred_multi_host_url(url: &str, service: Option<&str>) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{:?} has no scheme", redact(url)))?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (auth, hosts) = match authority.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), authority),
    };
    let mut hosts = hosts.split(',').map(str::trim).filter(|h| !h.is_empty());
    let first = hosts
        .next()
        .ok_or_else(|| format!("{:?} names no host", redact(url)))?;
    let mut params: Vec<String> = hosts.map(|h| format!("node={h}")).collect();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if key != "service" && key != "sentinelServiceName" {
            params.push(pair.to_owned());
        }
    }
    if let Some(service) = service {
        params.push(format!("sentinelServiceName={service}"));
    }
    let query = if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join("&"))
    };
    Ok(format!("{scheme}://{auth}{first}{path}{query}"))
}

/// `url` with the password (if any) replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{path}")
            } else {
                format!("{scheme}://{user}@{host}{path}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn from_url_reads_host_and_defaults() {
        let config = RedisBusConfig::from_url("redis://user:pw@example.com:6380/3").unwrap();
        assert_eq!(config.host(), "example.com:6380");
        assert_eq!(config.mode, RedisMode::PubSub);
        assert_eq!(config.prefix, "fraiseql:");
        assert_eq!(config.redacted_url(), "redis://user:***@example.com:6380/3");
        assert!(!format!("{config:?}").contains("pw"));
        config.validate().unwrap();
    }

    #[test]
    fn non_redis_urls_are_refused_with_the_fix() {
        let err = RedisBusConfig::from_url("http://x").err().unwrap();
        assert!(err.to_string().contains("redis://host:6379"), "{err}");
        let err = RedisBusConfig::from_url("not a url").err().unwrap();
        assert!(err.to_string().contains("url"), "{err}");
    }

    #[test]
    fn validate_names_the_setting() {
        let base = RedisBusConfig::from_url("redis://127.0.0.1").unwrap();
        let err = base.clone().with_prefix("").validate().unwrap_err();
        assert!(err.to_string().contains("prefix"), "{err}");
        let err = base.clone().with_stream_max_len(5).validate().unwrap_err();
        assert!(err.to_string().contains("stream_max_len"), "{err}");
        let err = base
            .with_read(0, Duration::from_millis(5))
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("read_batch"), "{err}");
    }

    #[test]
    fn cluster_urls_list_their_nodes_and_tag_keys_by_channel() {
        let config =
            RedisBusConfig::from_url("redis-cluster://:pw@10.0.0.1:7000,10.0.0.2:7001").unwrap();
        assert_eq!(config.topology(), &RedisTopology::Cluster);
        assert_eq!(config.host(), "cluster 10.0.0.1:7000,10.0.0.2:7001");
        assert!(!format!("{config:?}").contains("pw"));
        assert_eq!(config.key_of("room:1"), "fraiseql:{room:1}");
        assert_eq!(config.channel_of("fraiseql:{room:1}"), Some("room:1"));
        assert_eq!(config.channel_of("other:{room:1}"), None);
        // fred's own spelling works too.
        let config = RedisBusConfig::from_url("redis-cluster://h1:7000?node=h2:7001").unwrap();
        assert_eq!(config.host(), "cluster h1:7000,h2:7001");
        config.validate().unwrap();
    }

    #[test]
    fn sentinel_urls_need_a_service() {
        let config =
            RedisBusConfig::from_url("redis-sentinel://s1:26379,s2:26380/2?service=mymaster")
                .unwrap();
        assert_eq!(
            config.topology(),
            &RedisTopology::Sentinel {
                service: "mymaster".to_owned()
            }
        );
        assert_eq!(config.host(), "sentinel mymaster@s1:26379,s2:26380");
        assert_eq!(config.key_of("room:1"), "fraiseql:room:1");
        let err = RedisBusConfig::from_url("redis-sentinel://s1:26379").unwrap_err();
        assert!(err.to_string().contains("?service="), "{err}");
    }

    #[test]
    fn single_server_keys_are_prefix_and_channel() {
        let config = RedisBusConfig::from_url("redis://127.0.0.1").unwrap();
        assert_eq!(config.topology().name(), "single");
        assert_eq!(config.key_of("a"), "fraiseql:a");
        assert_eq!(config.channel_of("fraiseql:a"), Some("a"));
    }

    #[test]
    fn modes_parse_and_name_themselves() {
        assert_eq!("streams".parse::<RedisMode>().unwrap(), RedisMode::Streams);
        assert_eq!("PubSub".parse::<RedisMode>().unwrap(), RedisMode::PubSub);
        let err = "kafka".parse::<RedisMode>().unwrap_err();
        assert!(
            err.to_string().contains("\"pubsub\" or \"streams\""),
            "{err}"
        );
        assert_eq!(RedisMode::Streams.stats_name(), "redis/streams");
    }
}
