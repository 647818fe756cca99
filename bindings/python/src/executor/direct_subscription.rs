//! One subscription of the direct API ([`Direct`]): its own engine connection, and its
//! frames read one at a time as graphql-transport-ws text.

use fraiseql_protocol::{encode_complete, encode_error, encode_next, Protocol};
use fraiseql_subscriptions::{ConnectionHandle, Outbound};

/// A subscription of the direct API: its own engine connection, so its outbox holds only
/// its frames.
#[derive(Debug)]
pub(super) struct Direct {
    pub(super) connection_id: String,
    pub(super) handle: ConnectionHandle,
    /// Its last frame (`complete` or `error`) was read: reads return `None` from now on.
    pub(super) ended: std::sync::atomic::AtomicBool,
}

impl Direct {
    /// The next frame waiting, if any; notes the end when it is `complete` or `error`.
    pub(super) fn take_frame(&self, id: &str, batch: &mut Vec<Outbound>) -> Option<String> {
        let message = batch.pop()?;
        if matches!(message, Outbound::Complete { .. } | Outbound::Error { .. }) {
            self.ended.store(true, std::sync::atomic::Ordering::Release);
        }
        encode_direct(id, message)
    }

    /// Whether its last frame (`complete` or `error`) was read.
    pub(super) fn has_ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// A direct subscription's outbound message as a graphql-transport-ws frame.
fn encode_direct(id: &str, message: Outbound) -> Option<String> {
    let protocol = Protocol::GraphqlTransportWs;
    match message {
        Outbound::Next { payload, .. } => Some(encode_next(protocol, id, &payload)),
        Outbound::Error { errors, .. } => Some(encode_error(protocol, id, &errors)),
        Outbound::Complete { .. } => Some(encode_complete(protocol, id)),
        Outbound::Close { .. } => None,
    }
}
