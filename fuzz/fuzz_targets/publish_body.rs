//! Fuzzes the body of `POST /publish`: arbitrary bytes into
//! [`fraiseql_server::parse_publish_body`].
//!
//! Checked for an accepted body: one event per array item (or one for an object), at most
//! [`MAX_EVENTS_PER_REQUEST`]; every channel passes `validate_channel`; no event claims the
//! reserved gap type; and every event survives the bus wire format
//! (`to_wire_json` → `from_wire_json`) with its id, channel, type, tenant, flags, audience,
//! correlation id, timestamp and data bytes unchanged.
#![no_main]

use fraiseql_server::{parse_publish_body, MAX_EVENTS_PER_REQUEST};
use fraiseql_subscriptions::{validate_channel, Event};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check_wire_round_trip(event: &Event) {
    let wire = event.to_wire_json();
    let back = Event::from_wire_json(&wire).unwrap_or_else(|err| {
        panic!(
            "wire JSON does not read back ({err}): {:?}",
            String::from_utf8_lossy(&wire)
        )
    });
    assert_eq!(back.id(), event.id());
    assert_eq!(back.channel(), event.channel());
    assert_eq!(back.event_type(), event.event_type());
    assert_eq!(back.tenant_id(), event.tenant_id());
    assert_eq!(back.is_global(), event.is_global());
    assert_eq!(back.is_final(), event.is_final());
    assert_eq!(back.audience(), event.audience());
    assert_eq!(back.correlation_id(), event.correlation_id());
    assert_eq!(back.timestamp_us(), event.timestamp_us());
    assert_eq!(
        back.data().to_json_bytes(),
        event.data().to_json_bytes(),
        "data bytes changed on the wire"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(events) = parse_publish_body(data) else {
        return;
    };
    let expected = match serde_json::from_slice::<Value>(data) {
        Ok(Value::Array(items)) => items.len(),
        Ok(_) => 1,
        Err(err) => panic!("an accepted body is not JSON: {err}"),
    };
    assert_eq!(events.len(), expected, "events per body");
    assert!((1..=MAX_EVENTS_PER_REQUEST).contains(&events.len()));
    for event in &events {
        assert!(
            validate_channel(event.channel()).is_ok(),
            "accepted channel {:?}",
            event.channel()
        );
        assert!(!event.is_gap(), "a published event claims the gap type");
        check_wire_round_trip(event);
    }
});
