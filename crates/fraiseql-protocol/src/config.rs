//! Per-connection protocol settings, validated once and shared by every connection.

use std::time::Duration;

use crate::error::Error;

/// The default [`ConnectionConfig::max_id_bytes`]: room for any UUID or counter a client
/// library uses, and a bound on what every frame repeats.
pub const DEFAULT_MAX_ID_BYTES: usize = 128;

/// The smallest `max_message_bytes` accepted: room for a small `subscribe` message.
pub const MIN_MESSAGE_BYTES: usize = 256;

/// Server keep-alive: how often to ping an idle peer and how long to wait for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// Time between two server pings (graphql-transport-ws `ping`, legacy `ka`).
    pub interval: Duration,
    /// How long after a ping the peer may stay silent before it is declared dead and the
    /// connection closed with 1013. Any message from the peer counts as an answer.
    pub timeout: Duration,
}

/// Settings for [`crate::ServerConnection`]. Build one with [`ConnectionConfig::builder`]
/// (or take [`ConnectionConfig::default`]) and share it by copy.
///
/// ```
/// use std::time::Duration;
/// use fraiseql_protocol::ConnectionConfig;
/// let config = ConnectionConfig::builder()
///     .connection_init_timeout(Duration::from_secs(5))
///     .keep_alive(Duration::from_secs(15), Duration::from_secs(10))
///     .max_message_bytes(64 * 1024)
///     .build()
///     .unwrap();
/// assert_eq!(config.connection_init_timeout(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionConfig {
    connection_init_timeout: Duration,
    keep_alive: Option<KeepAlive>,
    max_message_bytes: usize,
    max_id_bytes: usize,
    transport_pings: bool,
}

impl Default for ConnectionConfig {
    /// graphql-ws's defaults: 3 s to send `connection_init`, a ping every 12 s answered
    /// within 12 s; messages up to 256 KiB; subscription ids up to 128 bytes;
    /// WebSocket-level pings for legacy clients.
    fn default() -> Self {
        Self {
            connection_init_timeout: Duration::from_secs(3),
            keep_alive: Some(KeepAlive {
                interval: Duration::from_secs(12),
                timeout: Duration::from_secs(12),
            }),
            max_message_bytes: 256 * 1024,
            max_id_bytes: DEFAULT_MAX_ID_BYTES,
            transport_pings: true,
        }
    }
}

impl ConnectionConfig {
    /// A builder starting from [`ConnectionConfig::default`].
    pub fn builder() -> ConnectionConfigBuilder {
        ConnectionConfigBuilder {
            config: Self::default(),
        }
    }

    /// How long a client has, from the socket's opening, until its `connection_init` is
    /// acknowledged; past it the connection closes with 4408.
    #[must_use]
    pub const fn connection_init_timeout(&self) -> Duration {
        self.connection_init_timeout
    }

    /// The keep-alive settings, or `None` when the server never pings.
    #[must_use]
    pub const fn keep_alive(&self) -> Option<KeepAlive> {
        self.keep_alive
    }

    /// The largest text frame accepted; a larger one closes the connection with 4400.
    #[must_use]
    pub const fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// The longest subscription id accepted, in bytes; a `subscribe` (legacy: `start`) with
    /// a longer one closes the connection with 4400 naming the limit. Every frame for a
    /// subscription repeats its id, and the server keeps it for the subscription's life.
    #[must_use]
    pub const fn max_id_bytes(&self) -> usize {
        self.max_id_bytes
    }

    /// Whether legacy (`graphql-ws`) connections also get WebSocket ping frames
    /// ([`crate::Action::SendTransportPing`]) so a dead peer can be detected; the legacy
    /// protocol itself has no client answer to `ka`.
    #[must_use]
    pub const fn transport_pings(&self) -> bool {
        self.transport_pings
    }
}

/// Builds a validated [`ConnectionConfig`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ConnectionConfigBuilder {
    config: ConnectionConfig,
}

impl ConnectionConfigBuilder {
    /// See [`ConnectionConfig::connection_init_timeout`].
    pub fn connection_init_timeout(mut self, timeout: Duration) -> Self {
        self.config.connection_init_timeout = timeout;
        self
    }

    /// Ping every `interval`; close with 1013 when the peer stays silent `timeout` after a ping.
    pub fn keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.keep_alive = Some(KeepAlive { interval, timeout });
        self
    }

    /// Never ping (the transport or a proxy keeps the connection alive).
    pub fn no_keep_alive(mut self) -> Self {
        self.config.keep_alive = None;
        self
    }

    /// See [`ConnectionConfig::max_message_bytes`].
    pub fn max_message_bytes(mut self, limit: usize) -> Self {
        self.config.max_message_bytes = limit;
        self
    }

    /// See [`ConnectionConfig::max_id_bytes`].
    pub fn max_id_bytes(mut self, limit: usize) -> Self {
        self.config.max_id_bytes = limit;
        self
    }

    /// See [`ConnectionConfig::transport_pings`]. Turn off for transports that cannot send
    /// WebSocket ping frames (ASGI has no such event).
    pub fn transport_pings(mut self, enabled: bool) -> Self {
        self.config.transport_pings = enabled;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::ZeroDuration`] for a zero timeout or interval, [`Error::MessageLimitTooSmall`]
    /// for a message limit under [`MIN_MESSAGE_BYTES`], [`Error::IdLimitTooSmall`] for an id
    /// limit of zero.
    pub fn build(self) -> Result<ConnectionConfig, Error> {
        let config = self.config;
        nonzero("connection_init_timeout", config.connection_init_timeout)?;
        if let Some(keep_alive) = config.keep_alive {
            nonzero("keep_alive.interval", keep_alive.interval)?;
            nonzero("keep_alive.timeout", keep_alive.timeout)?;
        }
        if config.max_message_bytes < MIN_MESSAGE_BYTES {
            return Err(Error::MessageLimitTooSmall {
                min: MIN_MESSAGE_BYTES,
                value: config.max_message_bytes,
            });
        }
        if config.max_id_bytes == 0 {
            return Err(Error::IdLimitTooSmall);
        }
        Ok(config)
    }
}

fn nonzero(setting: &'static str, value: Duration) -> Result<(), Error> {
    if value.is_zero() {
        Err(Error::ZeroDuration { setting, value })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_durations_are_refused_with_the_setting_named() {
        let err = ConnectionConfig::builder()
            .connection_init_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("connection_init_timeout"), "{err}");
        let err = ConnectionConfig::builder()
            .keep_alive(Duration::from_secs(1), Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("keep_alive.timeout"), "{err}");
    }

    #[test]
    fn tiny_message_limits_are_refused() {
        let err = ConnectionConfig::builder()
            .max_message_bytes(10)
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            Error::MessageLimitTooSmall {
                min: MIN_MESSAGE_BYTES,
                value: 10
            }
        );
    }

    #[test]
    fn default_matches_graphql_ws() {
        let config = ConnectionConfig::default();
        assert_eq!(config.connection_init_timeout(), Duration::from_secs(3));
        assert_eq!(
            config.keep_alive().unwrap().interval,
            Duration::from_secs(12)
        );
        assert_eq!(ConnectionConfig::builder().build().unwrap(), config);
        assert_eq!(
            ConnectionConfig::builder()
                .no_keep_alive()
                .build()
                .unwrap()
                .keep_alive(),
            None
        );
    }
}
