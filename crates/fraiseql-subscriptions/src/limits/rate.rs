//! The three rate limiters (governor's GCRA): subscription creation per user
//! ([`SubscribeLimiter`]), deliveries per subscription ([`DeliveryLimiter`]) and client
//! messages per connection ([`MessageLimiter`]), each generic over governor's clock.

use std::fmt;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::RateLimiter;

use super::config::{LimitsConfig, RateLimit};
use super::rejection::LimitRejection;

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
    /// [`LimitRejection`] of kind [`LimitKind::SubscribeRate`](super::LimitKind::SubscribeRate)
    /// when the bucket is empty.
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
    /// [`LimitRejection`] of kind [`LimitKind::MessageRate`](super::LimitKind::MessageRate) when
    /// the bucket is empty.
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::super::rejection::LimitKind;
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
}
