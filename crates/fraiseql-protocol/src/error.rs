//! The crate's error type: mistakes in how a caller configures or drives a connection.
//!
//! Bad input from a client is not an error here: it is answered on the wire (a close code
//! and reason, see [`crate::CloseCode`]).

use std::time::Duration;

use crate::phase::ConnectionPhase;

/// A caller's mistake in configuring or driving a [`crate::ServerConnection`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A duration that must be positive was zero.
    #[error("{setting} must be greater than zero (got {value:?})")]
    ZeroDuration {
        /// The setting's name.
        setting: &'static str,
        /// The value given.
        value: Duration,
    },
    /// The message size limit was too small to hold any real message.
    #[error("max_message_bytes must be at least {min} bytes (got {value})")]
    MessageLimitTooSmall {
        /// The smallest accepted limit.
        min: usize,
        /// The value given.
        value: usize,
    },
    /// The subscription id limit was zero (no subscription could be started).
    #[error("max_id_bytes must be at least 1")]
    IdLimitTooSmall,
    /// `accept`/`reject` was called when no `connection_init` was waiting for a verdict.
    #[error("no connection_init is waiting for authentication (the connection is {phase})")]
    NoAuthenticationPending {
        /// The phase the connection was in.
        phase: ConnectionPhase,
    },
}
