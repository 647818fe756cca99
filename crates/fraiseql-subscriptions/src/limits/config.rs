//! What the limits are: [`LimitsConfig`] with its presets (development, production, high
//! performance), the token-bucket [`RateLimit`], and the [`LimitsError`] of a setting that
//! would refuse everything.

use std::fmt;
use std::num::NonZeroU32;

use governor::Quota;
use serde::{Deserialize, Serialize};

/// A token-bucket rate: `per_second` operations per second on average, up to `burst` at once.
///
/// Both must be at least 1 ([`LimitsConfig::validate`] says so); to switch a limit off, set
/// the setting to `None` instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateLimit {
    /// Sustained rate, per second (nonzero).
    pub per_second: u32,
    /// How many may pass at once after a quiet period (nonzero).
    pub burst: u32,
}

impl RateLimit {
    /// A rate of `per_second` with bursts of `burst`.
    #[must_use]
    pub const fn new(per_second: u32, burst: u32) -> Self {
        Self { per_second, burst }
    }

    /// The governor quota, or `None` when either value is zero.
    #[must_use]
    pub fn quota(self) -> Option<Quota> {
        let per_second = NonZeroU32::new(self.per_second)?;
        let burst = NonZeroU32::new(self.burst)?;
        Some(Quota::per_second(per_second).allow_burst(burst))
    }

    /// The quota with zeros raised to 1, for constructors that cannot fail; a validated
    /// config never has zeros.
    pub(super) fn quota_at_least_one(self) -> Quota {
        let per_second = NonZeroU32::new(self.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::per_second(per_second).allow_burst(burst)
    }

    fn check(self, setting: &'static str) -> Result<(), LimitsError> {
        if self.per_second == 0 {
            return Err(LimitsError::Zero {
                setting,
                field: "per_second",
            });
        }
        if self.burst == 0 {
            return Err(LimitsError::Zero {
                setting,
                field: "burst",
            });
        }
        Ok(())
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s (burst {})", self.per_second, self.burst)
    }
}

/// Every rate limit and hard limit of the engine. `None` switches a limit off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Most subscriptions one connection may hold at once (default 100).
    pub max_subscriptions_per_connection: Option<usize>,
    /// Most subscriptions one user may hold across all connections (default 1000).
    pub max_subscriptions_per_user: Option<usize>,
    /// Most connections one user may hold at once (default 100).
    pub max_connections_per_user: Option<usize>,
    /// Length of each connection's bounded outbox, in frames (default 1024).
    pub outbox_capacity: usize,
    /// Subscribes per user (default 20/s, burst 50). Anonymous connections share one bucket.
    pub subscribe_rate_per_user: Option<RateLimit>,
    /// Deliveries per subscription (default none); an event over the limit is dropped for
    /// that subscriber and counted.
    pub delivery_rate_per_subscription: Option<RateLimit>,
    /// Client messages per connection (default 100/s, burst 200).
    pub message_rate_per_connection: Option<RateLimit>,
}

/// The default outbox length, in frames.
pub const DEFAULT_OUTBOX_CAPACITY: usize = 1024;

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_subscriptions_per_connection: Some(100),
            max_subscriptions_per_user: Some(1000),
            max_connections_per_user: Some(100),
            outbox_capacity: DEFAULT_OUTBOX_CAPACITY,
            subscribe_rate_per_user: Some(RateLimit::new(20, 50)),
            delivery_rate_per_subscription: None,
            message_rate_per_connection: Some(RateLimit::new(100, 200)),
        }
    }
}

impl LimitsConfig {
    /// Generous limits for local development: high caps and rates, so a limit is only hit
    /// by a runaway client.
    #[must_use]
    pub fn development() -> Self {
        Self {
            max_subscriptions_per_connection: Some(10_000),
            max_subscriptions_per_user: Some(100_000),
            max_connections_per_user: Some(10_000),
            outbox_capacity: 4096,
            subscribe_rate_per_user: Some(RateLimit::new(1000, 2000)),
            delivery_rate_per_subscription: None,
            message_rate_per_connection: Some(RateLimit::new(10_000, 20_000)),
        }
    }

    /// The defaults: caps of 100 subscriptions per connection, 1000 per user, 100
    /// connections per user; 20 subscribes/s per user; 100 messages/s per connection.
    #[must_use]
    pub fn production() -> Self {
        Self::default()
    }

    /// The production caps without a delivery limit and with a longer outbox (4096 frames),
    /// for high-volume feeds.
    #[must_use]
    pub fn high_performance() -> Self {
        Self {
            outbox_capacity: 4096,
            delivery_rate_per_subscription: None,
            ..Self::default()
        }
    }

    /// Checks that no setting is zero (a zero cap or rate would refuse everything; `None`
    /// is how a limit is switched off).
    ///
    /// # Errors
    /// [`LimitsError`] naming the first setting that is zero.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let caps = [
            (
                "max_subscriptions_per_connection",
                self.max_subscriptions_per_connection,
            ),
            (
                "max_subscriptions_per_user",
                self.max_subscriptions_per_user,
            ),
            ("max_connections_per_user", self.max_connections_per_user),
        ];
        for (setting, cap) in caps {
            if cap == Some(0) {
                return Err(LimitsError::ZeroCap { setting });
            }
        }
        if self.outbox_capacity == 0 {
            return Err(LimitsError::ZeroOutbox);
        }
        let rates = [
            ("subscribe_rate_per_user", self.subscribe_rate_per_user),
            (
                "delivery_rate_per_subscription",
                self.delivery_rate_per_subscription,
            ),
            (
                "message_rate_per_connection",
                self.message_rate_per_connection,
            ),
        ];
        for (setting, rate) in rates {
            if let Some(rate) = rate {
                rate.check(setting)?;
            }
        }
        Ok(())
    }
}

/// An invalid [`LimitsConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitsError {
    /// A hard cap is `Some(0)`.
    #[error("limits.{setting} is 0, which would refuse everything; use a positive number, or None for no limit")]
    ZeroCap {
        /// The setting's name.
        setting: &'static str,
    },
    /// The outbox capacity is 0.
    #[error("limits.outbox_capacity is 0; an outbox must hold at least one frame")]
    ZeroOutbox,
    /// A rate limit has a zero rate or burst.
    #[error("limits.{setting}.{field} is 0; use a positive number, or set limits.{setting} to None for no limit")]
    Zero {
        /// The rate limit's name.
        setting: &'static str,
        /// `per_second` or `burst`.
        field: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn defaults_are_the_documented_values() {
        let config = LimitsConfig::default();
        assert_eq!(config.max_subscriptions_per_connection, Some(100));
        assert_eq!(config.max_subscriptions_per_user, Some(1000));
        assert_eq!(config.max_connections_per_user, Some(100));
        assert_eq!(config.outbox_capacity, 1024);
        assert_eq!(config.subscribe_rate_per_user, Some(RateLimit::new(20, 50)));
        assert_eq!(config.delivery_rate_per_subscription, None);
        assert_eq!(
            config.message_rate_per_connection,
            Some(RateLimit::new(100, 200))
        );
        assert_eq!(LimitsConfig::production(), config);
    }

    #[test]
    fn presets_validate() {
        for preset in [
            LimitsConfig::default(),
            LimitsConfig::development(),
            LimitsConfig::production(),
            LimitsConfig::high_performance(),
        ] {
            assert_eq!(preset.validate(), Ok(()), "{preset:?}");
        }
        let fast = LimitsConfig::high_performance();
        assert_eq!(fast.delivery_rate_per_subscription, None);
        assert_eq!(fast.outbox_capacity, 4096);
    }

    #[test]
    fn validation_names_a_zero_cap() {
        let config = LimitsConfig {
            max_subscriptions_per_user: Some(0),
            ..LimitsConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert!(error
            .to_string()
            .contains("limits.max_subscriptions_per_user is 0"));
    }

    #[test]
    fn validation_refuses_a_zero_outbox() {
        let config = LimitsConfig {
            outbox_capacity: 0,
            ..LimitsConfig::default()
        };
        assert_eq!(config.validate(), Err(LimitsError::ZeroOutbox));
    }

    #[test]
    fn validation_names_a_zero_rate_or_burst() {
        let config = LimitsConfig {
            delivery_rate_per_subscription: Some(RateLimit::new(0, 10)),
            ..LimitsConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert!(error
            .to_string()
            .contains("limits.delivery_rate_per_subscription.per_second is 0"));

        let config = LimitsConfig {
            message_rate_per_connection: Some(RateLimit::new(10, 0)),
            ..LimitsConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert!(error
            .to_string()
            .contains("limits.message_rate_per_connection.burst is 0"));
    }

    #[test]
    fn rate_limit_quota_is_none_for_zero_values() {
        assert!(RateLimit::new(0, 1).quota().is_none());
        assert!(RateLimit::new(1, 0).quota().is_none());
        let quota = RateLimit::new(20, 50).quota().unwrap();
        assert_eq!(quota.burst_size().get(), 50);
        assert_eq!(quota.replenish_interval(), Duration::from_millis(50));
    }

    #[test]
    fn config_deserializes_with_defaults_for_missing_settings() {
        let config: LimitsConfig = serde_json::from_str(
            r#"{"max_subscriptions_per_connection": 5, "delivery_rate_per_subscription": {"per_second": 10, "burst": 20}}"#,
        )
        .unwrap();
        assert_eq!(config.max_subscriptions_per_connection, Some(5));
        assert_eq!(
            config.delivery_rate_per_subscription,
            Some(RateLimit::new(10, 20))
        );
        assert_eq!(config.outbox_capacity, 1024);
    }
}
