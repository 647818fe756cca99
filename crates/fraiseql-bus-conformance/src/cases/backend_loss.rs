//! The backend losing events: a restart with events unread, events discarded before a node read them.

use std::collections::{BTreeMap, BTreeSet};

use crate::ctx::{Ctx, GUARD};
use crate::deployment::Delivery;
use crate::observe::{
    fence, increasing, n_of, next, next_skipping_probes, numbered, publish, sized,
    until_delivering, until_fence, FENCE,
};

use super::support::*;

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
