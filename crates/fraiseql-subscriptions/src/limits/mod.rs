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
//! The limiters are generic over governor's [`Clock`](governor::clock::Clock) with the real
//! clock as the default, so the engine writes `DeliveryLimiter` and tests drive a
//! [`FakeRelativeClock`](governor::clock::FakeRelativeClock) through `with_clock`, never
//! sleeping.

mod caps;
mod config;
mod rate;
mod rejection;

pub use caps::{check_caps, check_connection_cap};
pub use config::{LimitsConfig, LimitsError, RateLimit, DEFAULT_OUTBOX_CAPACITY};
pub use rate::{DeliveryLimiter, MessageLimiter, SubscribeLimiter, ANONYMOUS_KEY};
pub use rejection::{LimitKind, LimitRejection};
