//! The cases: one `pub async fn` per rule of the `EventBus` contract, named for the rule.
//!
//! Each runs in a [`Deployment`](crate::Deployment) of its own, with nodes built by it: node
//! `a` publishes, node `b` subscribes (with the in-memory bus both are one bus). Cases that
//! need a connection to lose pass as not applicable on [`Delivery::Lossless`]; cases about
//! gap notices pass as not applicable on [`Delivery::AtMostOnce`] (which never sends one).
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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fraiseql_subscriptions::{BusError, Event, EventBus, EventStream, MAX_CHANNEL_BYTES};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::observe::{
    assert_quiet, fence, increasing, n_of, next, next_skipping_probes, numbered, publish,
    publish_after_loss, sized, until_delivering, until_fence, DATA, FENCE,
};
use crate::{Ctx, Delivery, Node, GUARD, STREAM_CAPACITY};

fn one(channel: &str) -> Vec<String> {
    vec![channel.to_owned()]
}

async fn subscribe(node: &Node, channels: &[String]) -> EventStream {
    node.bus()
        .subscribe(channels)
        .await
        .unwrap_or_else(|err| panic!("subscribing to {channels:?}: {err}"))
}

/// Publishes `events` in order from a task of their own: on the in-memory bus `publish`
/// waits while a subscribed stream is full (back-pressure), so the reader must not be the
/// publisher.
fn publish_all(publisher: &Arc<dyn EventBus>, events: Vec<Arc<Event>>) -> JoinHandle<()> {
    let bus = Arc::clone(publisher);
    tokio::spawn(async move {
        for event in events {
            publish(&bus, event).await;
        }
    })
}

/// Publishes `numbers` on `channel`, then a fence; reads `stream` up to the fence and checks
/// that exactly those events arrived, in order.
async fn round_trip(
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

/// `subscribe` and `subscribe_to` return once the node listens: an event published the
/// moment they return, by any node, is delivered. (Redis answers SUBSCRIBE out of band, so
/// its bus must confirm the subscription on the listening connection before returning, or a
/// publish on another connection overtakes it now and then: hence 300 rounds.)
pub async fn publish_right_after_subscribe_returns_is_delivered(ctx: Ctx) {
    let a = ctx.deployment().node().await;
    let b = ctx.deployment().node().await;
    let mut stream = subscribe(&b, &[]).await;
    for i in 0..300_u64 {
        let channel = ctx.channel(&format!("sub{i}"));
        b.bus()
            .subscribe_to(stream.id(), &one(&channel))
            .await
            .unwrap_or_else(|err| panic!("subscribe_to {channel}: {err}"));
        let publisher = if i % 2 == 0 { a.bus() } else { b.bus() };
        publish(publisher, numbered(&channel, i)).await;
        let got = next(&mut stream, &format!("event {i} on {channel}")).await;
        assert_eq!((got.channel(), n_of(&got)), (channel.as_str(), i));
    }
    for i in 0..10_u64 {
        let channel = ctx.channel(&format!("fresh{i}"));
        let mut fresh = subscribe(&b, &one(&channel)).await;
        let publisher = if i % 2 == 0 { a.bus() } else { b.bus() };
        publish(publisher, numbered(&channel, i)).await;
        let got = next(&mut fresh, &format!("event {i} on {channel}")).await;
        assert_eq!((got.channel(), n_of(&got)), (channel.as_str(), i));
    }
}

/// A node subscribed to a channel receives the events it publishes there itself, once each;
/// a connected node passes its health check and counts what it did.
pub async fn own_publish_arrives_exactly_once(ctx: Ctx) {
    let b = ctx.deployment().node().await;
    let channel = ctx.channel("own");
    let mut stream = subscribe(&b, &one(&channel)).await;
    round_trip(b.bus(), &mut stream, &channel, 0..20).await;
    b.bus()
        .health_check()
        .await
        .unwrap_or_else(|err| panic!("a connected node passes its health check: {err}"));
    let stats = b.bus().stats();
    assert!(stats.events_published >= 21, "{stats:?}");
    // The fence may be counted just after it was handed over; the 20 before it were counted
    // before it was.
    assert!(stats.events_delivered >= 20, "{stats:?}");
    assert_eq!(stats.active_channels, 1, "{stats:?}");
    assert!(!stats.mode.is_empty(), "{stats:?}");
}

/// Per channel, the events one publisher published one after another arrive in that order,
/// all of them, once, while other publishers (on both nodes) publish on other channels at the
/// same time.
pub async fn order_per_channel_under_concurrent_publishers(ctx: Ctx) {
    const CHANNELS: usize = 6;
    const EACH: u64 = 150;
    let a = ctx.deployment().node().await;
    let b = ctx.deployment().node().await;
    let channels: Vec<String> = (0..CHANNELS)
        .map(|i| ctx.channel(&format!("order{i}")))
        .collect();
    let mut stream = subscribe(&b, &channels).await;
    let publishers: Vec<_> = channels
        .iter()
        .enumerate()
        .map(|(i, channel)| {
            let bus = Arc::clone(if i % 2 == 0 { a.bus() } else { b.bus() });
            let channel = channel.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    publish(&bus, numbered(&channel, n)).await;
                    if n % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                publish(&bus, fence(&channel)).await;
            })
        })
        .collect();
    let mut seen: BTreeMap<String, Vec<Arc<Event>>> = BTreeMap::new();
    let mut fenced = BTreeSet::new();
    while fenced.len() < CHANNELS {
        let event = next(&mut stream, "the events of every channel").await;
        let channel = event.channel().to_owned();
        assert!(
            channels.contains(&channel),
            "an event of a channel never subscribed: {event:?}"
        );
        assert!(
            !fenced.contains(&channel),
            "an event on {channel} after its fence: {event:?}"
        );
        if event.event_type() == FENCE {
            fenced.insert(channel);
        } else {
            seen.entry(channel).or_default().push(event);
        }
    }
    for publisher in publishers {
        publisher.await.expect("a publisher task failed");
    }
    for channel in &channels {
        let got = seen.remove(channel).unwrap_or_default();
        assert_eq!(
            increasing(&got, channel),
            (0..EACH).collect::<Vec<_>>(),
            "every event of {channel}, in publish order, once"
        );
    }
    assert_quiet(&mut stream, "after every fence");
}

/// 200 channels, a stream for each and one for all: every stream gets the events of its own
/// channels only, and events of channels nobody subscribed to reach nobody.
pub async fn many_channels_each_get_only_their_events(ctx: Ctx) {
    const COUNT: usize = 200;
    let a = ctx.deployment().node().await;
    let b = ctx.deployment().node().await;
    let channels: Vec<String> = (0..COUNT).map(|i| ctx.channel(&format!("ch{i}"))).collect();
    let strays: Vec<String> = (0..10).map(|i| ctx.channel(&format!("stray{i}"))).collect();
    let mut singles = Vec::with_capacity(COUNT);
    for channel in &channels {
        singles.push(subscribe(&b, &one(channel)).await);
    }
    let (first, rest) = channels.split_at(COUNT / 2);
    let mut all = subscribe(&b, first).await;
    b.bus()
        .subscribe_to(all.id(), rest)
        .await
        .unwrap_or_else(|err| panic!("subscribe_to 100 channels: {err}"));
    assert_eq!(
        b.bus().stats().active_channels,
        COUNT,
        "{:?}",
        b.bus().stats()
    );

    // Every stream is read at once: a stream left unread would stall the node (back-pressure).
    let readers: Vec<_> = singles
        .into_iter()
        .zip(channels.iter().cloned())
        .map(|(mut stream, channel)| {
            tokio::spawn(async move {
                let got = until_fence(&mut stream, &channel).await;
                assert!(
                    got.iter().all(|e| e.channel() == channel),
                    "the stream of {channel} got another channel's event: {got:?}"
                );
                assert_eq!(increasing(&got, &channel), vec![0, 1], "{channel}");
                stream
            })
        })
        .collect();
    let everything = {
        let channels = channels.clone();
        tokio::spawn(async move {
            let mut per_channel: BTreeMap<String, Vec<Arc<Event>>> = BTreeMap::new();
            let mut fenced = BTreeSet::new();
            while fenced.len() < channels.len() {
                let event = next(&mut all, "the events of 200 channels").await;
                let channel = event.channel().to_owned();
                assert!(channels.contains(&channel), "a stray event: {event:?}");
                if event.event_type() == FENCE {
                    assert!(fenced.insert(channel), "a second fence");
                } else {
                    per_channel.entry(channel).or_default().push(event);
                }
            }
            for channel in &channels {
                let got = per_channel.remove(channel).unwrap_or_default();
                assert_eq!(
                    increasing(&got, channel),
                    vec![0, 1],
                    "{channel} on the all-channels stream"
                );
            }
            all
        })
    };
    for n in 0..2 {
        for channel in channels.iter().chain(&strays) {
            publish(a.bus(), numbered(channel, n)).await;
        }
    }
    for channel in &channels {
        publish(a.bus(), fence(channel)).await;
    }
    let mut streams = Vec::with_capacity(COUNT + 1);
    for reader in readers {
        streams.push(reader.await.expect("a single-channel reader failed"));
    }
    streams.push(everything.await.expect("the all-channels reader failed"));
    // Every fence was handed over, so anything misrouted would be waiting by now.
    for stream in &mut streams {
        assert_quiet(stream, "after the fences");
    }
    for (stream, channel) in streams.iter().zip(&channels) {
        b.bus()
            .unsubscribe(stream.id(), &one(channel))
            .await
            .unwrap_or_else(|err| panic!("unsubscribe {channel}: {err}"));
    }
    if let Some(all) = streams.last() {
        b.bus()
            .unsubscribe(all.id(), &channels)
            .await
            .unwrap_or_else(|err| panic!("unsubscribe all: {err}"));
    }
    assert_eq!(b.bus().stats().active_channels, 0, "{:?}", b.bus().stats());
}

/// Events from a few bytes to 512 KiB of data travel unchanged and in order, including sizes
/// around PostgreSQL's 8000-byte NOTIFY limit (larger events go through its events table),
/// with every field of the event kept.
pub async fn large_payloads_arrive_intact_and_in_order(ctx: Ctx) {
    let a = ctx.deployment().node().await;
    let b = ctx.deployment().node().await;
    let channel = ctx.channel("large");
    let mut stream = subscribe(&b, &one(&channel)).await;
    let mut sizes = vec![16_usize];
    sizes.extend((7_700..=8_100).step_by(25));
    sizes.extend([64 * 1024, 512 * 1024]);
    let mut sent: Vec<(String, String)> = Vec::new();
    let mut events = Vec::new();
    for (n, size) in sizes.iter().enumerate() {
        let (event, text) = sized(&channel, n as u64, *size);
        sent.push((event.id().to_owned(), text));
        events.push(event);
    }
    let publishing = publish_all(a.bus(), events);
    // The largest once more, with every field set, published by the subscribing node itself.
    let n = sent.len() as u64;
    let (_, text) = sized(&channel, n, 512 * 1024);
    let full = Event::new(&channel, json!({ "n": n, "text": text }))
        .with_type(DATA)
        .with_id(format!("full-{}", ctx.channel("id")))
        .with_tenant("acme")
        .with_audience(fraiseql_subscriptions::Audience::users(["u1"]))
        .with_correlation_id("corr-1")
        .with_timestamp_us(1_700_000_000_000_000);
    sent.push((full.id().to_owned(), text));
    let full = Arc::new(full);
    let own = {
        let (a, b, channel) = (Arc::clone(a.bus()), Arc::clone(b.bus()), channel.clone());
        tokio::spawn(async move {
            publishing.await.expect("the publisher task failed");
            publish(&b, full).await;
            publish(&a, fence(&channel)).await;
        })
    };
    let got = until_fence(&mut stream, &channel).await;
    own.await.expect("the publisher task failed");
    assert_eq!(
        increasing(&got, &channel),
        (0..sent.len() as u64).collect::<Vec<_>>(),
        "every size, in order"
    );
    for (event, (id, text)) in got.iter().zip(&sent) {
        assert_eq!(event.id(), id);
        let data = event.data().value().expect("the data is JSON");
        let arrived = data["text"].as_str().unwrap_or_default();
        assert!(
            arrived == text,
            "event {} ({} bytes sent) arrived with {} bytes of text",
            event.id(),
            text.len(),
            arrived.len()
        );
    }
    let last = got.last().expect("the last event");
    assert_eq!(last.event_type(), DATA);
    assert_eq!(last.tenant_id(), Some("acme"));
    assert_eq!(
        last.audience(),
        Some(&fraiseql_subscriptions::Audience::users(["u1"]))
    );
    assert_eq!(last.correlation_id(), Some("corr-1"));
    assert_eq!(last.timestamp_us(), 1_700_000_000_000_000);
}

/// Unsubscribing is idempotent — twice, channels never subscribed, a dropped stream, an id
/// never issued — and once it returned, events published later do not reach the stream;
/// nor, once the node stopped listening to the channel, after the stream subscribes again
/// (no history is replayed).
pub async fn unsubscribe_twice_is_fine_and_stops_delivery(ctx: Ctx) {
    let a = ctx.deployment().node().await;
    let b = ctx.deployment().node().await;
    let (x, y, never) = (ctx.channel("x"), ctx.channel("y"), ctx.channel("never"));
    let mut leaving = subscribe(&b, &[x.clone(), y.clone()]).await;
    let mut witness = subscribe(&b, &one(&x)).await;
    for _ in 0..2 {
        b.bus()
            .unsubscribe(leaving.id(), &one(&x))
            .await
            .unwrap_or_else(|err| panic!("unsubscribing twice is fine: {err}"));
    }
    b.bus()
        .unsubscribe(leaving.id(), &one(&never))
        .await
        .unwrap_or_else(|err| panic!("unsubscribing a channel never subscribed is fine: {err}"));

    publish(a.bus(), numbered(&x, 1)).await;
    publish(a.bus(), fence(&x)).await;
    publish(a.bus(), numbered(&y, 2)).await;
    publish(a.bus(), fence(&y)).await;
    let on_x = until_fence(&mut witness, &x).await;
    assert_eq!(increasing(&on_x, &x), vec![1]);
    // The witness has x's fence, so the node has handed x's event to every stream that
    // still held x: the leaving stream must have y's only.
    let on_leaving = until_fence(&mut leaving, &y).await;
    assert!(
        on_leaving.iter().all(|e| e.channel() == y),
        "an event of an unsubscribed channel arrived: {on_leaving:?}"
    );
    assert_eq!(increasing(&on_leaving, &y), vec![2]);
    assert_quiet(&mut leaving, "after unsubscribing x");

    // The last stream leaves x: the node stops listening to it.
    for _ in 0..2 {
        b.bus()
            .unsubscribe(witness.id(), &one(&x))
            .await
            .unwrap_or_else(|err| panic!("unsubscribing the last stream twice is fine: {err}"));
    }
    assert_eq!(
        b.bus().stats().active_channels,
        1,
        "only y is held: {:?}",
        b.bus().stats()
    );
    publish(a.bus(), numbered(&x, 3)).await;
    publish(a.bus(), numbered(&x, 4)).await;
    b.bus()
        .subscribe_to(witness.id(), &one(&x))
        .await
        .unwrap_or_else(|err| panic!("subscribing again: {err}"));
    round_trip(a.bus(), &mut witness, &x, 5..6).await;

    // A dropped stream, and an id never issued: unsubscribing is still fine; adding channels
    // to them is not.
    let dropped = leaving.id();
    drop(leaving);
    for _ in 0..2 {
        b.bus()
            .unsubscribe(dropped, &one(&y))
            .await
            .unwrap_or_else(|err| panic!("unsubscribing a dropped stream is fine: {err}"));
    }
    let unknown = u64::MAX - 7;
    b.bus()
        .unsubscribe(unknown, &one(&x))
        .await
        .unwrap_or_else(|err| panic!("unsubscribing an unknown stream is fine: {err}"));
    assert_eq!(
        b.bus().subscribe_to(dropped, &one(&x)).await,
        Err(BusError::UnknownStream(dropped))
    );
    assert_eq!(
        b.bus().subscribe_to(unknown, &one(&x)).await,
        Err(BusError::UnknownStream(unknown))
    );
}

/// A stream dropped (with or without unread events) is forgotten: a new stream on the same
/// channel receives what is published after it subscribed, and a dropped stream whose queue
/// was full stops holding the node back.
pub async fn resubscribe_after_the_stream_is_dropped(ctx: Ctx) {
    let a = ctx.deployment().node().await;
    let b = ctx.deployment().node().await;
    let x = ctx.channel("x");
    let mut first = subscribe(&b, &one(&x)).await;
    publish(a.bus(), numbered(&x, 1)).await;
    assert_eq!(n_of(&*next(&mut first, "event 1").await), 1);
    drop(first);
    let mut second = subscribe(&b, &one(&x)).await;
    round_trip(a.bus(), &mut second, &x, 2..4).await;

    // Dropped with an event unread.
    publish(a.bus(), numbered(&x, 4)).await;
    drop(second);
    let mut third = subscribe(&b, &one(&x)).await;
    publish(a.bus(), numbered(&x, 5)).await;
    publish(a.bus(), fence(&x)).await;
    let got = until_fence(&mut third, &x).await;
    let numbers = increasing(&got, &x);
    // Event 4 was on its way while the dropped stream still kept the node listening: it may
    // reach the new stream. Event 5 must.
    assert!(
        numbers == [5] || numbers == [4, 5],
        "the new stream gets what follows its subscription: {numbers:?}"
    );

    // A stream nobody reads fills up and holds the node back (back-pressure, not loss);
    // dropping it releases the node.
    let z = ctx.channel("z");
    let unread = subscribe(&b, &one(&z)).await;
    let mut reader = subscribe(&b, &one(&z)).await;
    let total = 4 * STREAM_CAPACITY as u64;
    let publisher = {
        let bus = Arc::clone(a.bus());
        let z = z.clone();
        tokio::spawn(async move {
            for n in 0..total {
                publish(&bus, numbered(&z, n)).await;
            }
            publish(&bus, fence(&z)).await;
        })
    };
    let mut got = Vec::new();
    // The unread stream takes STREAM_CAPACITY events before the node waits for it, and the
    // reader is handed each of them too.
    for _ in 0..STREAM_CAPACITY / 2 {
        got.push(next(&mut reader, "an event before the unread stream is full").await);
    }
    drop(unread);
    got.extend(until_fence(&mut reader, &z).await);
    assert_eq!(increasing(&got, &z), (0..total).collect::<Vec<_>>());
    publisher.await.expect("the publisher task failed");
}

/// Once the bus is dropped, its streams end: `recv` returns `None`.
pub async fn dropping_the_bus_ends_its_streams(ctx: Ctx) {
    let b = ctx.deployment().node().await;
    let x = ctx.channel("x");
    let mut stream = subscribe(&b, &one(&x)).await;
    publish(b.bus(), numbered(&x, 1)).await;
    assert_eq!(n_of(&*next(&mut stream, "event 1").await), 1);
    drop(b);
    match tokio::time::timeout(GUARD, stream.recv()).await {
        Ok(None) => {}
        Ok(Some(event)) => panic!("an event after the bus was dropped: {event:?}"),
        Err(_) => panic!("hang guard: the stream did not end within {GUARD:?} of dropping its bus"),
    }
}

/// Channel names every bus refuses (empty, too long, control characters) fail with
/// `InvalidChannel` before the backend sees them; the longest valid names, multi-byte ones
/// included, work end to end.
pub async fn invalid_channels_are_refused(ctx: Ctx) {
    let a = ctx.deployment().node().await;
    let b = ctx.deployment().node().await;
    let invalid = |result: Result<(), BusError>, what: &str| match result {
        Err(BusError::InvalidChannel { .. }) => {}
        other => panic!("{what}: expected InvalidChannel, got {other:?}"),
    };
    invalid(
        a.bus().publish(numbered("", 1)).await,
        "publish on an empty channel",
    );
    invalid(
        b.bus()
            .subscribe(&["c".repeat(MAX_CHANNEL_BYTES + 1)])
            .await
            .map(drop),
        "subscribe to a 257-byte channel",
    );
    let mut stream = subscribe(&b, &[]).await;
    invalid(
        b.bus()
            .subscribe_to(stream.id(), &["a\nb".to_owned()])
            .await,
        "subscribe_to a channel with a newline",
    );
    let suffix = ctx.channel("");
    let longest = format!("{}{suffix}", "l".repeat(MAX_CHANNEL_BYTES - suffix.len()));
    let accents = format!("{}{suffix}", "é".repeat(60));
    assert_eq!(longest.len(), MAX_CHANNEL_BYTES);
    b.bus()
        .subscribe_to(stream.id(), &[longest.clone(), accents.clone()])
        .await
        .unwrap_or_else(|err| panic!("the longest valid names are accepted: {err}"));
    round_trip(a.bus(), &mut stream, &longest, 0..3).await;
    round_trip(a.bus(), &mut stream, &accents, 0..3).await;
}

/// The server closes every connection of the subscribing node (what a backend restart looks
/// like to it), three times. Durable: every event arrives, in order, once. At most once:
/// delivery resumes, and everything published once it has is delivered.
pub async fn reconnect_after_the_connections_are_killed(ctx: Ctx) {
    const CASE: &str = "reconnect_after_the_connections_are_killed";
    if ctx.delivery() == Delivery::Lossless {
        ctx.not_applicable(CASE, "the bus has no connection to lose");
        return;
    }
    let deployment = ctx.deployment();
    let a = deployment.node().await;
    let b = deployment.node().await;
    let x = ctx.channel("x");
    let mut stream = subscribe(&b, &one(&x)).await;
    round_trip(a.bus(), &mut stream, &x, 0..1).await;
    match ctx.delivery() {
        Delivery::Durable => {
            const TOTAL: u64 = 600;
            let publisher = {
                let bus = Arc::clone(a.bus());
                let x = x.clone();
                tokio::spawn(async move {
                    for n in 1..=TOTAL {
                        publish(&bus, numbered(&x, n)).await;
                        if n % 16 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    publish(&bus, fence(&x)).await;
                })
            };
            let mut got = Vec::new();
            for n in 1..=TOTAL {
                let event = next(&mut stream, &format!("event {n} of {TOTAL}")).await;
                assert_eq!(n_of(&event), n, "in order, nothing lost, nothing twice");
                got.push(event);
                if n % 150 == 0 {
                    assert!(
                        deployment.kill_connections(&b).await,
                        "kill_connections is supported"
                    );
                }
            }
            assert!(
                until_fence(&mut stream, &x).await.is_empty(),
                "nothing twice"
            );
            publisher.await.expect("the publisher task failed");
        }
        Delivery::AtMostOnce => {
            for round in 0..3_u64 {
                assert!(
                    deployment.kill_connections(&b).await,
                    "kill_connections is supported"
                );
                let meanwhile = until_delivering(a.bus(), &mut stream, &x).await;
                assert!(
                    meanwhile.is_empty(),
                    "only probes were published: {meanwhile:?}"
                );
                let from = 100 * round;
                for n in from..from + 50 {
                    publish(a.bus(), numbered(&x, n)).await;
                }
                publish(a.bus(), fence(&x)).await;
                let mut got = Vec::new();
                loop {
                    let event =
                        next_skipping_probes(&mut stream, "the events after resuming").await;
                    if event.event_type() == FENCE {
                        break;
                    }
                    got.push(event);
                }
                assert_eq!(
                    increasing(&got, &x),
                    (from..from + 50).collect::<Vec<_>>(),
                    "once delivery resumed, nothing is lost"
                );
            }
        }
        Delivery::Lossless => {}
    }
    // The node's own connections came back too: it publishes and subscribes.
    let y = ctx.channel("y");
    b.bus()
        .subscribe_to(stream.id(), &one(&y))
        .await
        .unwrap_or_else(|err| panic!("subscribing after the reconnect: {err}"));
    publish_after_loss(b.bus(), numbered(&y, 0)).await;
    let first =
        next_skipping_probes(&mut stream, "the first event published after the reconnect").await;
    assert_eq!((first.channel(), n_of(&first)), (y.as_str(), 0));
    round_trip(b.bus(), &mut stream, &y, 1..5).await;
}

/// The subscribing node is cut off (its logins refused, its connections killed) while the
/// other node publishes — large events included. Durable: after the outage every one of them
/// arrives, in order, once. At most once: delivery resumes.
pub async fn nothing_published_during_an_outage_is_lost(ctx: Ctx) {
    const CASE: &str = "nothing_published_during_an_outage_is_lost";
    if ctx.delivery() == Delivery::Lossless {
        ctx.not_applicable(CASE, "the bus has no connection to lose");
        return;
    }
    let deployment = ctx.deployment();
    let a = deployment.node().await;
    let b = deployment.node().await;
    let x = ctx.channel("x");
    let mut stream = subscribe(&b, &one(&x)).await;
    round_trip(a.bus(), &mut stream, &x, 0..1).await;
    assert!(
        deployment.begin_outage(&b).await,
        "begin_outage is supported"
    );
    let mut texts = BTreeMap::new();
    for n in 1..=60 {
        if n % 20 == 5 {
            let (event, text) = sized(&x, n, 20 * 1024);
            texts.insert(n, text);
            publish(a.bus(), event).await;
        } else {
            publish(a.bus(), numbered(&x, n)).await;
        }
    }
    deployment.end_outage(&b).await;
    match ctx.delivery() {
        Delivery::Durable => {
            publish(a.bus(), fence(&x)).await;
            let got = until_fence(&mut stream, &x).await;
            assert_eq!(
                increasing(&got, &x),
                (1..=60).collect::<Vec<_>>(),
                "everything published during the outage, in order, once"
            );
            for event in &got {
                if let Some(text) = texts.get(&n_of(event)) {
                    assert_eq!(
                        event.data().value().expect("JSON")["text"].as_str(),
                        Some(text.as_str())
                    );
                }
            }
        }
        _ => {
            let meanwhile = until_delivering(a.bus(), &mut stream, &x).await;
            increasing(&meanwhile, &x);
            let mut got = Vec::new();
            for n in 61..=80 {
                publish(a.bus(), numbered(&x, n)).await;
            }
            publish(a.bus(), fence(&x)).await;
            loop {
                let event = next_skipping_probes(&mut stream, "the events after resuming").await;
                if event.event_type() == FENCE {
                    break;
                }
                got.push(event);
            }
            assert_eq!(increasing(&got, &x), (61..=80).collect::<Vec<_>>());
        }
    }
}

/// Subscribing while the node is cut off either fails with a backend error (and works once
/// the outage is over) or succeeds — and then, on a durable bus, nothing published after it
/// returned is lost.
pub async fn subscribe_during_an_outage(ctx: Ctx) {
    const CASE: &str = "subscribe_during_an_outage";
    if ctx.delivery() == Delivery::Lossless {
        ctx.not_applicable(CASE, "the bus has no connection to lose");
        return;
    }
    let deployment = ctx.deployment();
    let a = deployment.node().await;
    let b = deployment.node().await;
    let (x, y) = (ctx.channel("x"), ctx.channel("y"));
    let mut listening = subscribe(&b, &one(&x)).await;
    round_trip(a.bus(), &mut listening, &x, 0..1).await;
    assert!(
        deployment.begin_outage(&b).await,
        "begin_outage is supported"
    );
    // Bounded by the backend's command timeout.
    let attempt = b.bus().subscribe(&one(&y)).await;
    let (mut stream, published_meanwhile) = match attempt {
        Ok(stream) => {
            for n in 1..=10 {
                publish(a.bus(), numbered(&y, n)).await;
            }
            deployment.end_outage(&b).await;
            (stream, true)
        }
        Err(BusError::Backend { .. }) => {
            deployment.end_outage(&b).await;
            let deadline = tokio::time::Instant::now() + GUARD;
            let stream = loop {
                // The node may still be reconnecting: each attempt is bounded by the backend.
                match b.bus().subscribe(&one(&y)).await {
                    Ok(stream) => break stream,
                    Err(err) => assert!(
                        tokio::time::Instant::now() < deadline,
                        "hang guard: subscribing still fails {GUARD:?} after the outage: {err}"
                    ),
                }
            };
            (stream, false)
        }
        Err(other) => panic!("subscribing during an outage: expected a backend error, got {other}"),
    };
    match (ctx.delivery(), published_meanwhile) {
        (Delivery::Durable, true) => {
            publish(a.bus(), fence(&y)).await;
            let got = until_fence(&mut stream, &y).await;
            assert_eq!(
                increasing(&got, &y),
                (1..=10).collect::<Vec<_>>(),
                "a subscription that returned during the outage misses nothing published after it"
            );
        }
        (Delivery::Durable, false) => round_trip(a.bus(), &mut stream, &y, 1..11).await,
        _ => {
            let meanwhile = until_delivering(a.bus(), &mut stream, &y).await;
            increasing(&meanwhile, &y);
            for n in 11..=20 {
                publish(a.bus(), numbered(&y, n)).await;
            }
            publish(a.bus(), fence(&y)).await;
            let mut got = Vec::new();
            loop {
                let event = next_skipping_probes(&mut stream, "the events after resuming").await;
                if event.event_type() == FENCE {
                    break;
                }
                got.push(event);
            }
            assert_eq!(increasing(&got, &y), (11..=20).collect::<Vec<_>>());
        }
    }
    drop(listening);
}

/// A backend restart while events are unread: the subscribing node has not read 120 events
/// (its stream is full, so the backend still holds most of them; some are large) when the
/// server closes every connection of both nodes; publishing goes on meanwhile, and may fail
/// while the publisher reconnects. Durable: every event published without error arrives, in
/// order, once. At most once: what arrives is in order and unique, and delivery resumes.
pub async fn backend_restart_with_unread_events(ctx: Ctx) {
    const CASE: &str = "backend_restart_with_unread_events";
    if ctx.delivery() == Delivery::Lossless {
        ctx.not_applicable(CASE, "the bus has no connection to lose");
        return;
    }
    let deployment = ctx.deployment();
    let a = deployment.node().await;
    let b = deployment.node().await;
    let x = ctx.channel("x");
    let mut stream = subscribe(&b, &one(&x)).await;
    round_trip(a.bus(), &mut stream, &x, 0..1).await;
    let mut texts = BTreeMap::new();
    for n in 1..=120 {
        if n % 40 == 7 {
            let (event, text) = sized(&x, n, 20 * 1024);
            texts.insert(n, text);
            publish(a.bus(), event).await;
        } else {
            publish(a.bus(), numbered(&x, n)).await;
        }
    }
    assert!(
        deployment.kill_connections(&b).await,
        "kill_connections is supported"
    );
    assert!(
        deployment.kill_connections(&a).await,
        "kill_connections is supported"
    );
    let mut accepted: BTreeSet<u64> = (1..=120).collect();
    for n in 121..=180 {
        if a.bus().publish(numbered(&x, n)).await.is_ok() {
            accepted.insert(n);
        }
    }
    match ctx.delivery() {
        Delivery::Durable => {
            // A fence whose publish failed may or may not have been published; the first
            // fence that arrives follows every event accepted before it.
            let deadline = tokio::time::Instant::now() + GUARD;
            while let Err(err) = a.bus().publish(fence(&x)).await {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "hang guard: publishing still fails {GUARD:?} after the restart: {err}"
                );
            }
            let got = until_fence(&mut stream, &x).await;
            let numbers: BTreeSet<u64> = increasing(&got, &x).into_iter().collect();
            let missing: Vec<_> = accepted.difference(&numbers).collect();
            assert!(
                missing.is_empty(),
                "events accepted before or after the restart were lost: {missing:?}"
            );
            assert!(numbers.iter().all(|n| (1..=180).contains(n)), "{numbers:?}");
            for event in &got {
                if let Some(text) = texts.get(&n_of(event)) {
                    assert_eq!(
                        event.data().value().expect("JSON")["text"].as_str(),
                        Some(text.as_str())
                    );
                }
            }
        }
        _ => {
            let before = until_delivering(a.bus(), &mut stream, &x).await;
            increasing(&before, &x);
            for n in 181..=200 {
                publish(a.bus(), numbered(&x, n)).await;
            }
            publish(a.bus(), fence(&x)).await;
            let mut got = Vec::new();
            loop {
                let event = next_skipping_probes(&mut stream, "the events after resuming").await;
                if event.event_type() == FENCE {
                    break;
                }
                got.push(event);
            }
            assert_eq!(increasing(&got, &x), (181..=200).collect::<Vec<_>>());
        }
    }
}

/// While the subscribing node is cut off, the backend discards all but the newest 50 of the
/// 300 events it missed (Redis trims the stream, PostgreSQL prunes the table). After the
/// outage its stream receives the gap notice first, in place of the lost events, then the 50
/// the backend still holds, in order, then live events.
pub async fn gap_notice_when_the_backend_discarded_unread_events(ctx: Ctx) {
    const CASE: &str = "gap_notice_when_the_backend_discarded_unread_events";
    if ctx.delivery() != Delivery::Durable {
        ctx.not_applicable(CASE, "only durable backends promise gap notices");
        return;
    }
    let deployment = ctx.deployment();
    let a = deployment.node().await;
    let b = deployment.node().await;
    let x = ctx.channel("x");
    let mut stream = subscribe(&b, &one(&x)).await;
    round_trip(a.bus(), &mut stream, &x, 0..5).await;
    assert!(
        deployment.begin_outage(&b).await,
        "begin_outage is supported"
    );
    for n in 5..305 {
        publish(a.bus(), numbered(&x, n)).await;
    }
    assert!(
        deployment.discard_events(&one(&x), 50).await,
        "discard_events is supported"
    );
    deployment.end_outage(&b).await;
    publish(a.bus(), numbered(&x, 305)).await;
    publish(a.bus(), fence(&x)).await;
    let notice = next(&mut stream, "the gap notice").await;
    assert!(
        notice.is_gap(),
        "the first thing after the hole is the gap notice, got {notice:?}"
    );
    assert_eq!(notice.channel(), x, "the notice names the channel");
    assert!(
        notice.is_global(),
        "a gap notice reaches every tenant's subscribers"
    );
    let message = notice
        .data()
        .value()
        .expect("JSON")
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!message.is_empty(), "the notice says what happened");
    let got = until_fence(&mut stream, &x).await;
    assert!(
        got.iter().all(|e| !e.is_gap()),
        "one notice per hole: {got:?}"
    );
    assert_eq!(
        increasing(&got, &x),
        (255..=305).collect::<Vec<_>>(),
        "after the notice, what the backend still holds, then live events"
    );
}
