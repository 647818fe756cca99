//! Steps the cases share: subscribing a node, publishing a batch, a round trip.

use std::sync::Arc;

use fraiseql_subscriptions::{Event, EventBus, EventStream};
use tokio::task::JoinHandle;

use crate::deployment::Node;
use crate::observe::{fence, increasing, numbered, publish, until_fence};

pub(super) fn one(channel: &str) -> Vec<String> {
    vec![channel.to_owned()]
}

pub(super) async fn subscribe(node: &Node, channels: &[String]) -> EventStream {
    node.bus()
        .subscribe(channels)
        .await
        .unwrap_or_else(|err| panic!("subscribing to {channels:?}: {err}"))
}

/// Publishes `events` in order from a task of their own: on the in-memory bus `publish`
/// waits while a subscribed stream is full (back-pressure), so the reader must not be the
/// publisher.
pub(super) fn publish_all(
    publisher: &Arc<dyn EventBus>,
    events: Vec<Arc<Event>>,
) -> JoinHandle<()> {
    let bus = Arc::clone(publisher);
    tokio::spawn(async move {
        for event in events {
            publish(&bus, event).await;
        }
    })
}

/// Publishes `numbers` on `channel`, then a fence; reads `stream` up to the fence and checks
/// that exactly those events arrived, in order.
pub(super) async fn round_trip(
    publisher: &Arc<dyn EventBus>,
    stream: &mut EventStream,
    channel: &str,
    numbers: std::ops::Range<u64>,
) {
    let mut events: Vec<_> = numbers.clone().map(|n| numbered(channel, n)).collect();
    events.push(fence(channel));
    let publishing = publish_all(publisher, events);
    let got = until_fence(stream, channel).await;
    publishing.await.expect("the publisher task failed");
    assert_eq!(
        increasing(&got, channel),
        numbers.collect::<Vec<_>>(),
        "exactly the events published on {channel}, in order"
    );
}
