//! A stream's membership: unsubscribing, dropping a stream, dropping the bus.

use std::sync::Arc;

use fraiseql_subscriptions::BusError;

use crate::ctx::{Ctx, GUARD, STREAM_CAPACITY};
use crate::observe::{assert_quiet, fence, increasing, n_of, next, numbered, publish, until_fence};

use super::support::*;

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
