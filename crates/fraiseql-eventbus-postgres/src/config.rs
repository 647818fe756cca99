//! [`PostgresBusConfig`]: where the bus connects and how it names, keeps and retries things.

use std::str::FromStr;
use std::time::Duration;

use crate::error::PostgresBusError;

/// NOTIFY refuses payloads of 8000 bytes or more; the threshold stays below that.
const NOTIFY_HARD_LIMIT: usize = 7999;
/// Longest prefix, so that prefix + a 32-character md5 fits PostgreSQL's 63-byte names.
const MAX_PREFIX_BYTES: usize = 31;
/// Longest table name, so that the derived `_meta` and index names fit 63 bytes.
const MAX_TABLE_BYTES: usize = 40;

/// How to reach PostgreSQL and how the bus names, keeps and retries things.
///
/// Build with [`PostgresBusConfig::from_url`] and the `with_*` setters; [`PostgresBus::connect`]
/// calls [`PostgresBusConfig::validate`] before anything else.
///
/// ```
/// use std::time::Duration;
/// use fraiseql_eventbus_postgres::PostgresBusConfig;
/// let config = PostgresBusConfig::from_url("postgres://postgres@127.0.0.1:5432/test")?
///     .with_prefix("shop_")
///     .with_retention_max_age(Some(Duration::from_secs(3600)));
/// config.validate()?;
/// assert_eq!(config.target(), "127.0.0.1:5432/test");
/// # Ok::<(), fraiseql_eventbus_postgres::PostgresBusError>(())
/// ```
///
/// [`PostgresBus::connect`]: crate::PostgresBus::connect
#[derive(Clone)]
#[must_use]
pub struct PostgresBusConfig {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) prefix: String,
    pub(crate) schema: String,
    pub(crate) events_table: String,
    pub(crate) notify_threshold: usize,
    pub(crate) retention_max_age: Option<Duration>,
    pub(crate) retention_max_count: Option<u64>,
    pub(crate) prune_interval: Duration,
    pub(crate) reconnect_initial: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) keepalive_interval: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) install: bool,
    pub(crate) stream_capacity: usize,
    pub(crate) application_name: String,
}

impl std::fmt::Debug for PostgresBusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password: only what `target()` shows.
        f.debug_struct("PostgresBusConfig")
            .field("target", &self.target())
            .field("prefix", &self.prefix)
            .field("schema", &self.schema)
            .field("events_table", &self.events_table)
            .field("notify_threshold", &self.notify_threshold)
            .field("retention_max_age", &self.retention_max_age)
            .field("retention_max_count", &self.retention_max_count)
            .field("prune_interval", &self.prune_interval)
            .field("reconnect_initial", &self.reconnect_initial)
            .field("reconnect_max", &self.reconnect_max)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("install", &self.install)
            .finish_non_exhaustive()
    }
}

impl PostgresBusConfig {
    /// The default NOTIFY channel prefix.
    pub const DEFAULT_PREFIX: &'static str = "fraiseql_";
    /// The default events table.
    pub const DEFAULT_EVENTS_TABLE: &'static str = "fraiseql_events";
    /// The default largest event sent inside a notification, in bytes of wire JSON.
    pub const DEFAULT_NOTIFY_THRESHOLD: usize = 7900;

    /// A configuration for the server `url` names (`postgres://user[:password]@host[:port]/db`,
    /// or the `key=value` form), with the defaults: prefix `fraiseql_`, table
    /// `public.fraiseql_events`, events kept one hour and at most one million rows, reconnect
    /// backoff from 100 ms to 5 s, schema installed on connect.
    ///
    /// Two query parameters of the URL form are the bus's own and are removed before the
    /// rest goes to the client: `fraiseql_schema` and `fraiseql_events_table` (so a server
    /// taking only a URL can still be pointed at another schema), e.g.
    /// `postgres://app@db/shop?fraiseql_schema=events`.
    ///
    /// # Errors
    /// [`PostgresBusError::InvalidUrl`] when `url` cannot be parsed.
    pub fn from_url(url: &str) -> Result<Self, PostgresBusError> {
        let (url, schema, events_table) = take_own_params(url);
        let pg =
            tokio_postgres::Config::from_str(&url).map_err(|err| PostgresBusError::InvalidUrl {
                message: crate::error::describe(&err),
            })?;
        if pg.get_hosts().is_empty() {
            return Err(PostgresBusError::InvalidUrl {
                message: "no host given".to_owned(),
            });
        }
        Ok(Self {
            pg,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            schema: schema.unwrap_or_else(|| "public".to_owned()),
            events_table: events_table.unwrap_or_else(|| Self::DEFAULT_EVENTS_TABLE.to_owned()),
            notify_threshold: Self::DEFAULT_NOTIFY_THRESHOLD,
            retention_max_age: Some(Duration::from_secs(3600)),
            retention_max_count: Some(1_000_000),
            prune_interval: Duration::from_secs(60),
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            install: true,
            stream_capacity: fraiseql_subscriptions::DEFAULT_STREAM_CAPACITY,
            application_name: "fraiseql".to_owned(),
        })
    }

    /// The NOTIFY channel prefix shared by every process of one deployment (1 to 31 bytes of
    /// ASCII letters, digits and `_`). One prefix per events table.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The schema holding the events table and the `fraiseql_*` functions (created if missing).
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The events table's name (at most 40 bytes; created if missing).
    pub fn with_events_table(mut self, table: impl Into<String>) -> Self {
        self.events_table = table.into();
        self
    }

    /// Events whose wire JSON is larger than this many bytes travel by reference: the
    /// notification carries the row's sequence number and listeners read the row (64..=7978).
    pub const fn with_notify_threshold(mut self, bytes: usize) -> Self {
        self.notify_threshold = bytes;
        self
    }

    /// Prune events older than this (`None`: no age bound).
    pub const fn with_retention_max_age(mut self, age: Option<Duration>) -> Self {
        self.retention_max_age = age;
        self
    }

    /// Keep at most this many events (`None`: no count bound).
    pub const fn with_retention_max_count(mut self, count: Option<u64>) -> Self {
        self.retention_max_count = count;
        self
    }

    /// How often this process prunes the events table (at least 1 s).
    pub const fn with_prune_interval(mut self, interval: Duration) -> Self {
        self.prune_interval = interval;
        self
    }

    /// Reconnect backoff: the first wait, doubled after each failure up to `max`.
    pub const fn with_reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.reconnect_initial = initial;
        self.reconnect_max = max;
        self
    }

    /// How often the listening connection is checked (a `SELECT` that also advances the
    /// catch-up position while the bus's channels are quiet).
    pub const fn with_keepalive_interval(mut self, interval: Duration) -> Self {
        self.keepalive_interval = interval;
        self
    }

    /// How long one connection attempt may take.
    pub const fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether [`PostgresBus::connect`](crate::PostgresBus::connect) installs (or upgrades)
    /// the events table and functions (default `true`; turn off when migrations do it,
    /// see [`install_sql`](crate::install_sql)).
    pub const fn with_install(mut self, install: bool) -> Self {
        self.install = install;
        self
    }

    /// How many events each stream queues before the listener waits (at least 1).
    pub const fn with_stream_capacity(mut self, capacity: usize) -> Self {
        self.stream_capacity = capacity;
        self
    }

    /// The `application_name` the bus's connections report in `pg_stat_activity`
    /// (suffixed with `-listen` and `-publish`).
    pub fn with_application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    /// The NOTIFY channel prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The schema of the events table and functions.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The events table's name.
    #[must_use]
    pub fn events_table(&self) -> &str {
        &self.events_table
    }

    /// `host:port/database` for messages (never the user's password).
    #[must_use]
    pub fn target(&self) -> String {
        use tokio_postgres::config::Host;
        let hosts: Vec<String> = self
            .pg
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let name = match host {
                    Host::Tcp(name) => name.clone(),
                    #[cfg(unix)]
                    Host::Unix(path) => path.display().to_string(),
                };
                let port = self
                    .pg
                    .get_ports()
                    .get(i)
                    .or_else(|| self.pg.get_ports().first())
                    .copied()
                    .unwrap_or(5432);
                format!("{name}:{port}")
            })
            .collect();
        format!(
            "{}/{}",
            hosts.join(","),
            self.pg
                .get_dbname()
                .or_else(|| self.pg.get_user())
                .unwrap_or("postgres")
        )
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`PostgresBusError::InvalidConfig`] naming the first setting out of range and what is
    /// accepted.
    pub fn validate(&self) -> Result<(), PostgresBusError> {
        let bad = |setting: &'static str, reason: String| {
            Err(PostgresBusError::InvalidConfig { setting, reason })
        };
        if self.prefix.is_empty()
            || self.prefix.len() > MAX_PREFIX_BYTES
            || !self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return bad(
                "prefix",
                format!(
                    "{:?} must be 1 to {MAX_PREFIX_BYTES} ASCII letters, digits or underscores",
                    self.prefix
                ),
            );
        }
        for (setting, name, max) in [
            ("schema", &self.schema, 63),
            ("events_table", &self.events_table, MAX_TABLE_BYTES),
        ] {
            if name.is_empty() || name.len() > max || name.chars().any(char::is_control) {
                return bad(
                    setting,
                    format!("{name:?} must be 1 to {max} bytes without control characters"),
                );
            }
        }
        if !(64..=NOTIFY_HARD_LIMIT - 21).contains(&self.notify_threshold) {
            return bad(
                "notify_threshold",
                format!(
                    "{} must be between 64 and {} bytes (NOTIFY payloads stay under 8000)",
                    self.notify_threshold,
                    NOTIFY_HARD_LIMIT - 21
                ),
            );
        }
        if self.retention_max_age.is_some_and(|age| age.is_zero()) {
            return bad(
                "retention_max_age",
                "must be positive, or None for no age bound".to_owned(),
            );
        }
        if self.prune_interval < Duration::from_secs(1) {
            return bad("prune_interval", "must be at least 1 s".to_owned());
        }
        if self.reconnect_initial.is_zero() || self.reconnect_max < self.reconnect_initial {
            return bad(
                "reconnect_backoff",
                format!(
                    "initial ({:?}) must be positive and at most max ({:?})",
                    self.reconnect_initial, self.reconnect_max
                ),
            );
        }
        if self.keepalive_interval < Duration::from_millis(100) {
            return bad("keepalive_interval", "must be at least 100 ms".to_owned());
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must be positive".to_owned());
        }
        if self.stream_capacity == 0 {
            return bad("stream_capacity", "must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// Splits `fraiseql_schema=` and `fraiseql_events_table=` off a URL's query string.
fn take_own_params(url: &str) -> (String, Option<String>, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None, None);
    };
    let (mut schema, mut table) = (None, None);
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some(("fraiseql_schema", value)) => {
                schema = Some(value.to_owned());
                false
            }
            Some(("fraiseql_events_table", value)) => {
                table = Some(value.to_owned());
                false
            }
            _ => true,
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, schema, table)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn config() -> PostgresBusConfig {
        PostgresBusConfig::from_url("postgres://app:secret@db.example:6543/shop").unwrap()
    }

    #[test]
    fn defaults_are_valid_and_target_hides_the_password() {
        let config = config();
        config.validate().unwrap();
        assert_eq!(config.target(), "db.example:6543/shop");
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn the_bus_s_own_url_parameters_are_taken_out() {
        let config = PostgresBusConfig::from_url(
            "postgres://app@db/shop?fraiseql_schema=ev&sslmode=disable&fraiseql_events_table=t",
        )
        .unwrap();
        assert_eq!((config.schema(), config.events_table()), ("ev", "t"));
        assert_eq!(config.target(), "db:5432/shop");
    }

    #[test]
    fn unparsable_url_is_an_invalid_url_error() {
        let err = PostgresBusConfig::from_url("postgres://host:notaport/db").unwrap_err();
        assert!(matches!(err, PostgresBusError::InvalidUrl { .. }), "{err}");
        assert!(err.to_string().contains("invalid PostgreSQL URL"), "{err}");
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let cases = [
            (config().with_prefix("bad-prefix"), "prefix"),
            (config().with_prefix(""), "prefix"),
            (config().with_prefix("p".repeat(32)), "prefix"),
            (config().with_events_table("t".repeat(41)), "events_table"),
            (config().with_notify_threshold(8000), "notify_threshold"),
            (
                config().with_retention_max_age(Some(Duration::ZERO)),
                "retention_max_age",
            ),
            (
                config().with_reconnect_backoff(Duration::from_secs(2), Duration::from_secs(1)),
                "reconnect_backoff",
            ),
            (config().with_stream_capacity(0), "stream_capacity"),
        ];
        for (config, setting) in cases {
            match config.validate() {
                Err(PostgresBusError::InvalidConfig { setting: got, .. }) => {
                    assert_eq!(got, setting);
                }
                other => panic!("{setting}: expected InvalidConfig, got {other:?}"),
            }
        }
    }
}
