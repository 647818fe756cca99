//! # fraiseql-protocol
//!
//! A sans-IO implementation of the two WebSocket protocols GraphQL subscription clients
//! speak: **graphql-transport-ws** (the graphql-ws library: Apollo Client's `GraphQLWsLink`,
//! urql, Relay, gql) and the legacy **graphql-ws** of subscriptions-transport-ws.
//!
//! It owns no socket, no clock and no task: a transport negotiates the subprotocol
//! ([`negotiate_subprotocol`]), feeds each text frame and the current time to a
//! [`ServerConnection`], and carries out the [`Action`]s it returns — send a frame, close
//! with a code, authenticate an init payload, start or stop a subscription. One state
//! machine, tested once, serves the native server, the Python adapters and any custom
//! transport.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use fraiseql_protocol::{negotiate_subprotocol_header, Action, CloseCode, ConnectionConfig, ServerConnection};
//!
//! let protocol = negotiate_subprotocol_header("graphql-transport-ws").unwrap();
//! let opened = Instant::now();
//! let mut conn = ServerConnection::new(protocol, ConnectionConfig::default(), opened);
//!
//! // The client never sends connection_init: at the deadline the connection closes 4408.
//! let deadline = conn.poll_timeout().unwrap();
//! assert_eq!(deadline - opened, Duration::from_secs(3));
//! conn.handle_timeout(deadline);
//! assert!(matches!(
//!     conn.poll_action(),
//!     Some(Action::Close { code: CloseCode::ConnectionInitialisationTimeout, .. })
//! ));
//! ```
//!
//! Events are sent with [`ServerConnection::next`], which splices one already-serialized
//! payload (shared by every subscriber) into the frame without re-serializing it, and only
//! for subscriptions still active.

mod close;
mod config;
mod connection;
mod error;
mod frame;
mod graphql_error;
mod message;
mod negotiate;
mod phase;

pub use close::{limit_close_reason, CloseCode, MAX_CLOSE_REASON_BYTES};
pub use config::{
    ConnectionConfig, ConnectionConfigBuilder, KeepAlive, DEFAULT_MAX_ID_BYTES, MIN_MESSAGE_BYTES,
};
pub use connection::{Action, ServerConnection, SubscriptionKey, MAX_PENDING_LEGACY_STARTS};
pub use error::Error;
pub use frame::{
    encode_complete, encode_connection_ack, encode_connection_error, encode_error,
    encode_keep_alive, encode_next, encode_ping, encode_pong, NextFramePrefix,
};
pub use graphql_error::{GraphQLError, Location, PathSegment};
pub use message::{
    parse_client_message, ClientMessage, InvalidMessage, JsonObject, SubscribePayload,
};
pub use negotiate::{
    negotiate_subprotocol, negotiate_subprotocol_header, Protocol, SubprotocolNotAcceptable,
};
pub use phase::ConnectionPhase;

/// The README's examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
