//! WebSocket close codes the protocols name, and close reasons that fit in a close frame.

use std::fmt;

/// The longest close reason a WebSocket close frame can carry (RFC 6455 §5.5: a control
/// frame payload is at most 125 bytes, two of which hold the code).
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

/// Every close code this crate asks a transport to send, with the meaning the protocols give it.
///
/// The 44xx codes are graphql-transport-ws's own (the graphql-ws library's `CloseCode`); the
/// legacy `graphql-ws` protocol names none, so we use the same ones there (see
/// `docs/protocol.md`). The graphql-ws client treats 4400, 4401, 4406, 4409, 4429 and 4500
/// as fatal (no reconnect), and every 1xxx code but 1000, 1001, 1005, 1006, 1012, 1013 and
/// 1014; it retries the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// 1000: normal closure (legacy `connection_terminate`, server completes the connection).
    Normal,
    /// 1001: the server is going away (graceful shutdown).
    GoingAway,
    /// 1007 (invalid frame payload data, RFC 6455): a text frame that is not valid UTF-8.
    InvalidPayload,
    /// 1008 (policy violation): the client read its messages too slowly and its outbox
    /// overflowed (the engine's default slow-consumer policy).
    SlowConsumer,
    /// 1013 ("try again later"): the peer stayed silent after a keep-alive ping (dead peer).
    /// A code the graphql-ws client retries, so a peer that was only briefly unreachable
    /// reconnects.
    KeepAliveTimeout,
    /// 4400: the client sent a message that is not valid (bad JSON, unknown type, bad field).
    BadRequest,
    /// 4401: the client subscribed before the connection was acknowledged.
    Unauthorized,
    /// 4403: the caller's authentication rejected the `connection_init` payload.
    Forbidden,
    /// 4406: the client offered no subprotocol we speak.
    SubprotocolNotAcceptable,
    /// 4408: no `connection_init` was acknowledged within the configured time.
    ConnectionInitialisationTimeout,
    /// 4409: the client reused the id of a subscription that is still active.
    SubscriberAlreadyExists,
    /// 4429: the client sent `connection_init` more than once.
    TooManyInitialisationRequests,
    /// 4500: the server failed in a way that is not the client's fault.
    InternalServerError,
}

impl CloseCode {
    /// The numeric code to put in the close frame.
    #[must_use]
    pub const fn as_u16(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::InvalidPayload => 1007,
            Self::SlowConsumer => 1008,
            Self::KeepAliveTimeout => 1013,
            Self::BadRequest => 4400,
            Self::Unauthorized => 4401,
            Self::Forbidden => 4403,
            Self::SubprotocolNotAcceptable => 4406,
            Self::ConnectionInitialisationTimeout => 4408,
            Self::SubscriberAlreadyExists => 4409,
            Self::TooManyInitialisationRequests => 4429,
            Self::InternalServerError => 4500,
        }
    }

    /// The code for a numeric value, if it is one this crate knows.
    #[must_use]
    pub const fn from_u16(code: u16) -> Option<Self> {
        Some(match code {
            1000 => Self::Normal,
            1001 => Self::GoingAway,
            1007 => Self::InvalidPayload,
            1008 => Self::SlowConsumer,
            1013 => Self::KeepAliveTimeout,
            4400 => Self::BadRequest,
            4401 => Self::Unauthorized,
            4403 => Self::Forbidden,
            4406 => Self::SubprotocolNotAcceptable,
            4408 => Self::ConnectionInitialisationTimeout,
            4409 => Self::SubscriberAlreadyExists,
            4429 => Self::TooManyInitialisationRequests,
            4500 => Self::InternalServerError,
            _ => return None,
        })
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u16())
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.as_u16()
    }
}

/// Cuts `reason` to at most [`MAX_CLOSE_REASON_BYTES`] bytes on a character boundary, so a
/// transport can always put it in a close frame (a longer one makes some WebSocket libraries
/// fail the close instead of sending it).
#[must_use]
pub fn limit_close_reason(reason: &str) -> String {
    if reason.len() <= MAX_CLOSE_REASON_BYTES {
        return reason.to_owned();
    }
    let mut end = MAX_CLOSE_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.get(..end).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_number() {
        for code in [
            CloseCode::Normal,
            CloseCode::GoingAway,
            CloseCode::SlowConsumer,
            CloseCode::KeepAliveTimeout,
            CloseCode::BadRequest,
            CloseCode::Unauthorized,
            CloseCode::Forbidden,
            CloseCode::SubprotocolNotAcceptable,
            CloseCode::ConnectionInitialisationTimeout,
            CloseCode::SubscriberAlreadyExists,
            CloseCode::TooManyInitialisationRequests,
            CloseCode::InternalServerError,
        ] {
            assert_eq!(CloseCode::from_u16(code.as_u16()), Some(code));
        }
        assert_eq!(CloseCode::from_u16(1234), None);
    }

    #[test]
    fn close_reason_is_cut_to_123_bytes_on_a_char_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let cut = limit_close_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON_BYTES);
        assert_eq!(cut.len(), 122);
        assert!(long.starts_with(&cut));
        assert_eq!(limit_close_reason("short"), "short");
    }
}
