//! Names on the PostgreSQL side (NOTIFY channels, quoted identifiers) and the SQL shipped
//! with the crate (`sql/install.sql`).

use md5::{Digest, Md5};

use crate::config::PostgresBusConfig;
use crate::error::{describe, PostgresBusError};

/// PostgreSQL's identifier limit (NAMEDATALEN - 1); NOTIFY channels are identifiers.
pub const MAX_NOTIFY_CHANNEL_BYTES: usize = 63;

const INSTALL_TEMPLATE: &str = include_str!("../sql/install.sql");

/// The NOTIFY channel carrying FraiseQL `channel`: `prefix || channel`, or
/// `prefix || md5(channel)` (hex) when that would pass PostgreSQL's 63-byte identifier limit.
/// The shipped SQL (`fraiseql_notify_channel`) computes the same name, so SQL publishers and
/// Rust listeners meet. Two channels may share a NOTIFY channel (a hash collision, or a
/// channel that looks like a hash); listeners route by the channel inside the event, so
/// that costs a wasted wake-up, never a misdelivery.
///
/// ```
/// use fraiseql_eventbus_postgres::notify_channel;
/// assert_eq!(notify_channel("fraiseql_", "room:1"), "fraiseql_room:1");
/// let long = "x".repeat(100);
/// assert_eq!(notify_channel("fraiseql_", &long).len(), "fraiseql_".len() + 32);
/// ```
#[must_use]
pub fn notify_channel(prefix: &str, channel: &str) -> String {
    if prefix.len() + channel.len() <= MAX_NOTIFY_CHANNEL_BYTES {
        return format!("{prefix}{channel}");
    }
    let digest = Md5::digest(channel.as_bytes());
    let mut name = String::with_capacity(prefix.len() + 32);
    name.push_str(prefix);
    for byte in digest.iter() {
        use std::fmt::Write;
        let _ = write!(name, "{byte:02x}");
    }
    name
}

/// `name` as a quoted SQL identifier (`"` doubled), safe for LISTEN and DDL.
#[must_use]
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The install script for `config`: the events table, the `fraiseql_*` functions
/// (`fraiseql_publish`, `fraiseql_watch_table`, `fraiseql_unwatch_table`, `fraiseql_prune`,
/// ...), idempotent. Apply it with your migration tool when you turn
/// [`PostgresBusConfig::with_install`] off, or call [`install`].
///
/// # Errors
/// [`PostgresBusError::InvalidConfig`] when the configuration does not validate.
pub fn install_sql(config: &PostgresBusConfig) -> Result<String, PostgresBusError> {
    config.validate()?;
    let table = &config.events_table;
    Ok(INSTALL_TEMPLATE
        .replace("@SCHEMA@", &quote_ident(&config.schema))
        .replace("@TABLE@", &quote_ident(table))
        .replace("@META@", &quote_ident(&format!("{table}_meta")))
        .replace("@INDEX@", &quote_ident(&format!("{table}_channel_seq")))
        .replace("@AGE_INDEX@", &quote_ident(&format!("{table}_created_at")))
        .replace("@PREFIX@", &config.prefix)
        .replace("@THRESHOLD@", &config.notify_threshold.to_string()))
}

/// Installs (or upgrades) the events table and functions through `client`, in one
/// transaction under an advisory lock, so several processes may call it at once.
///
/// ```no_run
/// # async fn example(client: &tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use fraiseql_eventbus_postgres::{install, PostgresBusConfig};
/// install(client, &PostgresBusConfig::from_url("postgres://postgres@localhost/app")?).await?;
/// client.batch_execute("SELECT fraiseql_watch_table('orders', 'orders')").await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`PostgresBusError::InvalidConfig`] for a bad configuration, [`PostgresBusError::Query`]
/// with the server's message when a statement fails (permissions, say).
pub async fn install(
    client: &tokio_postgres::Client,
    config: &PostgresBusConfig,
) -> Result<(), PostgresBusError> {
    let script = install_sql(config)?;
    // Same key for every FraiseQL install: CREATE OR REPLACE FUNCTION run concurrently
    // fails with "tuple concurrently updated".
    let batch = format!("BEGIN;\nSELECT pg_advisory_xact_lock(7238150012345);\n{script}\nCOMMIT;");
    if let Err(err) = client.batch_execute(&batch).await {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(PostgresBusError::Query {
            target: config.target(),
            action: "installing the events table and functions",
            cause: describe(&err),
        });
    }
    Ok(())
}

/// Alias of [`install`]: the script is idempotent, so migrating is installing again.
///
/// # Errors
/// As [`install`].
pub async fn migrate(
    client: &tokio_postgres::Client,
    config: &PostgresBusConfig,
) -> Result<(), PostgresBusError> {
    install(client, config).await
}

/// The SQL statements the bus runs, with the configured names quoted in.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) publish: String,
    pub(crate) fetch: String,
    pub(crate) position: String,
    pub(crate) catch_up: String,
    pub(crate) prune: String,
}

impl Statements {
    pub(crate) fn new(config: &PostgresBusConfig) -> Self {
        let schema = quote_ident(&config.schema);
        let table = format!("{schema}.{}", quote_ident(&config.events_table));
        let meta = format!(
            "{schema}.{}",
            quote_ident(&format!("{}_meta", config.events_table))
        );
        Self {
            publish: format!("SELECT {schema}.fraiseql_publish_wire($1::text, $2::text, $3::int4)"),
            fetch: format!("SELECT event::text FROM {table} WHERE seq = $1"),
            position: format!(
                "SELECT (SELECT coalesce(max(seq), 0) FROM {table}), \
                 (SELECT coalesce(max(pruned_through), 0) FROM {meta})"
            ),
            catch_up: format!(
                "SELECT t.seq, t.event::text FROM {table} t \
                 JOIN unnest($1::text[], $2::int8[]) AS c(channel, after) \
                 ON t.channel = c.channel AND t.seq > c.after ORDER BY t.seq"
            ),
            prune: format!(
                "SELECT {schema}.fraiseql_prune(\
                 CASE WHEN $1::float8 IS NULL THEN NULL ELSE make_interval(secs => $1::float8) END, \
                 $2::int8)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn short_names_keep_the_channel_and_long_ones_hash_to_63_bytes_at_most() {
        assert_eq!(notify_channel("p_", "orders"), "p_orders");
        let exact = "c".repeat(63 - 2);
        assert_eq!(notify_channel("p_", &exact), format!("p_{exact}"));
        let long = "c".repeat(62);
        let name = notify_channel("p_", &long);
        assert_eq!(name.len(), 34);
        // md5("") = d41d8cd98f00b204e9800998ecf8427e, as PostgreSQL's md5() says.
        assert_eq!(
            notify_channel(&"p".repeat(64), ""),
            format!("{}d41d8cd98f00b204e9800998ecf8427e", "p".repeat(64))
        );
        // Multi-byte characters count in bytes, as octet_length does.
        let accents = "é".repeat(30);
        assert_eq!(notify_channel("fraiseql_", &accents).len(), 9 + 32);
    }

    #[test]
    fn identifiers_are_quoted_with_doubled_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn install_sql_has_no_placeholder_left() {
        let config = PostgresBusConfig::from_url("postgres://localhost/db").unwrap();
        let sql = install_sql(&config).unwrap();
        assert!(!sql.contains("@SCHEMA@") && !sql.contains("@PREFIX@"));
        assert!(sql.contains("\"public\".\"fraiseql_events\""));
    }
}
