//! The native FraiseQL subscription server.
//!
//! One tokio server, one port: the GraphQL WebSocket endpoint (graphql-transport-ws and the
//! legacy graphql-ws, negotiated by subprotocol), `GET /healthz`, `GET /metrics`
//! (Prometheus text) and an optional, token-protected `POST /publish`. Every protocol rule
//! comes from `fraiseql-protocol` and every routing, security and delivery decision from
//! `fraiseql-subscriptions`; this crate moves bytes between them and the sockets.
//!
//! - [`Server`]: standalone, with graceful shutdown (close 1001 to every client, drain
//!   within a grace period) on a [`ShutdownHandle`] or SIGTERM / SIGINT.
//! - [`SubscriptionService`]: the same routes as an axum [`Router`](axum::Router) to merge
//!   into your own application; [`SubscriptionService::router_with_fallback`] hands every
//!   other request to your own `tower::Service` (the Python package hosts an ASGI app so).
//! - [`SubscriptionService::session`]: one connection over channels, for servers that own
//!   the socket themselves (the Python ASGI adapters): the same driver, limits and rules.
//! - [`JwtAuthenticator`]: HS256 / RS256 `connection_init` tokens; any other scheme
//!   implements [`Authenticator`](fraiseql_subscriptions::security::Authenticator).

mod auth;
mod bus;
mod config;
mod connection;
mod fallback;
mod http;
mod observer;
mod publish;
mod server;
mod service;
mod shared;
mod transport;

pub use auth::{unix_now, JwtAuthenticator, JwtConfigError};
pub use bus::{bus_from_url, BusOptions};
pub use config::{
    BusSection, ConfigError, FieldSection, HttpSection, JwtSection, LimitsSection, RateSetting,
    RequirementSection, SecuritySection, ServerConfig, ServerSection,
};
pub use http::{serve_http, HttpLimits, HttpLimitsError, LocalAddr, MIN_HEADER_BYTES};
pub use observer::{ConnectionObserver, Ended};
pub use publish::{parse_publish_body, PublishError, MAX_EVENTS_PER_REQUEST};
pub use server::{Server, ServerBuilder, ServerError, ShutdownHandle};
pub use service::{
    ServiceBuilder, ServiceError, SessionRefused, SubscriptionService, WEBSOCKET_READ_BUFFER_BYTES,
};
pub use transport::{FeedError, Incoming, Outgoing, Session, SessionInput, SESSION_INBOX};

/// The README's examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
