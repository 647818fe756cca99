//! [`RedisBusError`]: what went wrong, with the host and what to fix.

use fraiseql_subscriptions::BusError;

/// Why the Redis bus could not be configured or connected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisBusError {
    /// A setting is wrong; `field` names it and `reason` says what to change.
    #[error("invalid Redis bus setting `{field}`: {reason}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Redis could not be reached (nothing listening, DNS, TLS, timeout).
    #[error("cannot connect to Redis at {host}: {cause} (is Redis running? start one with `redis-server --port 6379`)")]
    Connect {
        /// `host:port`.
        host: String,
        /// The client's error.
        cause: String,
    },
    /// Redis refused the credentials (the URL's user and password).
    #[error(
        "Redis at {host} refused the credentials: {cause} (check the user and password in the URL)"
    )]
    Auth {
        /// `host:port`.
        host: String,
        /// The server's answer.
        cause: String,
    },
    /// A command failed after connecting.
    #[error("Redis at {host}: {operation} failed: {cause}")]
    Command {
        /// `host:port`.
        host: String,
        /// What was being done.
        operation: String,
        /// The client's error.
        cause: String,
    },
}

impl From<RedisBusError> for BusError {
    fn from(err: RedisBusError) -> Self {
        Self::Backend {
            backend: "redis",
            message: err.to_string(),
        }
    }
}

/// Classifies a fred error raised while connecting.
pub(crate) fn connect_error(host: &str, err: &fred::error::Error) -> RedisBusError {
    let details = err.details().to_owned();
    let upper = details.to_ascii_uppercase();
    let is_auth = matches!(err.kind(), fred::error::ErrorKind::Auth)
        || upper.contains("WRONGPASS")
        || upper.contains("NOAUTH")
        || upper.contains("INVALID PASSWORD")
        || upper.contains("AUTH");
    let cause = if details.is_empty() {
        format!("{:?}", err.kind())
    } else {
        details
    };
    if is_auth {
        RedisBusError::Auth {
            host: host.to_owned(),
            cause,
        }
    } else {
        RedisBusError::Connect {
            host: host.to_owned(),
            cause,
        }
    }
}

/// A failed command as a [`BusError`].
pub(crate) fn command_error(host: &str, operation: &str, err: &fred::error::Error) -> BusError {
    let cause = if matches!(err.kind(), fred::error::ErrorKind::Timeout) {
        format!(
            "timed out ({}); Redis may be unreachable, the bus reconnects on its own",
            err.details()
        )
    } else {
        format!("{:?}: {}", err.kind(), err.details())
    };
    RedisBusError::Command {
        host: host.to_owned(),
        operation: operation.to_owned(),
        cause,
    }
    .into()
}
