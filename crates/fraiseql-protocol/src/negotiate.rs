//! Subprotocol negotiation from the client's `Sec-WebSocket-Protocol` offer.

use std::fmt;

use crate::close::CloseCode;

/// The two WebSocket subprotocols a GraphQL subscription client may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `graphql-transport-ws`: the protocol of the graphql-ws library (Apollo Client's
    /// `GraphQLWsLink`, urql, Relay, gql, ...). Preferred when a client offers both.
    GraphqlTransportWs,
    /// `graphql-ws`: the legacy protocol of subscriptions-transport-ws (Apollo's
    /// `WebSocketLink`), kept for clients that have not moved on.
    GraphqlWs,
}

impl Protocol {
    /// The subprotocol name, as it appears in `Sec-WebSocket-Protocol`.
    #[must_use]
    pub const fn subprotocol(self) -> &'static str {
        match self {
            Self::GraphqlTransportWs => "graphql-transport-ws",
            Self::GraphqlWs => "graphql-ws",
        }
    }

    /// The protocol with this exact subprotocol name, if we speak it.
    #[must_use]
    pub fn from_subprotocol(name: &str) -> Option<Self> {
        match name {
            "graphql-transport-ws" => Some(Self::GraphqlTransportWs),
            "graphql-ws" => Some(Self::GraphqlWs),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.subprotocol())
    }
}

/// The client offered no subprotocol we speak.
///
/// The graphql-ws reference server completes the WebSocket handshake without selecting a
/// subprotocol and then closes with 4406; a transport does the same with [`Self::close_code`]
/// and [`Self::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct SubprotocolNotAcceptable {
    reason: String,
}

impl SubprotocolNotAcceptable {
    /// Always [`CloseCode::SubprotocolNotAcceptable`] (4406).
    #[must_use]
    pub const fn close_code(&self) -> CloseCode {
        CloseCode::SubprotocolNotAcceptable
    }

    /// A close reason naming what was offered and what we accept (at most 123 bytes).
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Picks the protocol for a connection from the subprotocols the client offered, in any
/// order: `graphql-transport-ws` when offered, else `graphql-ws`.
///
/// ```
/// use fraiseql_protocol::{negotiate_subprotocol, Protocol};
/// assert_eq!(
///     negotiate_subprotocol(["graphql-ws", "graphql-transport-ws"]).unwrap(),
///     Protocol::GraphqlTransportWs,
/// );
/// assert_eq!(negotiate_subprotocol(["graphql-ws"]).unwrap(), Protocol::GraphqlWs);
/// assert_eq!(negotiate_subprotocol(["mqtt"]).unwrap_err().close_code().as_u16(), 4406);
/// ```
///
/// # Errors
/// [`SubprotocolNotAcceptable`] when neither protocol was offered.
pub fn negotiate_subprotocol<'a, I>(offered: I) -> Result<Protocol, SubprotocolNotAcceptable>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut legacy = false;
    let mut seen = Vec::new();
    for name in offered {
        let name = name.trim();
        match Protocol::from_subprotocol(name) {
            Some(Protocol::GraphqlTransportWs) => return Ok(Protocol::GraphqlTransportWs),
            Some(Protocol::GraphqlWs) => legacy = true,
            None if !name.is_empty() => seen.push(name),
            None => {}
        }
    }
    if legacy {
        return Ok(Protocol::GraphqlWs);
    }
    let offered = if seen.is_empty() {
        "none".to_owned()
    } else {
        seen.join(", ")
    };
    Err(SubprotocolNotAcceptable {
        reason: crate::close::limit_close_reason(&format!(
            "Subprotocol not acceptable: offered {offered}; use graphql-transport-ws or graphql-ws"
        )),
    })
}

/// [`negotiate_subprotocol`] for the raw value of one or more `Sec-WebSocket-Protocol`
/// headers (comma-separated, as browsers send it).
///
/// # Errors
/// [`SubprotocolNotAcceptable`] when neither protocol was offered.
pub fn negotiate_subprotocol_header(
    header_value: &str,
) -> Result<Protocol, SubprotocolNotAcceptable> {
    negotiate_subprotocol(header_value.split(','))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_transport_ws_is_preferred_when_both_are_offered() {
        let got = negotiate_subprotocol_header("graphql-ws, graphql-transport-ws").unwrap();
        assert_eq!(got, Protocol::GraphqlTransportWs);
    }

    #[test]
    fn legacy_graphql_ws_is_chosen_when_only_it_is_offered() {
        assert_eq!(
            negotiate_subprotocol_header("graphql-ws").unwrap(),
            Protocol::GraphqlWs
        );
    }

    #[test]
    fn offering_neither_protocol_is_answered_with_4406() {
        let err = negotiate_subprotocol_header("mqtt, wamp").unwrap_err();
        assert_eq!(err.close_code().as_u16(), 4406);
        assert!(err.reason().contains("mqtt, wamp"), "{}", err.reason());
        let none = negotiate_subprotocol(std::iter::empty()).unwrap_err();
        assert!(none.reason().contains("offered none"));
    }

    #[test]
    fn subprotocol_names_are_matched_exactly() {
        assert!(negotiate_subprotocol(["GraphQL-WS"]).is_err());
        assert_eq!(
            Protocol::from_subprotocol(Protocol::GraphqlWs.subprotocol()),
            Some(Protocol::GraphqlWs)
        );
    }
}
