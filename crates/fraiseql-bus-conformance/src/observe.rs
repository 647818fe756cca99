//! Publishing numbered events and reading them back, without timed assertions: every wait
//! is for an event, bounded only by the hang guard.

use std::sync::Arc;
use std::time::Duration;

use fraiseql_subscriptions::{BusError, Event, EventBus, EventStream};
use serde_json::json;

use crate::ctx::GUARD;

/// The event type of the suite's numbered events.
pub(crate) const DATA: &str = "conformance.data";
/// The event type of a fence: published last, it proves that everything before it on its
/// channel was handled.
pub(crate) const FENCE: &str = "conformance.fence";
/// The event type of a probe: published again and again until one arrives, where a backend
/// may lose events (Redis pubsub reconnecting).
pub(crate) const PROBE: &str = "conformance.probe";

/// Event number `n` on `channel`.
pub(crate) fn numbered(channel: &str, n: u64) -> Arc<Event> {
    Arc::new(Event::new(channel, json!({ "n": n })).with_type(DATA))
}

/// Event number `n` on `channel` whose data is about `bytes` bytes of JSON: a string of
/// ASCII and two-byte characters (so byte and character counts differ).
pub(crate) fn sized(channel: &str, n: u64, bytes: usize) -> (Arc<Event>, String) {
    let mut text = String::with_capacity(bytes);
    let mut i = 0_usize;
    while text.len() + 16 < bytes {
        // Cycle through ASCII letters, with an `é` every 7th character.
        if i % 7 == 6 {
            text.push('é');
        } else {
            text.push(char::from(b'a' + u8::try_from(i % 26).unwrap_or(0)));
        }
        i += 1;
    }
    let event = Event::new(channel, json!({ "n": n, "text": text })).with_type(DATA);
    (Arc::new(event), text)
}

/// A fence on `channel`.
pub(crate) fn fence(channel: &str) -> Arc<Event> {
    Arc::new(Event::new(channel, json!(null)).with_type(FENCE))
}

/// The number of a numbered event or a probe.
pub(crate) fn n_of(event: &Event) -> u64 {
    event
        .data()
        .value()
        .ok()
        .and_then(|v| v.get("n"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("not a numbered event: {event:?}"))
}

/// Publishes, failing the case on an error.
pub(crate) async fn publish(bus: &Arc<dyn EventBus>, event: Arc<Event>) {
    let channel = event.channel().to_owned();
    if let Err(err) = bus.publish(event).await {
        panic!("publishing on {channel}: {err}");
    }
}

/// Publishes from a node whose connections were just killed. The contract (rule 10) lets
/// the first publish after a loss fail when that publish is what finds the connection dead
/// (a bus must not retry it: the backend may have accepted it); the next one must go through
/// on a new connection.
pub(crate) async fn publish_after_loss(bus: &Arc<dyn EventBus>, event: Arc<Event>) {
    if let Err(err) = bus.publish(Arc::clone(&event)).await {
        eprintln!("the first publish after the loss failed ({err}); publishing again");
        publish(bus, event).await;
    }
}

/// The next event of `stream`; fails after [`GUARD`] (a hang) or when the stream ended.
pub(crate) async fn next(stream: &mut EventStream, waiting_for: &str) -> Arc<Event> {
    match tokio::time::timeout(GUARD, stream.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("the stream ended while waiting for {waiting_for}"),
        Err(_) => panic!("hang guard: no event within {GUARD:?} while waiting for {waiting_for}"),
    }
}

/// The next event that is not a probe (late probes of [`until_delivering`] are skipped).
pub(crate) async fn next_skipping_probes(
    stream: &mut EventStream,
    waiting_for: &str,
) -> Arc<Event> {
    loop {
        let event = next(stream, waiting_for).await;
        if event.event_type() != PROBE {
            return event;
        }
    }
}

/// Asserts that nothing is waiting in `stream` now. Only meaningful after a fence proved
/// that whatever could have arrived has been handed over.
pub(crate) fn assert_quiet(stream: &mut EventStream, why: &str) {
    let mut rest = Vec::new();
    stream.try_recv_many(&mut rest, 16);
    assert!(rest.is_empty(), "{why}: unexpected {rest:?}");
}

/// Reads `stream` up to and including the fence on `channel`, returning what came before it.
pub(crate) async fn until_fence(stream: &mut EventStream, channel: &str) -> Vec<Arc<Event>> {
    let mut before = Vec::new();
    loop {
        let event = next(stream, &format!("the fence on {channel}")).await;
        if event.event_type() == FENCE && event.channel() == channel {
            return before;
        }
        before.push(event);
    }
}

/// Publishes probes on `channel` through `publisher` until one reaches `stream` (for a
/// backend that loses what is published while it reconnects). Each probe is waited for a
/// moment before the next is sent; only the hang guard bounds the whole. Probes that arrive
/// do so in order. Returns the non-probe events that arrived meanwhile.
pub(crate) async fn until_delivering(
    publisher: &Arc<dyn EventBus>,
    stream: &mut EventStream,
    channel: &str,
) -> Vec<Arc<Event>> {
    let deadline = tokio::time::Instant::now() + GUARD;
    let mut others = Vec::new();
    let mut sent = 0_u64;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "hang guard: no probe on {channel} arrived within {GUARD:?} ({sent} sent); delivery never resumed"
        );
        sent += 1;
        let probe = Arc::new(Event::new(channel, json!({ "n": sent })).with_type(PROBE));
        // While the backend is still unreachable a publish may fail: that is what is being
        // waited out.
        let _: Result<(), BusError> = publisher.publish(probe).await;
        let window = tokio::time::Instant::now() + Duration::from_millis(250);
        while let Ok(Some(event)) = tokio::time::timeout_at(window, stream.recv()).await {
            if event.event_type() == PROBE {
                return others;
            }
            others.push(event);
        }
    }
}

/// Checks events numbered by one publisher on one channel: strictly increasing (in order,
/// no duplicate). Returns the numbers.
pub(crate) fn increasing(events: &[Arc<Event>], what: &str) -> Vec<u64> {
    let numbers: Vec<u64> = events.iter().map(|e| n_of(e)).collect();
    for pair in numbers.windows(2) {
        if let [a, b] = pair {
            assert!(
                a < b,
                "{what}: {b} after {a} (out of order or duplicated) in {numbers:?}"
            );
        }
    }
    numbers
}
