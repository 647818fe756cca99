//! The phases of a connection's life ([`ConnectionPhase`]), shared by the state machine and
//! the crate's error type.

use std::fmt;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionPhase {
    /// Open; no `connection_init` yet.
    AwaitingInit,
    /// `connection_init` received; waiting for the caller's verdict
    /// ([`ServerConnection::accept`](crate::ServerConnection::accept) or
    /// [`ServerConnection::reject`](crate::ServerConnection::reject)).
    Authenticating,
    /// Acknowledged: subscriptions may start.
    Ready,
    /// Closed; no input has any effect and no action is produced any more.
    Closed,
}

impl fmt::Display for ConnectionPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AwaitingInit => "awaiting connection_init",
            Self::Authenticating => "authenticating",
            Self::Ready => "ready",
            Self::Closed => "closed",
        })
    }
}
