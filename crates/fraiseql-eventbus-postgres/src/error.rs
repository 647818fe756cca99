//! The crate's error type.

use fraiseql_subscriptions::BusError;

/// Why the PostgreSQL bus could not be configured, connected or installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresBusError {
    /// The connection URL could not be parsed.
    #[error("invalid PostgreSQL URL: {message} (expected postgres://user[:password]@host[:port]/database)")]
    InvalidUrl {
        /// What the parser said.
        message: String,
    },
    /// A configuration value is out of range.
    #[error("invalid PostgreSQL bus setting `{setting}`: {reason}")]
    InvalidConfig {
        /// The setting (as its setter is named, without `with_`).
        setting: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to PostgreSQL at {target}: {cause}")]
    Connect {
        /// Host, port and database (never the password).
        target: String,
        /// The cause, as the client or the server gave it.
        cause: String,
    },
    /// A statement failed (installing the schema, publishing, catching up).
    #[error("PostgreSQL at {target}: {action} failed: {cause}")]
    Query {
        /// Host, port and database.
        target: String,
        /// What the bus was doing.
        action: &'static str,
        /// The server's or the client's message.
        cause: String,
    },
}

impl From<PostgresBusError> for BusError {
    fn from(err: PostgresBusError) -> Self {
        Self::Backend {
            backend: "postgres",
            message: err.to_string(),
        }
    }
}

/// The most useful text of a tokio-postgres error: the server's message (with detail and
/// hint) when there is one, else the client's chain of causes.
pub(crate) fn describe(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        let mut text = format!("{} ({})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            text.push_str(": ");
            text.push_str(detail);
        }
        if let Some(hint) = db.hint() {
            text.push_str("; hint: ");
            text.push_str(hint);
        }
        return text;
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether `err` says the connection it came on is gone (so the operation may be tried on
/// a fresh one): the client saw it close, or the server ended the session — a `FATAL`
/// report such as `pg_terminate_backend`'s 57P01, a shutdown (class 57P) or a connection
/// exception (class 08).
///
/// `Client::is_closed` alone is not enough: the server's last report reaches the client as
/// the answer to the next request, a moment before the connection task sees the socket
/// close. (Found by the conformance suite: a LISTEN issued right after the connections were
/// killed failed with 57P01 while `is_closed` was still false.)
pub(crate) fn connection_lost(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    err.as_db_error().is_some_and(|db| {
        let code = db.code().code();
        matches!(db.severity(), "FATAL" | "PANIC")
            || code.starts_with("08")
            || code.starts_with("57P")
    })
}
