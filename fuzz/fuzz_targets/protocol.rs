//! Fuzzes `fraiseql_protocol::ServerConnection` with a script read from the input bytes.
//!
//! The first byte picks the protocol and the configuration; then each op byte picks one
//! event — a text frame (the next N bytes, lossy UTF-8), a binary frame (raw bytes), the
//! passing of time, an authentication verdict, a server-side `next`/`complete`/`error`/
//! `close`, a transport pong or close, or a canned well-formed client message (so the fuzzer
//! reaches subscriptions without having to discover JSON first). After every event the
//! queued actions are drained and checked against a small model:
//!
//! - close is final: after a `Close` action (or the transport closing) no input produces
//!   an action, `is_closed()` holds and `poll_timeout()` is `None`; `Close` is the last
//!   action of its batch and every active subscription was stopped before it;
//! - a close reason is at most 123 bytes;
//! - every sent frame is a JSON object with a string `"type"`;
//! - at most one active subscription per id, keys never reused, nothing sent for a
//!   subscription that ended, `active_subscriptions()` equals the model's count;
//! - verdicts are accepted exactly while an `Authenticate` awaits one;
//! - `handle_timeout` leaves no deadline due.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use fraiseql_protocol::{
    Action, ClientMessage, CloseCode, ConnectionConfig, GraphQLError, JsonObject, Protocol,
    ServerConnection, SubscribePayload, SubscriptionKey, MAX_CLOSE_REASON_BYTES,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The input, read front to back; reads past the end yield zeros / nothing.
struct Script<'a> {
    data: &'a [u8],
}

impl<'a> Script<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.data.split_first()?;
        self.data = rest;
        Some(first)
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte().unwrap_or(0), self.byte().unwrap_or(0)])
    }

    /// A length byte, then up to that many bytes.
    fn chunk(&mut self) -> &'a [u8] {
        let len = usize::from(self.byte().unwrap_or(0)).min(self.data.len());
        let (chunk, rest) = self.data.split_at(len);
        self.data = rest;
        chunk
    }
}

/// What the connection has told the caller so far.
struct Model {
    active: BTreeMap<SubscriptionKey, String>,
    started: Vec<SubscriptionKey>,
    seen: BTreeSet<SubscriptionKey>,
    authenticate_pending: bool,
    authenticated: bool,
    closed: bool,
}

fn config(flags: u8) -> ConnectionConfig {
    // Deadlines from 100 ms to 1.6 s, so that a few u16 time steps reach them.
    let scale = Duration::from_millis(100 * (1 + u64::from(flags >> 4)));
    let builder = ConnectionConfig::builder()
        .connection_init_timeout(scale)
        .transport_pings(flags & 0b100 == 0)
        .max_message_bytes(if flags & 0b1000 == 0 { 64 * 1024 } else { 256 });
    let builder = if flags & 0b10 == 0 {
        builder.keep_alive(scale, scale * 2)
    } else {
        builder.no_keep_alive()
    };
    builder.build().expect("the fuzz configs are valid")
}

const IDS: [&str; 5] = ["a", "b", "c", "", "q\"\\\n\u{2028}"];

/// A well-formed client message of either protocol, with an id from a small pool.
fn canned(kind: u8, id: u8) -> ClientMessage {
    let id = IDS[usize::from(id) % IDS.len()].to_owned();
    let payload = (id.len() == 1).then(|| JsonObject::from_iter([("k".to_owned(), 1.into())]));
    match kind % 7 {
        0 => ClientMessage::ConnectionInit { payload },
        1 => ClientMessage::Ping { payload },
        2 => ClientMessage::Pong { payload },
        3 | 4 => ClientMessage::Subscribe {
            id,
            payload: SubscribePayload {
                query: "subscription { tick }".to_owned(),
                operation_name: None,
                variables: payload,
                extensions: None,
            },
        },
        5 => ClientMessage::Complete { id },
        _ => ClientMessage::ConnectionTerminate,
    }
}

fn check_frame(frame: &str) {
    let value: Value = serde_json::from_str(frame)
        .unwrap_or_else(|err| panic!("sent frame is not JSON ({err}): {frame:?}"));
    assert!(
        value.get("type").is_some_and(Value::is_string),
        "sent frame is not an object with a string \"type\": {frame:?}"
    );
}

/// A frame `next`/`error`/`complete` returned: only for active keys, with their id.
fn check_subscription_frame(model: &Model, key: SubscriptionKey, frame: Option<&str>) {
    let id = model.active.get(&key);
    assert_eq!(
        frame.is_some(),
        id.is_some(),
        "frame for {key:?} when active = {}",
        id.is_some()
    );
    if let (Some(frame), Some(id)) = (frame, id) {
        check_frame(frame);
        let value: Value = serde_json::from_str(frame).expect("checked above");
        assert_eq!(value.get("id").and_then(Value::as_str), Some(id.as_str()));
    }
}

fn verdict_expected(model: &Model) -> bool {
    model.closed || model.authenticate_pending
}

fuzz_target!(|data: &[u8]| {
    let mut script = Script { data };
    let flags = script.byte().unwrap_or(0);
    let protocol = if flags & 1 == 0 {
        Protocol::GraphqlTransportWs
    } else {
        Protocol::GraphqlWs
    };
    let mut now = Instant::now();
    let mut conn = ServerConnection::new(protocol, config(flags), now);
    let mut model = Model {
        active: BTreeMap::new(),
        started: Vec::new(),
        seen: BTreeSet::new(),
        authenticate_pending: false,
        authenticated: false,
        closed: false,
    };

    while let Some(op) = script.byte() {
        let mut transport_closed = false;
        match op % 16 {
            0 => conn.handle_text(&String::from_utf8_lossy(script.chunk()), now),
            1 => conn.handle_binary(script.chunk(), now),
            2 | 3 => {
                now += Duration::from_millis(u64::from(script.u16()));
                conn.handle_timeout(now);
                assert!(
                    conn.poll_timeout().is_none_or(|t| t > now),
                    "deadline left due"
                );
            }
            4 => {
                if let Some(deadline) = conn.poll_timeout() {
                    now = now.max(deadline);
                }
                conn.handle_timeout(now);
                assert!(
                    conn.poll_timeout().is_none_or(|t| t > now),
                    "deadline left due"
                );
            }
            5 => {
                let result = conn.accept(None, now);
                assert_eq!(
                    result.is_ok(),
                    verdict_expected(&model),
                    "accept: {result:?}"
                );
                if model.authenticate_pending && !model.closed {
                    model.authenticate_pending = false;
                    model.authenticated = true;
                }
            }
            6 => {
                let reason = String::from_utf8_lossy(script.chunk()).into_owned();
                let result = conn.reject(&reason);
                assert_eq!(
                    result.is_ok(),
                    verdict_expected(&model),
                    "reject: {result:?}"
                );
                model.authenticate_pending = false;
            }
            7..=9 => {
                // Server calls on the latest started key, or (high bit) an older one.
                let pick = script.byte().unwrap_or(0);
                let Some(&key) = (if pick & 0x80 == 0 {
                    model.started.last()
                } else {
                    model
                        .started
                        .get(usize::from(pick & 0x7f) % model.started.len().max(1))
                }) else {
                    continue;
                };
                match op % 16 {
                    7 => {
                        let frame = conn.next(key, r#"{"data":{"tick":1}}"#);
                        check_subscription_frame(&model, key, frame.as_deref());
                    }
                    8 => {
                        let frame = conn.complete(key);
                        check_subscription_frame(&model, key, frame.as_deref());
                        model.active.remove(&key);
                    }
                    _ => {
                        let message = String::from_utf8_lossy(script.chunk()).into_owned();
                        let frame = conn.error(key, &[GraphQLError::new(message)]);
                        check_subscription_frame(&model, key, frame.as_deref());
                        model.active.remove(&key);
                    }
                }
            }
            10 => conn.handle_transport_pong(now),
            11..=13 => {
                let kind = script.byte().unwrap_or(0);
                let id = script.byte().unwrap_or(0);
                // Mostly the connection's own protocol; sometimes the other one's encoding.
                let wire = match (kind & 0x80 == 0, protocol) {
                    (true, p) => p,
                    (false, Protocol::GraphqlTransportWs) => Protocol::GraphqlWs,
                    (false, Protocol::GraphqlWs) => Protocol::GraphqlTransportWs,
                };
                conn.handle_text(&canned(kind, id).to_json(wire), now);
            }
            14 => {
                conn.handle_transport_closed();
                transport_closed = true;
            }
            _ => {
                let reason = String::from_utf8_lossy(script.chunk()).into_owned();
                conn.close(CloseCode::GoingAway, &reason.repeat(2));
            }
        }

        let actions: Vec<Action> = conn.drain_actions().collect();
        if model.closed {
            assert!(actions.is_empty(), "actions after close: {actions:?}");
        }
        let count = actions.len();
        for (n, action) in actions.into_iter().enumerate() {
            match action {
                Action::Send(frame) => check_frame(&frame),
                Action::SendTransportPing => {}
                Action::Authenticate { .. } => {
                    assert!(
                        !model.authenticated && !model.authenticate_pending,
                        "second Authenticate"
                    );
                    model.authenticate_pending = true;
                }
                Action::Start { key, id, .. } => {
                    assert!(model.authenticated, "Start before acknowledgement");
                    assert!(model.seen.insert(key), "key {key:?} reused");
                    assert!(
                        !model.active.values().any(|active| *active == id),
                        "second active subscription for id {id:?}"
                    );
                    model.active.insert(key, id);
                    model.started.push(key);
                }
                Action::Stop { key, id } => {
                    assert_eq!(model.active.remove(&key), Some(id), "Stop for {key:?}");
                }
                Action::Close { reason, .. } => {
                    assert!(
                        reason.len() <= MAX_CLOSE_REASON_BYTES,
                        "close reason {reason:?}"
                    );
                    assert_eq!(n + 1, count, "Close is not the last action");
                    assert!(
                        model.active.is_empty(),
                        "Close before Stop of {:?}",
                        model.active
                    );
                    model.closed = true;
                }
                other => panic!("unknown action {other:?}"),
            }
        }
        if transport_closed {
            assert!(
                model.active.is_empty(),
                "transport close left {:?}",
                model.active
            );
            model.closed = true;
        }
        if model.closed {
            model.authenticate_pending = false;
        }
        assert_eq!(conn.is_closed(), model.closed, "is_closed()");
        if model.closed {
            assert_eq!(conn.poll_timeout(), None, "poll_timeout() after close");
        }
        assert_eq!(conn.active_subscriptions(), model.active.len());
    }
});
