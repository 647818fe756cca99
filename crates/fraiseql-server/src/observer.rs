//! [`ConnectionObserver`]: lifecycle hooks of every connection the service serves (native
//! WebSocket or [`Session`](crate::Session)), called by the connection driver.
//!
//! Hooks observe; they cannot refuse (refusing is the [`Authenticator`]'s job at connect,
//! and field requirements' at subscribe). They are called on the connection's task, so an
//! implementation must return quickly: hand the work to another task or event loop.
//!
//! [`Authenticator`]: fraiseql_subscriptions::security::Authenticator

use std::fmt;

use fraiseql_protocol::SubscribePayload;
use fraiseql_subscriptions::security::Principal;

/// How a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ended {
    /// The client sent `complete` (or the connection closed under it).
    Client,
    /// The server completed it (a final event, a resolver's or stream's end).
    Completed,
    /// The server ended it with an `error` (a resolver failure, lost events).
    Error,
}

impl Ended {
    /// `"client"`, `"completed"` or `"error"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Completed => "completed",
            Self::Error => "error",
        }
    }
}

/// Lifecycle hooks; every method has an empty default.
pub trait ConnectionObserver: Send + Sync + fmt::Debug {
    /// A subscription started (after every check passed).
    fn subscribed(&self, principal: &Principal, id: &str, payload: &SubscribePayload) {
        let _ = (principal, id, payload);
    }

    /// A subscription that had started ended.
    fn completed(&self, principal: &Principal, id: &str, how: Ended) {
        let _ = (principal, id, how);
    }

    /// An authenticated connection ended (after its subscriptions' `completed`).
    fn disconnected(&self, principal: &Principal) {
        let _ = principal;
    }
}
