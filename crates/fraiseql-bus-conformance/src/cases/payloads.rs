//! What an event may be: large payloads arrive intact, invalid channel names are refused.

use std::sync::Arc;

use fraiseql_subscriptions::{BusError, Event, MAX_CHANNEL_BYTES};
use serde_json::json;

use crate::ctx::Ctx;
use crate::observe::{fence, increasing, numbered, publish, sized, until_fence, DATA};

use super::support::*;

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
