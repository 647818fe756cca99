//! Rate limits (governor's GCRA) and hard limits, as DESIGN.md lists them.
//!
//! - **Subscription creation per user**: one engine-wide [`SubscribeLimiter`], keyed by user.
//! - **Deliveries per subscription**: a [`DeliveryLimiter`] per subscription, created at
//!   subscribe time only when [`LimitsConfig::delivery_rate_per_subscription`] is set. An event
//!   over the limit is dropped for that subscriber (and counted), never queued.
//! - **Messages per connection**: a [`MessageLimiter`] per connection.
//! - **Hard caps**: subscriptions per connection and per user, connections per user
//!   ([`check_caps`], [`check_connection_cap`]); the outbox length
//!   ([`LimitsConfig::outbox_capacity`]).
//!
//! Every refusal is a [`LimitRejection`] whose [`to_graphql_error`](LimitRejection::to_graphql_error)
//! tells the client the limit and what to do about it.
//!
//! The limiters are generic over governor's [`Clock`] with the real clock as the default, so
//! the engine writes `DeliveryLimiter` and tests drive a
//! [`FakeRelativeClock`](governor::clock::FakeRelativeClock) through `with_clock`, never
//! sleeping.

use std::fmt;
use std::num::NonZeroU32;

use fraiseql_protocol::GraphQLError;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metrics::RateLimitKind;

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
    fn quota_at_least_one(self) -> Quota {
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

    fn subscribe_rate(rate: RateLimit) -> Self {
        Self::new(
            LimitKind::SubscribeRate,
            format!(
                "Rate limited: at most {} subscribes per second per user (bursts of {}); wait a moment before subscribing again",
                rate.per_second, rate.burst
            ),
        )
    }

    fn message_rate(rate: RateLimit) -> Self {
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

/// The key anonymous subscribers share in [`SubscribeLimiter`].
pub const ANONYMOUS_KEY: &str = "";

type KeyedLimiter<C> =
    RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

type DirectLimiter<C> =
    RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The engine-wide limit on subscription creation per user (`Send + Sync`; share it).
///
/// Each user id has its own bucket. **Anonymous subscribers (no user id) all share one
/// bucket**, keyed [`ANONYMOUS_KEY`] (`""`): together they get the rate of one user, so a
/// public deployment with many anonymous clients should raise the rate or switch it off
/// (`subscribe_rate_per_user: None`). A user whose id is the empty string shares that bucket
/// too.
///
/// The keyed state grows with the number of users seen; call
/// [`retain_recent`](Self::retain_recent) periodically (every minute or so) to drop users
/// whose bucket is full again.
pub struct SubscribeLimiter<C: Clock = DefaultClock> {
    limiter: Option<(KeyedLimiter<C>, RateLimit)>,
}

impl SubscribeLimiter<DefaultClock> {
    /// The limiter for `config.subscribe_rate_per_user` (allows everything when `None`).
    #[must_use]
    pub fn new(config: &LimitsConfig) -> Self {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock> SubscribeLimiter<C> {
    /// The limiter on a given clock (tests drive a `FakeRelativeClock`).
    #[must_use]
    pub fn with_clock(config: &LimitsConfig, clock: C) -> Self {
        let limiter = config.subscribe_rate_per_user.map(|rate| {
            let limiter = RateLimiter::new(
                rate.quota_at_least_one(),
                DefaultKeyedStateStore::default(),
                clock,
            );
            (limiter, rate)
        });
        Self { limiter }
    }

    /// Takes one subscribe from `user`'s bucket (`None`: the shared anonymous bucket).
    ///
    /// # Errors
    /// [`LimitRejection`] of kind [`LimitKind::SubscribeRate`] when the bucket is empty.
    pub fn check_subscribe(&self, user: Option<&str>) -> Result<(), LimitRejection> {
        let Some((limiter, rate)) = &self.limiter else {
            return Ok(());
        };
        let key = user.unwrap_or(ANONYMOUS_KEY).to_owned();
        limiter
            .check_key(&key)
            .map_err(|_| LimitRejection::subscribe_rate(*rate))
    }

    /// Forgets users whose bucket is full again (indistinguishable from a new user) and
    /// shrinks the state store. Cheap enough to call every minute.
    pub fn retain_recent(&self) {
        if let Some((limiter, _)) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// How many users' buckets are held (an estimate under concurrency).
    #[must_use]
    pub fn tracked_users(&self) -> usize {
        self.limiter
            .as_ref()
            .map_or(0, |(limiter, _)| limiter.len())
    }

    /// The configured rate, if any.
    #[must_use]
    pub fn rate(&self) -> Option<RateLimit> {
        self.limiter.as_ref().map(|(_, rate)| *rate)
    }
}

impl<C: Clock> fmt::Debug for SubscribeLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscribeLimiter")
            .field("rate", &self.rate())
            .field("tracked_users", &self.tracked_users())
            .finish()
    }
}

/// The delivery limit of one subscription, created at subscribe time only when
/// [`LimitsConfig::delivery_rate_per_subscription`] is set.
///
/// Memory (measured with `std::mem::size_of` on x86_64, default quanta clock): 72 bytes
/// inline and no heap allocation — the GCRA state (one `AtomicU64`), the quota (two `u64`
/// nanosecond values), the start instant (8 bytes) and the clock handle (40 bytes, its
/// calibration copied inline). A million rate-limited subscriptions cost about 72 MB;
/// subscriptions without a delivery limit pay nothing (`Option<DeliveryLimiter>` is `None`).
/// `delivery_limiter_is_small_and_heap_free` keeps the bound.
pub struct DeliveryLimiter<C: Clock = DefaultClock> {
    limiter: DirectLimiter<C>,
}

impl DeliveryLimiter<DefaultClock> {
    /// A limiter allowing `rate` deliveries (zeros are treated as 1; validate the config).
    #[must_use]
    pub fn new(rate: RateLimit) -> Self {
        Self::with_clock(rate, DefaultClock::default())
    }
}

impl<C: Clock> DeliveryLimiter<C> {
    /// The limiter on a given clock (tests drive a `FakeRelativeClock`).
    #[must_use]
    pub fn with_clock(rate: RateLimit, clock: C) -> Self {
        Self {
            limiter: RateLimiter::direct_with_clock(rate.quota_at_least_one(), clock),
        }
    }

    /// Takes one delivery from the bucket: `false` means drop this event for this
    /// subscriber (and count it as rate limited).
    #[must_use]
    pub fn allow(&self) -> bool {
        self.limiter.check().is_ok()
    }
}

impl<C: Clock> fmt::Debug for DeliveryLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryLimiter").finish_non_exhaustive()
    }
}

/// The message limit of one connection (client messages: subscribe, complete, ping...).
///
/// Memory: as [`DeliveryLimiter`] plus the configured [`RateLimit`] (kept for the error
/// message): 80 bytes inline on x86_64, no heap allocation.
pub struct MessageLimiter<C: Clock = DefaultClock> {
    bucket: DeliveryLimiter<C>,
    rate: RateLimit,
}

impl MessageLimiter<DefaultClock> {
    /// A limiter allowing `rate` messages (zeros are treated as 1; validate the config).
    #[must_use]
    pub fn new(rate: RateLimit) -> Self {
        Self::with_clock(rate, DefaultClock::default())
    }
}

impl<C: Clock> MessageLimiter<C> {
    /// The limiter on a given clock (tests drive a `FakeRelativeClock`).
    #[must_use]
    pub fn with_clock(rate: RateLimit, clock: C) -> Self {
        Self {
            bucket: DeliveryLimiter::with_clock(rate, clock),
            rate,
        }
    }

    /// Takes one message from the bucket: `false` means the connection is over its rate.
    #[must_use]
    pub fn allow(&self) -> bool {
        self.bucket.allow()
    }

    /// As [`allow`](Self::allow), with the rejection to report.
    ///
    /// # Errors
    /// [`LimitRejection`] of kind [`LimitKind::MessageRate`] when the bucket is empty.
    pub fn check(&self) -> Result<(), LimitRejection> {
        if self.allow() {
            Ok(())
        } else {
            Err(LimitRejection::message_rate(self.rate))
        }
    }

    /// The configured rate.
    #[must_use]
    pub const fn rate(&self) -> RateLimit {
        self.rate
    }
}

impl<C: Clock> fmt::Debug for MessageLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageLimiter")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

/// Checks the subscription caps before a new subscribe. The counts are those held **before**
/// the new subscription (pass 0 for the per-user count of an anonymous connection if
/// anonymous users should not share a cap). The per-connection cap is checked first.
///
/// # Errors
/// [`LimitRejection`] of kind [`LimitKind::SubscriptionsPerConnection`] or
/// [`LimitKind::SubscriptionsPerUser`] when the new subscription would exceed a cap.
pub fn check_caps(
    config: &LimitsConfig,
    subscriptions_on_connection: usize,
    subscriptions_of_user: usize,
) -> Result<(), LimitRejection> {
    if let Some(max) = config.max_subscriptions_per_connection {
        if subscriptions_on_connection >= max {
            return Err(LimitRejection::new(
                LimitKind::SubscriptionsPerConnection,
                format!(
                    "At most {max} subscriptions per connection; complete some before subscribing again"
                ),
            ));
        }
    }
    if let Some(max) = config.max_subscriptions_per_user {
        if subscriptions_of_user >= max {
            return Err(LimitRejection::new(
                LimitKind::SubscriptionsPerUser,
                format!(
                    "At most {max} subscriptions per user across all connections; complete some before subscribing again"
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the connection cap before a user's new connection is accepted; `connections_of_user`
/// is the count held **before** it.
///
/// # Errors
/// [`LimitRejection`] of kind [`LimitKind::ConnectionsPerUser`] when the new connection would
/// exceed the cap.
pub fn check_connection_cap(
    config: &LimitsConfig,
    connections_of_user: usize,
) -> Result<(), LimitRejection> {
    match config.max_connections_per_user {
        Some(max) if connections_of_user >= max => Err(LimitRejection::new(
            LimitKind::ConnectionsPerUser,
            format!("At most {max} connections per user; close one before opening another"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn config_with_subscribe_rate(rate: RateLimit) -> LimitsConfig {
        LimitsConfig {
            subscribe_rate_per_user: Some(rate),
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn subscribe_rate_allows_the_burst_then_refuses() {
        let clock = FakeRelativeClock::default();
        let limiter =
            SubscribeLimiter::with_clock(&config_with_subscribe_rate(RateLimit::new(1, 3)), clock);
        for _ in 0..3 {
            assert!(limiter.check_subscribe(Some("alice")).is_ok());
        }
        let refused = limiter.check_subscribe(Some("alice")).unwrap_err();
        assert_eq!(refused.kind, LimitKind::SubscribeRate);
        assert!(refused.message.contains("at most 1 subscribes per second"));
    }

    #[test]
    fn subscribe_rate_refills_after_time() {
        let clock = FakeRelativeClock::default();
        let limiter = SubscribeLimiter::with_clock(
            &config_with_subscribe_rate(RateLimit::new(10, 2)),
            clock.clone(),
        );
        assert!(limiter.check_subscribe(Some("alice")).is_ok());
        assert!(limiter.check_subscribe(Some("alice")).is_ok());
        assert!(limiter.check_subscribe(Some("alice")).is_err());
        clock.advance(Duration::from_millis(100));
        assert!(limiter.check_subscribe(Some("alice")).is_ok());
        assert!(limiter.check_subscribe(Some("alice")).is_err());
    }

    #[test]
    fn subscribe_rate_is_per_user() {
        let clock = FakeRelativeClock::default();
        let limiter =
            SubscribeLimiter::with_clock(&config_with_subscribe_rate(RateLimit::new(1, 1)), clock);
        assert!(limiter.check_subscribe(Some("alice")).is_ok());
        assert!(limiter.check_subscribe(Some("alice")).is_err());
        assert!(limiter.check_subscribe(Some("bob")).is_ok());
        assert!(limiter.check_subscribe(None).is_ok());
    }

    #[test]
    fn anonymous_subscribers_share_one_bucket() {
        let clock = FakeRelativeClock::default();
        let limiter =
            SubscribeLimiter::with_clock(&config_with_subscribe_rate(RateLimit::new(1, 2)), clock);
        assert!(limiter.check_subscribe(None).is_ok());
        assert!(limiter.check_subscribe(None).is_ok());
        assert!(limiter.check_subscribe(None).is_err());
        assert!(limiter.check_subscribe(Some(ANONYMOUS_KEY)).is_err());
        assert!(limiter.check_subscribe(Some("alice")).is_ok());
    }

    #[test]
    fn no_subscribe_rate_allows_everything() {
        let limiter = SubscribeLimiter::new(&LimitsConfig {
            subscribe_rate_per_user: None,
            ..LimitsConfig::default()
        });
        for _ in 0..10_000 {
            assert!(limiter.check_subscribe(Some("alice")).is_ok());
        }
        assert_eq!(limiter.tracked_users(), 0);
        assert_eq!(limiter.rate(), None);
    }

    #[test]
    fn subscribe_rate_on_the_real_clock_refuses_after_the_burst() {
        let limiter = SubscribeLimiter::new(&config_with_subscribe_rate(RateLimit::new(1, 2)));
        assert!(limiter.check_subscribe(Some("alice")).is_ok());
        assert!(limiter.check_subscribe(Some("alice")).is_ok());
        assert!(limiter.check_subscribe(Some("alice")).is_err());
    }

    #[test]
    fn retain_recent_forgets_users_whose_bucket_refilled() {
        let clock = FakeRelativeClock::default();
        let limiter = SubscribeLimiter::with_clock(
            &config_with_subscribe_rate(RateLimit::new(10, 5)),
            clock.clone(),
        );
        assert!(limiter.check_subscribe(Some("alice")).is_ok());
        assert!(limiter.check_subscribe(Some("bob")).is_ok());
        assert_eq!(limiter.tracked_users(), 2);
        limiter.retain_recent();
        assert_eq!(limiter.tracked_users(), 2, "recently used buckets stay");
        clock.advance(Duration::from_secs(1));
        limiter.retain_recent();
        assert_eq!(limiter.tracked_users(), 0);
    }

    #[test]
    fn subscribe_limiter_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SubscribeLimiter>();
        assert_send_sync::<DeliveryLimiter>();
        assert_send_sync::<MessageLimiter>();
    }

    #[test]
    fn delivery_rate_allows_the_burst_then_drops() {
        let limiter =
            DeliveryLimiter::with_clock(RateLimit::new(5, 3), FakeRelativeClock::default());
        assert!(limiter.allow());
        assert!(limiter.allow());
        assert!(limiter.allow());
        assert!(!limiter.allow());
        assert!(!limiter.allow());
    }

    #[test]
    fn delivery_rate_refills_after_time_up_to_the_burst() {
        let clock = FakeRelativeClock::default();
        let limiter = DeliveryLimiter::with_clock(RateLimit::new(10, 3), clock.clone());
        for _ in 0..3 {
            assert!(limiter.allow());
        }
        assert!(!limiter.allow());
        clock.advance(Duration::from_millis(100));
        assert!(limiter.allow());
        assert!(!limiter.allow());
        clock.advance(Duration::from_secs(10));
        let allowed = (0..20).filter(|_| limiter.allow()).count();
        assert_eq!(allowed, 3, "a long pause refills only the burst");
    }

    #[test]
    fn delivery_rate_on_the_real_clock_refuses_after_the_burst() {
        let limiter = DeliveryLimiter::new(RateLimit::new(1, 2));
        assert!(limiter.allow());
        assert!(limiter.allow());
        assert!(!limiter.allow());
    }

    #[test]
    fn delivery_limiter_is_small_and_heap_free() {
        // Inline only: the state is an AtomicU64, the quota two u64s, the clock and start
        // instant are plain values (no Arc, no Box) for the default clock.
        let size = std::mem::size_of::<DeliveryLimiter>();
        assert!(size <= 72, "DeliveryLimiter is {size} bytes");
        let size = std::mem::size_of::<MessageLimiter>();
        assert!(size <= 80, "MessageLimiter is {size} bytes");
    }

    #[test]
    fn zero_rate_values_are_raised_to_one_instead_of_panicking() {
        let limiter =
            DeliveryLimiter::with_clock(RateLimit::new(0, 0), FakeRelativeClock::default());
        assert!(limiter.allow());
        assert!(!limiter.allow());
    }

    #[test]
    fn message_rate_allows_the_burst_then_refuses() {
        let limiter =
            MessageLimiter::with_clock(RateLimit::new(100, 2), FakeRelativeClock::default());
        assert!(limiter.allow());
        assert!(limiter.check().is_ok());
        let refused = limiter.check().unwrap_err();
        assert_eq!(refused.kind, LimitKind::MessageRate);
        assert!(refused.message.contains("at most 100 messages per second"));
        assert_eq!(limiter.rate(), RateLimit::new(100, 2));
    }

    #[test]
    fn message_rate_refills_after_time() {
        let clock = FakeRelativeClock::default();
        let limiter = MessageLimiter::with_clock(RateLimit::new(100, 1), clock.clone());
        assert!(limiter.allow());
        assert!(!limiter.allow());
        clock.advance(Duration::from_millis(5));
        assert!(!limiter.allow(), "half an interval is not enough");
        clock.advance(Duration::from_millis(5));
        assert!(limiter.allow());
    }

    #[test]
    fn subscriptions_per_connection_cap_refuses_at_the_limit() {
        let config = LimitsConfig::default();
        assert!(check_caps(&config, 99, 0).is_ok());
        let refused = check_caps(&config, 100, 0).unwrap_err();
        assert_eq!(refused.kind, LimitKind::SubscriptionsPerConnection);
        assert_eq!(
            refused.message,
            "At most 100 subscriptions per connection; complete some before subscribing again"
        );
    }

    #[test]
    fn subscriptions_per_user_cap_refuses_at_the_limit() {
        let config = LimitsConfig::default();
        assert!(check_caps(&config, 0, 999).is_ok());
        let refused = check_caps(&config, 0, 1000).unwrap_err();
        assert_eq!(refused.kind, LimitKind::SubscriptionsPerUser);
        assert!(refused
            .message
            .contains("At most 1000 subscriptions per user"));
    }

    #[test]
    fn per_connection_cap_is_checked_before_per_user_cap() {
        let refused = check_caps(&LimitsConfig::default(), 100, 1000).unwrap_err();
        assert_eq!(refused.kind, LimitKind::SubscriptionsPerConnection);
    }

    #[test]
    fn caps_set_to_none_are_unlimited() {
        let config = LimitsConfig {
            max_subscriptions_per_connection: None,
            max_subscriptions_per_user: None,
            max_connections_per_user: None,
            ..LimitsConfig::default()
        };
        assert!(check_caps(&config, usize::MAX, usize::MAX).is_ok());
        assert!(check_connection_cap(&config, usize::MAX).is_ok());
    }

    #[test]
    fn connections_per_user_cap_refuses_at_the_limit() {
        let config = LimitsConfig::default();
        assert!(check_connection_cap(&config, 99).is_ok());
        let refused = check_connection_cap(&config, 100).unwrap_err();
        assert_eq!(refused.kind, LimitKind::ConnectionsPerUser);
        assert!(refused.message.contains("At most 100 connections per user"));
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
