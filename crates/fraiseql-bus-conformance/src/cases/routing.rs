//! Routing and order: subscribing takes effect when it returns, a node's own events, per-channel order under concurrent publishers, many channels.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fraiseql_subscriptions::Event;

use crate::ctx::Ctx;
use crate::observe::{
    assert_quiet, fence, increasing, n_of, next, numbered, publish, until_fence, FENCE,
};

use super::support::*;

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
