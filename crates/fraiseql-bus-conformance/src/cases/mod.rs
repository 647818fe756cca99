//! The cases: one `pub async fn` per rule of the `EventBus` contract, named for the rule.
//!
//! Each runs in a [`Deployment`](crate::Deployment) of its own, with nodes built by it: node
//! `a` publishes, node `b` subscribes (with the in-memory bus both are one bus). Cases that
//! need a connection to lose pass as not applicable on [`Delivery::Lossless`](crate::Delivery::Lossless); cases about
//! gap notices pass as not applicable on [`Delivery::AtMostOnce`](crate::Delivery::AtMostOnce) (which never sends one).
//!
//! | case | checks |
//! |---|---|
//! | [`publish_right_after_subscribe_returns_is_delivered`] | `subscribe`/`subscribe_to` return once the node listens |
//! | [`own_publish_arrives_exactly_once`] | a node's own events reach it once; health check; stats |
//! | [`order_per_channel_under_concurrent_publishers`] | per-channel order, completeness, no duplicates |
//! | [`many_channels_each_get_only_their_events`] | 200 channels and streams: routing, stats |
//! | [`large_payloads_arrive_intact_and_in_order`] | up to 512 KiB, around the NOTIFY limit, every field |
//! | [`unsubscribe_twice_is_fine_and_stops_delivery`] | idempotent unsubscribe; nothing after it; no history |
//! | [`resubscribe_after_the_stream_is_dropped`] | a dropped stream is forgotten and releases back-pressure |
//! | [`dropping_the_bus_ends_its_streams`] | `recv` returns `None` once the bus is gone |
//! | [`invalid_channels_are_refused`] | `InvalidChannel`; the longest valid names work end to end |
//! | [`reconnect_after_the_connections_are_killed`] | durable: nothing lost or doubled; pubsub: delivery resumes |
//! | [`nothing_published_during_an_outage_is_lost`] | durable: all of it after the outage; pubsub: resumes |
//! | [`subscribe_during_an_outage`] | refused with a backend error, or effective from its return |
//! | [`backend_restart_with_unread_events`] | every connection of both nodes killed with events unread |
//! | [`gap_notice_when_the_backend_discarded_unread_events`] | the gap notice, in place, then the rest |

mod backend_loss;
mod connection_loss;
mod membership;
mod payloads;
mod routing;
mod support;

pub use backend_loss::{
    backend_restart_with_unread_events, gap_notice_when_the_backend_discarded_unread_events,
};
pub use connection_loss::{
    nothing_published_during_an_outage_is_lost, reconnect_after_the_connections_are_killed,
    subscribe_during_an_outage,
};
pub use membership::{
    dropping_the_bus_ends_its_streams, resubscribe_after_the_stream_is_dropped,
    unsubscribe_twice_is_fine_and_stops_delivery,
};
pub use payloads::{invalid_channels_are_refused, large_payloads_arrive_intact_and_in_order};
pub use routing::{
    many_channels_each_get_only_their_events, order_per_channel_under_concurrent_publishers,
    own_publish_arrives_exactly_once, publish_right_after_subscribe_returns_is_delivered,
};
