//! Every protocol rule, one test each, named for the rule; both protocols where both have it.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)] // test helpers fail loudly

use std::time::{Duration, Instant};

use fraiseql_protocol::{
    Action, CloseCode, ConnectionConfig, ConnectionPhase, GraphQLError, JsonObject, Protocol,
    ServerConnection, SubscriptionKey, DEFAULT_MAX_ID_BYTES,
};
use serde_json::{json, Value};

const MODERN: Protocol = Protocol::GraphqlTransportWs;
const LEGACY: Protocol = Protocol::GraphqlWs;
const BOTH: [Protocol; 2] = [MODERN, LEGACY];

fn subscribe_type(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::GraphqlTransportWs => "subscribe",
        Protocol::GraphqlWs => "start",
    }
}

fn complete_type(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::GraphqlTransportWs => "complete",
        Protocol::GraphqlWs => "stop",
    }
}

fn subscribe_text(protocol: Protocol, id: &str) -> String {
    json!({"id": id, "type": subscribe_type(protocol), "payload": {"query": "subscription { tick }"}})
        .to_string()
}

fn complete_text(protocol: Protocol, id: &str) -> String {
    json!({"id": id, "type": complete_type(protocol)}).to_string()
}

/// A test harness: one connection, a clock, and the actions collected so far.
struct Peer {
    conn: ServerConnection,
    now: Instant,
}

impl Peer {
    fn new(protocol: Protocol) -> Self {
        Self::with_config(protocol, ConnectionConfig::default())
    }

    fn with_config(protocol: Protocol, config: ConnectionConfig) -> Self {
        let now = Instant::now();
        Self {
            conn: ServerConnection::new(protocol, config, now),
            now,
        }
    }

    fn send(&mut self, text: &str) -> Vec<Action> {
        self.conn.handle_text(text, self.now);
        self.conn.drain_actions().collect()
    }

    fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.now += by;
        self.conn.handle_timeout(self.now);
        self.conn.drain_actions().collect()
    }

    /// connection_init + accept; returns the frames sent.
    fn ready(protocol: Protocol) -> Self {
        let mut peer = Self::new(protocol);
        peer.init_and_accept();
        peer
    }

    fn init_and_accept(&mut self) -> Vec<Action> {
        let actions = self.send(r#"{"type":"connection_init"}"#);
        assert!(matches!(
            actions.as_slice(),
            [Action::Authenticate { payload: None }]
        ));
        self.conn.accept(None, self.now).unwrap();
        self.conn.drain_actions().collect()
    }

    fn start(&mut self, id: &str) -> SubscriptionKey {
        let protocol = self.conn.protocol();
        match self.send(&subscribe_text(protocol, id)).as_slice() {
            [Action::Start { key, id: got, .. }] => {
                assert_eq!(got, id);
                *key
            }
            other => panic!("expected a start, got {other:?}"),
        }
    }
}

fn close_of(actions: &[Action]) -> (CloseCode, String) {
    match actions.last() {
        Some(Action::Close { code, reason }) => (*code, reason.clone()),
        other => panic!("expected a close as last action, got {other:?} in {actions:?}"),
    }
}

fn sent_json(actions: &[Action]) -> Vec<Value> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send(text) => Some(serde_json::from_str(text).unwrap()),
            _ => None,
        })
        .collect()
}

// --- connection_init and authentication ---

#[test]
fn init_asks_the_caller_to_authenticate_the_payload() {
    for protocol in BOTH {
        let mut peer = Peer::new(protocol);
        let actions = peer.send(r#"{"type":"connection_init","payload":{"token":"abc"}}"#);
        let expected = JsonObject::from_iter([("token".to_owned(), json!("abc"))]);
        assert_eq!(
            actions,
            vec![Action::Authenticate {
                payload: Some(expected)
            }]
        );
        assert_eq!(peer.conn.phase(), ConnectionPhase::Authenticating);
    }
}

#[test]
fn accepted_init_is_acknowledged_with_the_callers_payload() {
    let mut peer = Peer::new(MODERN);
    peer.send(r#"{"type":"connection_init"}"#);
    let payload = JsonObject::from_iter([("server".to_owned(), json!("fraiseql"))]);
    peer.conn.accept(Some(payload), peer.now).unwrap();
    let sent = sent_json(&peer.conn.drain_actions().collect::<Vec<_>>());
    assert_eq!(
        sent,
        vec![json!({"type":"connection_ack","payload":{"server":"fraiseql"}})]
    );
    assert_eq!(peer.conn.phase(), ConnectionPhase::Ready);
}

#[test]
fn legacy_ack_is_followed_by_a_first_keep_alive() {
    let mut peer = Peer::new(LEGACY);
    let sent = sent_json(&peer.init_and_accept());
    assert_eq!(
        sent,
        vec![json!({"type":"connection_ack"}), json!({"type":"ka"})]
    );
}

#[test]
fn auth_rejected_by_the_caller_closes_4403() {
    let mut peer = Peer::new(MODERN);
    peer.send(r#"{"type":"connection_init","payload":{"token":"bad"}}"#);
    peer.conn
        .reject("Invalid token: signature mismatch")
        .unwrap();
    let actions: Vec<_> = peer.conn.drain_actions().collect();
    assert_eq!(
        close_of(&actions),
        (
            CloseCode::Forbidden,
            "Invalid token: signature mismatch".to_owned()
        )
    );
    assert_eq!(actions.len(), 1);
}

#[test]
fn legacy_auth_rejected_sends_connection_error_then_closes_4403() {
    let mut peer = Peer::new(LEGACY);
    peer.send(r#"{"type":"connection_init"}"#);
    peer.conn.reject("").unwrap();
    let actions: Vec<_> = peer.conn.drain_actions().collect();
    assert_eq!(
        sent_json(&actions),
        vec![json!({"type":"connection_error","payload":{"message":"Forbidden"}})]
    );
    assert_eq!(
        close_of(&actions),
        (CloseCode::Forbidden, "Forbidden".to_owned())
    );
}

#[test]
fn verdict_without_pending_init_is_a_caller_error() {
    let mut peer = Peer::new(MODERN);
    let err = peer.conn.accept(None, peer.now).unwrap_err();
    assert!(
        err.to_string().contains("awaiting connection_init"),
        "{err}"
    );
    let mut ready = Peer::ready(MODERN);
    assert!(ready.conn.reject("no").is_err());
}

#[test]
fn verdict_after_the_connection_closed_is_ignored() {
    let mut peer = Peer::new(MODERN);
    peer.send(r#"{"type":"connection_init"}"#);
    peer.conn.handle_transport_closed();
    assert!(peer.conn.accept(None, peer.now).is_ok());
    assert!(peer.conn.reject("late").is_ok());
    assert_eq!(peer.conn.poll_action(), None);
}

#[test]
fn second_init_closes_4429() {
    for protocol in BOTH {
        let mut peer = Peer::new(protocol);
        peer.send(r#"{"type":"connection_init"}"#);
        let actions = peer.send(r#"{"type":"connection_init"}"#);
        assert_eq!(
            close_of(&actions).0,
            CloseCode::TooManyInitialisationRequests
        );
        let mut ready = Peer::ready(protocol);
        let actions = ready.send(r#"{"type":"connection_init"}"#);
        assert_eq!(
            close_of(&actions),
            (
                CloseCode::TooManyInitialisationRequests,
                "Too many initialisation requests".into()
            )
        );
    }
}

#[test]
fn init_timeout_closes_4408() {
    for protocol in BOTH {
        let config = ConnectionConfig::builder()
            .connection_init_timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let mut peer = Peer::with_config(protocol, config);
        assert_eq!(
            peer.conn.poll_timeout(),
            Some(peer.now + Duration::from_millis(500))
        );
        assert!(peer.advance(Duration::from_millis(499)).is_empty());
        let actions = peer.advance(Duration::from_millis(1));
        assert_eq!(
            close_of(&actions),
            (
                CloseCode::ConnectionInitialisationTimeout,
                "Connection initialisation timeout".into()
            )
        );
    }
}

#[test]
fn init_timeout_also_covers_slow_authentication() {
    let mut peer = Peer::new(MODERN);
    peer.send(r#"{"type":"connection_init"}"#);
    let actions = peer.advance(Duration::from_secs(3));
    assert_eq!(
        close_of(&actions).0,
        CloseCode::ConnectionInitialisationTimeout
    );
    assert!(
        peer.conn.accept(None, peer.now).is_ok(),
        "a late verdict is ignored"
    );
    assert_eq!(peer.conn.poll_action(), None);
}

#[test]
fn acknowledged_connection_has_no_init_deadline() {
    let mut peer = Peer::ready(MODERN);
    assert!(peer
        .advance(Duration::from_secs(5))
        .iter()
        .all(|a| !matches!(a, Action::Close { .. })));
    assert!(!peer.conn.is_closed());
}

// --- subscriptions ---

#[test]
fn subscribe_before_ack_closes_4401() {
    for protocol in BOTH {
        let mut peer = Peer::new(protocol);
        let actions = peer.send(&subscribe_text(protocol, "1"));
        assert_eq!(
            close_of(&actions),
            (CloseCode::Unauthorized, "Unauthorized".into())
        );
    }
    let mut authenticating = Peer::new(MODERN);
    authenticating.send(r#"{"type":"connection_init"}"#);
    let actions = authenticating.send(&subscribe_text(MODERN, "1"));
    assert_eq!(close_of(&actions).0, CloseCode::Unauthorized);
}

#[test]
fn legacy_starts_sent_during_authentication_wait_for_the_ack() {
    let mut peer = Peer::new(LEGACY);
    peer.send(r#"{"type":"connection_init"}"#);
    assert!(peer.send(&subscribe_text(LEGACY, "1")).is_empty());
    assert!(peer.send(&subscribe_text(LEGACY, "2")).is_empty());
    assert!(peer.send(&subscribe_text(LEGACY, "3")).is_empty());
    assert!(
        peer.send(&complete_text(LEGACY, "2")).is_empty(),
        "a stop cancels a queued start"
    );
    peer.conn.accept(None, peer.now).unwrap();
    let actions: Vec<_> = peer.conn.drain_actions().collect();
    assert_eq!(
        sent_json(&actions),
        vec![json!({"type":"connection_ack"}), json!({"type":"ka"})]
    );
    let started: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(started, ["1", "3"]);
}

#[test]
fn legacy_starts_queued_during_a_rejected_authentication_never_start() {
    let mut peer = Peer::new(LEGACY);
    peer.send(r#"{"type":"connection_init"}"#);
    peer.send(&subscribe_text(LEGACY, "1"));
    peer.conn.reject("bad token").unwrap();
    let actions: Vec<_> = peer.conn.drain_actions().collect();
    assert!(
        actions.iter().all(|a| !matches!(a, Action::Start { .. })),
        "{actions:?}"
    );
    assert_eq!(close_of(&actions).0, CloseCode::Forbidden);
}

#[test]
fn legacy_queued_duplicate_id_closes_4409() {
    let mut peer = Peer::new(LEGACY);
    peer.send(r#"{"type":"connection_init"}"#);
    peer.send(&subscribe_text(LEGACY, "1"));
    let actions = peer.send(&subscribe_text(LEGACY, "1"));
    assert_eq!(close_of(&actions).0, CloseCode::SubscriberAlreadyExists);
}

#[test]
fn legacy_start_queue_is_bounded() {
    let mut peer = Peer::new(LEGACY);
    peer.send(r#"{"type":"connection_init"}"#);
    for n in 0..fraiseql_protocol::MAX_PENDING_LEGACY_STARTS {
        assert!(peer
            .send(&subscribe_text(LEGACY, &n.to_string()))
            .is_empty());
    }
    let (code, reason) = close_of(&peer.send(&subscribe_text(LEGACY, "one-too-many")));
    assert_eq!(code, CloseCode::BadRequest);
    assert!(reason.contains("before connection_ack"), "{reason}");
}

#[test]
fn subscribe_starts_a_subscription_with_the_clients_request() {
    let mut peer = Peer::ready(MODERN);
    let text = r#"{"id":"s1","type":"subscribe","payload":{"query":"subscription($r:String!){m(room:$r){id}}","operationName":"M","variables":{"r":"lobby"}}}"#;
    let actions = peer.send(text);
    let [Action::Start { key, id, payload }] = actions.as_slice() else {
        panic!("expected one start, got {actions:?}")
    };
    assert_eq!(id, "s1");
    assert_eq!(payload.operation_name.as_deref(), Some("M"));
    assert_eq!(payload.variables.as_ref().unwrap()["r"], "lobby");
    assert_eq!(peer.conn.active_subscriptions(), 1);
    assert_eq!(peer.conn.subscription_id(*key), Some("s1"));
}

#[test]
fn duplicate_active_id_closes_4409() {
    for protocol in BOTH {
        let mut peer = Peer::ready(protocol);
        let key = peer.start("dup");
        let actions = peer.send(&subscribe_text(protocol, "dup"));
        assert_eq!(
            actions.first(),
            Some(&Action::Stop {
                key,
                id: "dup".into()
            }),
            "the active subscription is stopped as the connection closes"
        );
        assert_eq!(
            close_of(&actions),
            (
                CloseCode::SubscriberAlreadyExists,
                "Subscriber for dup already exists".into()
            )
        );
    }
}

#[test]
fn client_complete_stops_the_subscription() {
    for protocol in BOTH {
        let mut peer = Peer::ready(protocol);
        let key = peer.start("1");
        let actions = peer.send(&complete_text(protocol, "1"));
        assert_eq!(
            actions,
            vec![Action::Stop {
                key,
                id: "1".into()
            }]
        );
        assert_eq!(peer.conn.active_subscriptions(), 0);
    }
}

#[test]
fn client_complete_of_an_unknown_id_is_ignored() {
    for protocol in BOTH {
        let mut peer = Peer::ready(protocol);
        assert!(peer.send(&complete_text(protocol, "nope")).is_empty());
        assert!(!peer.conn.is_closed());
    }
}

#[test]
fn ids_are_reusable_after_complete_with_a_new_key() {
    for protocol in BOTH {
        let mut peer = Peer::ready(protocol);
        let first = peer.start("1");
        peer.send(&complete_text(protocol, "1"));
        let second = peer.start("1");
        assert_ne!(first, second, "keys are never reused");
        let server_done = peer.start("2");
        assert!(peer.conn.complete(server_done).is_some());
        let again = peer.start("2");
        assert_ne!(server_done, again);
        let errored = peer.start("3");
        assert!(peer
            .conn
            .error(errored, &[GraphQLError::new("x")])
            .is_some());
        peer.start("3");
    }
}

#[test]
fn no_frame_is_sent_for_an_id_after_its_complete() {
    for protocol in BOTH {
        let mut peer = Peer::ready(protocol);
        let key = peer.start("1");
        assert!(peer.conn.next(key, r#"{"data":{}}"#).is_some());
        peer.send(&complete_text(protocol, "1"));
        assert_eq!(peer.conn.next(key, r#"{"data":{}}"#), None);
        let mut out = String::new();
        assert!(!peer.conn.next_into(&mut out, key, "{}"));
        assert!(out.is_empty());
        assert_eq!(peer.conn.complete(key), None);
        assert_eq!(peer.conn.error(key, &[]), None);
        // The id is reused: the old key still sends nothing.
        let new_key = peer.start("1");
        assert_eq!(peer.conn.next(key, "{}"), None);
        assert!(peer.conn.next(new_key, "{}").is_some());
    }
}

#[test]
fn no_frame_is_sent_for_an_id_after_its_error() {
    for protocol in BOTH {
        let mut peer = Peer::ready(protocol);
        let key = peer.start("e");
        let frame = peer.conn.error(
            key,
            &[GraphQLError::new("Unknown field \"tock\"").with_location(1, 16)],
        );
        assert_eq!(
            serde_json::from_str::<Value>(&frame.unwrap()).unwrap(),
            json!({"id":"e","type":"error","payload":[{"message":"Unknown field \"tock\"","locations":[{"line":1,"column":16}]}]})
        );
        assert_eq!(peer.conn.next(key, "{}"), None);
        assert_eq!(peer.conn.complete(key), None);
    }
}

#[test]
fn server_complete_sends_complete_and_ends_the_subscription() {
    for protocol in BOTH {
        let mut peer = Peer::ready(protocol);
        let key = peer.start("c");
        let frame = peer.conn.complete(key).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&frame).unwrap(),
            json!({"id":"c","type":"complete"})
        );
        assert_eq!(peer.conn.active_subscriptions(), 0);
        assert!(
            peer.send(&complete_text(protocol, "c")).is_empty(),
            "a late client complete is ignored"
        );
    }
}

#[test]
fn next_frames_carry_the_subscription_id() {
    let mut peer = Peer::ready(MODERN);
    let key = peer.start("id-42");
    let frame = peer.conn.next(key, r#"{"data":{"tick":1}}"#).unwrap();
    assert_eq!(
        frame,
        r#"{"id":"id-42","type":"next","payload":{"data":{"tick":1}}}"#
    );
    let mut legacy = Peer::ready(LEGACY);
    let key = legacy.start("7");
    let frame = legacy.conn.next(key, r#"{"data":{"tick":1}}"#).unwrap();
    assert_eq!(
        frame,
        r#"{"id":"7","type":"data","payload":{"data":{"tick":1}}}"#
    );
}

// --- ping, pong, keep-alive ---

#[test]
fn ping_is_answered_with_pong_echoing_the_payload() {
    let mut peer = Peer::new(MODERN);
    assert_eq!(
        sent_json(&peer.send(r#"{"type":"ping"}"#)),
        vec![json!({"type":"pong"})]
    );
    let mut ready = Peer::ready(MODERN);
    let sent = sent_json(&ready.send(r#"{"type":"ping","payload":{"t":1}}"#));
    assert_eq!(sent, vec![json!({"type":"pong","payload":{"t":1}})]);
}

#[test]
fn client_pong_is_accepted_silently() {
    let mut peer = Peer::ready(MODERN);
    assert!(peer.send(r#"{"type":"pong","payload":{"x":1}}"#).is_empty());
}

fn keep_alive_config(interval_ms: u64, timeout_ms: u64) -> ConnectionConfig {
    ConnectionConfig::builder()
        .keep_alive(
            Duration::from_millis(interval_ms),
            Duration::from_millis(timeout_ms),
        )
        .build()
        .unwrap()
}

#[test]
fn server_sends_keep_alive_pings_at_the_configured_interval() {
    let mut peer = Peer::with_config(MODERN, keep_alive_config(1000, 800));
    peer.init_and_accept();
    assert_eq!(
        peer.conn.poll_timeout(),
        Some(peer.now + Duration::from_millis(1000))
    );
    assert!(peer.advance(Duration::from_millis(999)).is_empty());
    assert_eq!(
        sent_json(&peer.advance(Duration::from_millis(1))),
        vec![json!({"type":"ping"})]
    );
    peer.send(r#"{"type":"pong"}"#);
    assert_eq!(
        sent_json(&peer.advance(Duration::from_millis(1000))),
        vec![json!({"type":"ping"})]
    );
}

#[test]
fn dead_peer_that_never_answers_a_ping_closes_1013() {
    let mut peer = Peer::with_config(MODERN, keep_alive_config(1000, 800));
    peer.init_and_accept();
    let key = peer.start("1");
    peer.advance(Duration::from_millis(1000));
    assert_eq!(
        peer.conn.poll_timeout(),
        Some(peer.now + Duration::from_millis(800))
    );
    assert!(peer.advance(Duration::from_millis(799)).is_empty());
    let actions = peer.advance(Duration::from_millis(1));
    assert_eq!(
        actions.first(),
        Some(&Action::Stop {
            key,
            id: "1".into()
        })
    );
    let (code, reason) = close_of(&actions);
    assert_eq!(code, CloseCode::KeepAliveTimeout);
    assert_eq!(code.as_u16(), 1013);
    assert!(reason.contains("800 ms"), "{reason}");
}

#[test]
fn any_client_message_counts_as_an_answer_to_a_ping() {
    let mut peer = Peer::with_config(MODERN, keep_alive_config(1000, 800));
    peer.init_and_accept();
    peer.advance(Duration::from_millis(1000));
    peer.now += Duration::from_millis(500);
    peer.send(&subscribe_text(MODERN, "alive"));
    assert!(peer.advance(Duration::from_millis(400)).is_empty());
    assert!(!peer.conn.is_closed());
}

#[test]
fn graphql_transport_ws_pings_only_an_idle_peer() {
    let mut peer = Peer::with_config(MODERN, keep_alive_config(1000, 800));
    peer.init_and_accept();
    for _ in 0..5 {
        peer.now += Duration::from_millis(600);
        peer.send(r#"{"type":"ping"}"#);
        assert!(
            peer.advance(Duration::ZERO).is_empty(),
            "no ping while the client talks"
        );
    }
}

#[test]
fn legacy_keep_alive_sends_ka_and_a_transport_ping() {
    let mut peer = Peer::with_config(LEGACY, keep_alive_config(1000, 800));
    peer.init_and_accept();
    let actions = peer.advance(Duration::from_millis(1000));
    assert_eq!(
        actions,
        vec![
            Action::Send(r#"{"type":"ka"}"#.into()),
            Action::SendTransportPing
        ]
    );
    peer.conn.handle_transport_pong(peer.now);
    assert!(peer.advance(Duration::from_millis(900)).is_empty());
    assert!(!peer.conn.is_closed());
}

#[test]
fn legacy_dead_peer_without_transport_pong_closes_1013() {
    let mut peer = Peer::with_config(LEGACY, keep_alive_config(1000, 800));
    peer.init_and_accept();
    peer.advance(Duration::from_millis(1000));
    let actions = peer.advance(Duration::from_millis(800));
    assert_eq!(close_of(&actions).0, CloseCode::KeepAliveTimeout);
}

#[test]
fn legacy_without_transport_pings_only_sends_ka() {
    let config = ConnectionConfig::builder()
        .keep_alive(Duration::from_millis(1000), Duration::from_millis(800))
        .transport_pings(false)
        .build()
        .unwrap();
    let mut peer = Peer::with_config(LEGACY, config);
    peer.init_and_accept();
    for _ in 0..4 {
        assert_eq!(
            peer.advance(Duration::from_millis(1000)),
            vec![Action::Send(r#"{"type":"ka"}"#.into())]
        );
    }
    assert!(!peer.conn.is_closed());
}

#[test]
fn without_keep_alive_nothing_is_scheduled_after_ack() {
    let config = ConnectionConfig::builder().no_keep_alive().build().unwrap();
    let mut peer = Peer::with_config(MODERN, config);
    peer.init_and_accept();
    assert_eq!(peer.conn.poll_timeout(), None);
    assert!(peer.advance(Duration::from_secs(3600)).is_empty());
}

// --- strict parsing: every invalid message closes 4400 with a reason ---

#[test]
fn invalid_messages_close_4400_with_a_reason() {
    let cases = [
        ("not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        (r#"{"id":"1"}"#, "missing string field \"type\""),
        (r#"{"type":"nope"}"#, "unknown type \"nope\""),
        (
            r#"{"type":"subscribe","payload":{"query":"q"}}"#,
            "requires a string \"id\"",
        ),
        (
            r#"{"type":"subscribe","id":7,"payload":{"query":"q"}}"#,
            "must be a string",
        ),
        (
            r#"{"type":"subscribe","id":"1","payload":{"query":false}}"#,
            "payload.query must be a string",
        ),
        (
            r#"{"type":"next","id":"1","payload":{}}"#,
            "Unexpected message of type \"next\"",
        ),
    ];
    for (text, expected) in cases {
        let mut peer = Peer::ready(MODERN);
        let actions = peer.send(text);
        let (code, reason) = close_of(&actions);
        assert_eq!(code, CloseCode::BadRequest, "{text}");
        assert!(reason.contains(expected), "{text}: {reason}");
        assert!(reason.len() <= 123);
    }
}

#[test]
fn legacy_invalid_messages_close_4400_with_a_reason() {
    for (text, expected) in [
        ("{", "not valid JSON"),
        (
            r#"{"type":"subscribe","id":"1","payload":{"query":"q"}}"#,
            "unknown type \"subscribe\"",
        ),
        (r#"{"type":"start","id":"1"}"#, "requires a payload object"),
        (r#"{"type":"ka"}"#, "Unexpected message of type \"ka\""),
    ] {
        let mut peer = Peer::ready(LEGACY);
        let (code, reason) = close_of(&peer.send(text));
        assert_eq!(code, CloseCode::BadRequest);
        assert!(reason.contains(expected), "{text}: {reason}");
    }
}

#[test]
fn oversize_message_closes_4400() {
    let config = ConnectionConfig::builder()
        .max_message_bytes(1024)
        .build()
        .unwrap();
    let mut peer = Peer::with_config(MODERN, config);
    let big = format!(
        r#"{{"type":"connection_init","payload":{{"pad":"{}"}}}}"#,
        "x".repeat(2000)
    );
    let (code, reason) = close_of(&peer.send(&big));
    assert_eq!(code, CloseCode::BadRequest);
    assert!(
        reason.contains("Message too large") && reason.contains("1024"),
        "{reason}"
    );
}

#[test]
fn utf8_binary_frames_are_read_as_text_and_others_close_4400() {
    let mut peer = Peer::new(MODERN);
    peer.conn
        .handle_binary(br#"{"type":"connection_init"}"#, peer.now);
    assert!(matches!(
        peer.conn.poll_action(),
        Some(Action::Authenticate { .. })
    ));
    peer.conn.handle_binary(&[0xff, 0xfe], peer.now);
    let actions: Vec<_> = peer.conn.drain_actions().collect();
    assert_eq!(close_of(&actions).0, CloseCode::BadRequest);
}

// --- closing ---

#[test]
fn legacy_connection_terminate_closes_1000() {
    let mut peer = Peer::ready(LEGACY);
    let key = peer.start("1");
    let actions = peer.send(r#"{"type":"connection_terminate"}"#);
    assert_eq!(
        actions.first(),
        Some(&Action::Stop {
            key,
            id: "1".into()
        })
    );
    assert_eq!(close_of(&actions).0, CloseCode::Normal);
}

#[test]
fn server_close_stops_every_subscription_then_closes() {
    let mut peer = Peer::ready(MODERN);
    let a = peer.start("a");
    let b = peer.start("b");
    peer.conn
        .close(CloseCode::GoingAway, "Server shutting down");
    let actions: Vec<_> = peer.conn.drain_actions().collect();
    assert_eq!(
        actions,
        vec![
            Action::Stop {
                key: a,
                id: "a".into()
            },
            Action::Stop {
                key: b,
                id: "b".into()
            },
            Action::Close {
                code: CloseCode::GoingAway,
                reason: "Server shutting down".into()
            },
        ]
    );
}

#[test]
fn close_is_final() {
    let mut peer = Peer::ready(MODERN);
    let key = peer.start("1");
    peer.send("garbage");
    assert!(peer.conn.is_closed());
    assert_eq!(peer.conn.phase(), ConnectionPhase::Closed);
    assert!(peer.send(r#"{"type":"ping"}"#).is_empty());
    assert!(peer.advance(Duration::from_secs(60)).is_empty());
    assert_eq!(peer.conn.poll_timeout(), None);
    assert_eq!(peer.conn.next(key, "{}"), None);
    peer.conn.close(CloseCode::GoingAway, "again");
    peer.conn.handle_transport_closed();
    assert_eq!(peer.conn.poll_action(), None);
}

#[test]
fn transport_closed_stops_subscriptions_without_a_close_frame() {
    let mut peer = Peer::ready(LEGACY);
    let key = peer.start("1");
    peer.conn.handle_transport_closed();
    let actions: Vec<_> = peer.conn.drain_actions().collect();
    assert_eq!(
        actions,
        vec![Action::Stop {
            key,
            id: "1".into()
        }]
    );
    assert!(peer.conn.is_closed());
}

#[test]
fn long_close_reasons_are_cut_to_123_bytes() {
    let config = ConnectionConfig::builder()
        .max_id_bytes(1024)
        .build()
        .unwrap();
    let mut peer = Peer::with_config(MODERN, config);
    peer.init_and_accept();
    let id = "x".repeat(300);
    peer.start(&id);
    let (code, reason) = close_of(&peer.send(&subscribe_text(MODERN, &id)));
    assert_eq!(code, CloseCode::SubscriberAlreadyExists);
    assert_eq!(reason.len(), 123);
}

#[test]
fn an_id_over_the_limit_closes_4400_naming_the_limit() {
    for protocol in BOTH {
        let mut peer = Peer::ready(protocol);
        let at_limit = "i".repeat(DEFAULT_MAX_ID_BYTES);
        let started = peer.send(&subscribe_text(protocol, &at_limit));
        assert!(
            matches!(started.as_slice(), [Action::Start { .. }]),
            "{protocol:?}: {started:?}"
        );
        let too_long = "i".repeat(DEFAULT_MAX_ID_BYTES + 1);
        let (code, reason) = close_of(&peer.send(&subscribe_text(protocol, &too_long)));
        assert_eq!(code, CloseCode::BadRequest, "{protocol:?}");
        assert_eq!(
            reason,
            format!(
                "Invalid message: subscription id is {} bytes, the limit is {DEFAULT_MAX_ID_BYTES}",
                DEFAULT_MAX_ID_BYTES + 1
            )
        );
    }
    // Configurable; a legacy start queued before the ack is checked too.
    let config = ConnectionConfig::builder().max_id_bytes(4).build().unwrap();
    let mut peer = Peer::with_config(LEGACY, config);
    peer.send(r#"{"type":"connection_init"}"#);
    let (code, reason) = close_of(&peer.send(&subscribe_text(LEGACY, "12345")));
    assert_eq!(code, CloseCode::BadRequest);
    assert!(reason.ends_with("the limit is 4"), "{reason}");
    assert!(ConnectionConfig::builder().max_id_bytes(0).build().is_err());
}
