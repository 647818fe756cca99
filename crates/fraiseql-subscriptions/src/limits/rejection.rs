//! A refusal by a limit: which limit ([`LimitKind`]) and the message that tells the client
//! the limit and what to do ([`LimitRejection`]), as a GraphQL error or a close reason.

use fraiseql_protocol::GraphQLError;
use serde_json::Value;

use super::config::RateLimit;
use crate::metrics::RateLimitKind;

/// Which limit refused something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Subscription creation per user (a rate).
    SubscribeRate,
    /// Subscriptions held by one connection (a cap).
    SubscriptionsPerConnection,
    /// Subscriptions held by one user (a cap).
    SubscriptionsPerUser,
    /// Connections held by one user (a cap).
    ConnectionsPerUser,
    /// Client messages per connection (a rate).
    MessageRate,
}

impl LimitKind {
    /// Whether this is a rate limit (wait and retry) rather than a cap (release something).
    #[must_use]
    pub const fn is_rate(self) -> bool {
        matches!(self, Self::SubscribeRate | Self::MessageRate)
    }

    /// The `extensions.code` of the GraphQL error: `RATE_LIMITED` or `LIMIT_EXCEEDED`.
    #[must_use]
    pub const fn code(self) -> &'static str {
        if self.is_rate() {
            "RATE_LIMITED"
        } else {
            "LIMIT_EXCEEDED"
        }
    }

    /// A stable label (metrics, logs, `extensions.limit`).
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::SubscribeRate => "subscribe_rate",
            Self::SubscriptionsPerConnection => "subscriptions_per_connection",
            Self::SubscriptionsPerUser => "subscriptions_per_user",
            Self::ConnectionsPerUser => "connections_per_user",
            Self::MessageRate => "message_rate",
        }
    }

    /// The metrics kind to count a rate refusal under; `None` for caps.
    #[must_use]
    pub const fn rate_limit_kind(self) -> Option<RateLimitKind> {
        match self {
            Self::SubscribeRate => Some(RateLimitKind::SubscribePerUser),
            Self::MessageRate => Some(RateLimitKind::MessagesPerConnection),
            Self::SubscriptionsPerConnection
            | Self::SubscriptionsPerUser
            | Self::ConnectionsPerUser => None,
        }
    }
}

/// A refusal by a limit: which one, and a message for the client that states the limit and
/// what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LimitRejection {
    /// The limit that refused.
    pub kind: LimitKind,
    /// What the client is told.
    pub message: String,
}

impl LimitRejection {
    /// A refusal of `kind` with `message`.
    #[must_use]
    pub fn new(kind: LimitKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The subscribe-rate refusal, stating `rate`.
    pub(super) fn subscribe_rate(rate: RateLimit) -> Self {
        Self::new(
            LimitKind::SubscribeRate,
            format!(
                "Rate limited: at most {} subscribes per second per user (bursts of {}); wait a moment before subscribing again",
                rate.per_second, rate.burst
            ),
        )
    }

    /// The message-rate refusal, stating `rate`.
    pub(super) fn message_rate(rate: RateLimit) -> Self {
        Self::new(
            LimitKind::MessageRate,
            format!(
                "Rate limited: at most {} messages per second per connection (bursts of {}); slow down before sending more",
                rate.per_second, rate.burst
            ),
        )
    }

    /// The GraphQL error for the client: the message, `extensions.code` (`RATE_LIMITED` or
    /// `LIMIT_EXCEEDED`) and `extensions.limit` (the [`LimitKind::label`]).
    #[must_use]
    pub fn to_graphql_error(&self) -> GraphQLError {
        let mut error = GraphQLError::new(self.message.clone()).with_code(self.kind.code());
        error
            .extensions
            .insert("limit".into(), Value::String(self.kind.label().into()));
        error
    }
}

#[cfg(test)]
mod tests {
    use super::super::caps::check_caps;
    use super::super::config::LimitsConfig;
    use super::*;

    #[test]
    fn rate_kinds_map_to_metrics_kinds() {
        assert_eq!(
            LimitKind::SubscribeRate.rate_limit_kind(),
            Some(RateLimitKind::SubscribePerUser)
        );
        assert_eq!(
            LimitKind::MessageRate.rate_limit_kind(),
            Some(RateLimitKind::MessagesPerConnection)
        );
        assert_eq!(LimitKind::ConnectionsPerUser.rate_limit_kind(), None);
    }

    #[test]
    fn caps_map_to_limit_exceeded_and_rates_to_rate_limited() {
        let cap = check_caps(&LimitsConfig::default(), 100, 0).unwrap_err();
        let error = cap.to_graphql_error();
        assert_eq!(error.message, cap.message);
        assert_eq!(error.extensions["code"], "LIMIT_EXCEEDED");
        assert_eq!(error.extensions["limit"], "subscriptions_per_connection");

        let rate = LimitRejection::subscribe_rate(RateLimit::new(20, 50));
        let error = rate.to_graphql_error();
        assert_eq!(error.extensions["code"], "RATE_LIMITED");
        assert!(error
            .message
            .contains("wait a moment before subscribing again"));
    }
}
