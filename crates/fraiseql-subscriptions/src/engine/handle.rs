//! What a transport holds for one connection it registered ([`ConnectionHandle`]): the
//! connection's id, its outbox, and its client-message rate limit.

use std::sync::Arc;

use crate::limits::{LimitRejection, MessageLimiter};
use crate::outbox::Outbox;
use crate::registry::ConnectionId;

/// A connection registered with the engine.
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    /// Its id.
    pub id: ConnectionId,
    /// Where its messages wait for the transport.
    pub outbox: Arc<Outbox>,
    pub(super) messages: Option<Arc<MessageLimiter>>,
}

impl ConnectionHandle {
    /// Whether the client may send one more message now (the per-connection message rate).
    /// Transports call it for each client frame and close the connection when it says no.
    ///
    /// # Errors
    /// The [`LimitRejection`] to report (kind `MessageRate`).
    pub fn check_message(&self) -> Result<(), LimitRejection> {
        self.messages
            .as_ref()
            .map_or(Ok(()), |limiter| limiter.check())
    }
}
