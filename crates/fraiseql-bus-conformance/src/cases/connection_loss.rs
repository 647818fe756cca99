//! A node losing its connections: killed connections, an outage while others publish, subscribing during an outage.

use std::collections::BTreeMap;
use std::sync::Arc;

use fraiseql_subscriptions::BusError;

use crate::ctx::{Ctx, GUARD};
use crate::deployment::Delivery;
use crate::observe::{
    fence, increasing, n_of, next, next_skipping_probes, numbered, publish, publish_after_loss,
    sized, until_delivering, until_fence, FENCE,
};

use super::support::*;

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
