//! Property tests for [`ServerConnection`]: random sequences of everything that can happen
//! to a connection of either protocol — client frames (garbage, near-misses and well-formed
//! messages of both protocols, with colliding ids), binary frames, the passing of time,
//! transport pongs and closes, the caller's authentication verdicts, server-side
//! `next`/`error`/`complete`/`close` — checked against a small model after every step.
//!
//! Each test generates its own sequences and checks one invariant; all of them share the
//! driver ([`drive`]), which records what every step returned and queued, and the model
//! ([`Model`]) of which subscriptions are active.
//!
//! `PROPTEST_CASES=10000 cargo test -p fraiseql-protocol --test properties` searches harder.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use fraiseql_protocol::{
    Action, ClientMessage, CloseCode, ConnectionConfig, Error, GraphQLError, JsonObject, Protocol,
    ServerConnection, SubscribePayload, SubscriptionKey, MAX_CLOSE_REASON_BYTES,
};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

/// The longest generated event sequence (the handshake prelude comes on top).
const MAX_EVENTS: usize = 40;

/// Payloads the server hands to `next`: already-serialized execution results.
const PAYLOADS: [&str; 3] = [
    r#"{"data":{"tick":1}}"#,
    r#"{"data":null,"errors":[{"message":"boom"}]}"#,
    r#"{"data":{"s":"h\u00e9 \"q\""}}"#,
];

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

/// One thing that happens to the connection.
#[derive(Debug, Clone)]
enum Event {
    /// Any text at all (mostly not JSON).
    Text(String),
    /// A well-formed client message, encoded for the connection's protocol or, when
    /// `foreign`, for the other one.
    Client { msg: ClientMessage, foreign: bool },
    /// A well-formed client message cut short at `at`, or with `insert` put in at `at`.
    Mangled {
        msg: ClientMessage,
        at: Index,
        insert: Option<char>,
    },
    /// Any bytes as a binary frame.
    Binary(Vec<u8>),
    /// A well-formed client message (own protocol) as a binary frame.
    BinaryClient(ClientMessage),
    /// Time passes by this many milliseconds, then `handle_timeout`.
    Advance(u64),
    /// Time passes until the connection's next deadline (if any), then `handle_timeout`.
    AdvanceToDeadline,
    /// A WebSocket pong arrives.
    TransportPong,
    /// The socket is gone.
    TransportClosed,
    /// The caller accepts the `connection_init` payload.
    Accept(Option<JsonObject>),
    /// The caller rejects it with this reason.
    Reject(String),
    /// The server sends `PAYLOADS[payload]` to one of the keys ever started.
    Next { key: Index, payload: Index },
    /// The server ends one of the keys ever started with these errors.
    Error { key: Index, errors: Vec<String> },
    /// The server completes one of the keys ever started.
    Complete { key: Index },
    /// The server closes the connection.
    Close { code: CloseCode, reason: String },
}

#[derive(Debug, Clone)]
struct Scenario {
    protocol: Protocol,
    config: ConnectionConfig,
    events: Vec<Event>,
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::GraphqlTransportWs),
        Just(Protocol::GraphqlWs)
    ]
}

const fn other(protocol: Protocol) -> Protocol {
    match protocol {
        Protocol::GraphqlTransportWs => Protocol::GraphqlWs,
        Protocol::GraphqlWs => Protocol::GraphqlTransportWs,
    }
}

fn config() -> impl Strategy<Value = ConnectionConfig> {
    let custom = (
        1_u64..5_000,
        prop::option::weighted(0.8, (1_u64..5_000, 1_u64..5_000)),
        any::<bool>(),
        prop_oneof![Just(256_usize), Just(1024), Just(256 * 1024)],
    )
        .prop_map(|(init, keep_alive, transport_pings, max_bytes)| {
            let builder = ConnectionConfig::builder()
                .connection_init_timeout(Duration::from_millis(init))
                .transport_pings(transport_pings)
                .max_message_bytes(max_bytes);
            let builder = match keep_alive {
                Some((interval, timeout)) => builder.keep_alive(
                    Duration::from_millis(interval),
                    Duration::from_millis(timeout),
                ),
                None => builder.no_keep_alive(),
            };
            builder.build().expect("generated configs are valid")
        });
    prop_oneof![1 => Just(ConnectionConfig::default()), 3 => custom]
}

/// Ids from a small pool, so that subscriptions collide; rarely one that needs escaping
/// (each of `"`, `\` and control characters on its own) or the (invalid) empty id.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        36 => prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_owned),
        2 => prop::sample::select(vec!["q\"é", "q\\", "q\n\u{1}\u{2028}"]).prop_map(str::to_owned),
        1 => Just(String::new()),
    ]
}

fn json_object() -> impl Strategy<Value = JsonObject> {
    let value = prop_oneof![
        Just(Value::Null),
        any::<i32>().prop_map(Value::from),
        "[a-z\"\\\\é]{0,4}".prop_map(Value::from),
    ];
    prop::collection::btree_map("[a-z]{1,3}", value, 0..3).prop_map(|m| m.into_iter().collect())
}

fn subscribe_payload() -> impl Strategy<Value = SubscribePayload> {
    (
        "[a-z ]{0,12}",
        prop::option::weighted(0.2, "[A-Z][a-z]{0,4}"),
        prop::option::weighted(0.3, json_object()),
        prop::option::weighted(0.1, json_object()),
    )
        .prop_map(
            |(field, operation_name, variables, extensions)| SubscribePayload {
                query: format!("subscription {{ {field} }}"),
                operation_name,
                variables,
                extensions,
            },
        )
}

/// A client message of `protocol`'s vocabulary except `connection_init` (scenarios start
/// with it), or any message of either protocol when `None`.
fn client_message(protocol: Option<Protocol>) -> impl Strategy<Value = ClientMessage> {
    let modern = protocol != Some(Protocol::GraphqlWs);
    let legacy = protocol != Some(Protocol::GraphqlTransportWs);
    prop_oneof![
        if protocol.is_none() { 4 } else { 0 } => prop::option::of(json_object()).prop_map(|payload| ClientMessage::ConnectionInit { payload }),
        if modern { 4 } else { 0 } => prop::option::of(json_object()).prop_map(|payload| ClientMessage::Ping { payload }),
        if modern { 2 } else { 0 } => prop::option::of(json_object()).prop_map(|payload| ClientMessage::Pong { payload }),
        16 => (id(), subscribe_payload()).prop_map(|(id, payload)| ClientMessage::Subscribe { id, payload }),
        24 => id().prop_map(|id| ClientMessage::Complete { id }),
        u32::from(legacy) => Just(ClientMessage::ConnectionTerminate),
    ]
}

fn close_code() -> impl Strategy<Value = CloseCode> {
    prop::sample::select(vec![
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::KeepAliveTimeout,
        CloseCode::InternalServerError,
    ])
}

/// A reason of any length, sometimes multi-byte near the 123-byte cut.
fn reason() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => ".{0,20}",
        1 => "[a-z\"\\\\\n\t\u{1}\u{7f}]{0,12}",
        1 => ("[a-z]{0,3}", 100_usize..140).prop_map(|(head, n)| format!("{head}{}", "é".repeat(n / 2))),
        1 => (0_usize..200).prop_map(|n| "x".repeat(n)),
    ]
}

/// What well-behaved clients, servers and clocks do (a client may still collide ids or let
/// keep-alive lapse, a peer may leave, a server may shut down).
fn polite_event(protocol: Protocol) -> impl Strategy<Value = Event> {
    prop_oneof![
        24 => client_message(Some(protocol)).prop_map(|msg| Event::Client { msg, foreign: false }),
        2 => client_message(Some(protocol)).prop_map(Event::BinaryClient),
        4 => (0_u64..1_000).prop_map(Event::Advance),
        1 => (0_u64..10_000).prop_map(Event::Advance),
        2 => Just(Event::AdvanceToDeadline),
        2 => Just(Event::TransportPong),
        3 => prop::option::weighted(0.3, json_object()).prop_map(Event::Accept),
        1 => reason().prop_map(Event::Reject),
        10 => (any::<Index>(), any::<Index>()).prop_map(|(key, payload)| Event::Next { key, payload }),
        4 => (any::<Index>(), prop::collection::vec(".{0,8}", 0..3))
            .prop_map(|(key, errors)| Event::Error { key, errors }),
        5 => any::<Index>().prop_map(|key| Event::Complete { key }),
        1 => Just(Event::TransportClosed),
        1 => (close_code(), reason()).prop_map(|(code, reason)| Event::Close { code, reason }),
    ]
}

/// Garbage and abrupt ends.
fn rude_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        2 => any::<String>().prop_map(Event::Text),
        2 => "[{}\\[\\]\":, a-z0-9_]{0,30}".prop_map(Event::Text),
        2 => client_message(None).prop_map(|msg| Event::Client { msg, foreign: true }),
        2 => (client_message(None), any::<Index>(), prop::option::of(any::<char>()))
            .prop_map(|(msg, at, insert)| Event::Mangled { msg, at, insert }),
        2 => prop::collection::vec(any::<u8>(), 0..24).prop_map(Event::Binary),
        1 => Just(Event::TransportClosed),
        1 => (close_code(), reason()).prop_map(|(code, reason)| Event::Close { code, reason }),
    ]
}

/// Sequences of events: polite only, mostly polite, or quite rude.
fn events(protocol: Protocol) -> impl Strategy<Value = Vec<Event>> {
    let events = |strategy| prop::collection::vec(strategy, 0..MAX_EVENTS);
    prop_oneof![
        events(polite_event(protocol).boxed()),
        events(prop_oneof![30 => polite_event(protocol), 1 => rude_event()].boxed()),
        events(prop_oneof![6 => polite_event(protocol), 1 => rude_event()].boxed()),
    ]
}

/// Most scenarios start with a successful handshake so that they reach subscriptions; some
/// with only `connection_init` (authentication pending), some with nothing.
fn scenario() -> impl Strategy<Value = Scenario> {
    protocol()
        .prop_flat_map(|protocol| {
            (
                Just(protocol),
                config(),
                prop_oneof![1 => Just(0_usize), 2 => Just(1), 7 => Just(2)],
                events(protocol),
            )
        })
        .prop_map(|(protocol, config, handshake, mut events)| {
            let prelude = [
                Event::Client {
                    msg: ClientMessage::ConnectionInit { payload: None },
                    foreign: false,
                },
                Event::Accept(None),
            ];
            events.splice(0..0, prelude.into_iter().take(handshake));
            Scenario {
                protocol,
                config,
                events,
            }
        })
}

// ---------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------

/// What the call made for a step returned.
#[derive(Debug, Clone)]
enum Outcome {
    /// The call returns nothing (`handle_*`, `close`), or a server call found no key yet.
    Nothing,
    /// `accept` / `reject`.
    Verdict(Result<(), Error>),
    /// `next`, and what `next_into` appended for the same call.
    Next {
        key: SubscriptionKey,
        frame: Option<String>,
        into: Option<String>,
    },
    /// `error` or `complete`.
    Ended {
        key: SubscriptionKey,
        frame: Option<String>,
        kind: &'static str,
    },
}

/// The state `next`/`subscription_id` report for one key after a step.
#[derive(Debug, Clone)]
struct Probe {
    key: SubscriptionKey,
    next: Option<String>,
    id: Option<String>,
}

/// One step of a run: the event, what the call returned, the actions it queued (drained
/// right after) and the connection's state afterwards.
#[derive(Debug, Clone)]
struct Step {
    event: Event,
    now: Instant,
    outcome: Outcome,
    actions: Vec<Action>,
    closed_after: bool,
    timeout_after: Option<Instant>,
    active_after: usize,
    /// `next`/`subscription_id` for every key started so far.
    probes: Vec<Probe>,
}

fn pick(keys: &[SubscriptionKey], index: &Index) -> Option<SubscriptionKey> {
    (!keys.is_empty()).then(|| keys[index.index(keys.len())])
}

fn mangle(text: &str, at: &Index, insert: Option<char>) -> String {
    let mut cut = at.index(text.len() + 1);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut mangled = text.to_owned();
    match insert {
        Some(c) => mangled.insert(cut, c),
        None => mangled.truncate(cut),
    }
    mangled
}

/// Runs a scenario, recording every step. Panics only if the connection does.
fn drive(scenario: &Scenario) -> Vec<Step> {
    let protocol = scenario.protocol;
    let mut now = Instant::now();
    let mut conn = ServerConnection::new(protocol, scenario.config, now);
    let mut keys: Vec<SubscriptionKey> = Vec::new();
    let mut steps = Vec::with_capacity(scenario.events.len());
    for event in &scenario.events {
        let outcome = match event {
            Event::Text(text) => {
                conn.handle_text(text, now);
                Outcome::Nothing
            }
            Event::Client { msg, foreign } => {
                let wire = if *foreign { other(protocol) } else { protocol };
                conn.handle_text(&msg.to_json(wire), now);
                Outcome::Nothing
            }
            Event::Mangled { msg, at, insert } => {
                conn.handle_text(&mangle(&msg.to_json(protocol), at, *insert), now);
                Outcome::Nothing
            }
            Event::Binary(bytes) => {
                conn.handle_binary(bytes, now);
                Outcome::Nothing
            }
            Event::BinaryClient(msg) => {
                conn.handle_binary(msg.to_json(protocol).as_bytes(), now);
                Outcome::Nothing
            }
            Event::Advance(ms) => {
                now += Duration::from_millis(*ms);
                conn.handle_timeout(now);
                Outcome::Nothing
            }
            Event::AdvanceToDeadline => {
                if let Some(deadline) = conn.poll_timeout() {
                    now = now.max(deadline);
                }
                conn.handle_timeout(now);
                Outcome::Nothing
            }
            Event::TransportPong => {
                conn.handle_transport_pong(now);
                Outcome::Nothing
            }
            Event::TransportClosed => {
                conn.handle_transport_closed();
                Outcome::Nothing
            }
            Event::Accept(payload) => Outcome::Verdict(conn.accept(payload.clone(), now)),
            Event::Reject(reason) => Outcome::Verdict(conn.reject(reason)),
            Event::Next { key, payload } => match pick(&keys, key) {
                Some(key) => {
                    let payload = PAYLOADS[payload.index(PAYLOADS.len())];
                    let frame = conn.next(key, payload);
                    let mut buf = String::new();
                    let into = conn.next_into(&mut buf, key, payload).then_some(buf);
                    Outcome::Next { key, frame, into }
                }
                None => Outcome::Nothing,
            },
            Event::Error { key, errors } => match pick(&keys, key) {
                Some(key) => {
                    let errors: Vec<GraphQLError> = errors
                        .iter()
                        .map(|m| GraphQLError::new(m.as_str()))
                        .collect();
                    let frame = conn.error(key, &errors);
                    Outcome::Ended {
                        key,
                        frame,
                        kind: "error",
                    }
                }
                None => Outcome::Nothing,
            },
            Event::Complete { key } => match pick(&keys, key) {
                Some(key) => Outcome::Ended {
                    key,
                    frame: conn.complete(key),
                    kind: "complete",
                },
                None => Outcome::Nothing,
            },
            Event::Close { code, reason } => {
                conn.close(*code, reason);
                Outcome::Nothing
            }
        };
        let actions: Vec<Action> = conn.drain_actions().collect();
        for action in &actions {
            if let Action::Start { key, .. } = action {
                keys.push(*key);
            }
        }
        let probes = keys
            .iter()
            .map(|&key| Probe {
                key,
                next: conn.next(key, PAYLOADS[0]),
                id: conn.subscription_id(key).map(str::to_owned),
            })
            .collect();
        steps.push(Step {
            event: event.clone(),
            now,
            outcome,
            actions,
            closed_after: conn.is_closed(),
            timeout_after: conn.poll_timeout(),
            active_after: conn.active_subscriptions(),
            probes,
        });
    }
    steps
}

// ---------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------

/// Which subscriptions are active and whether the connection is closed, following only
/// what the connection told the caller (actions and return values).
#[derive(Debug, Default)]
struct Model {
    active: BTreeMap<SubscriptionKey, String>,
    finished: BTreeSet<SubscriptionKey>,
    closed: bool,
}

impl Model {
    /// Apply what the step's call returned (before its actions).
    fn on_outcome(&mut self, outcome: &Outcome) {
        if let Outcome::Ended {
            key,
            frame: Some(_),
            ..
        } = outcome
        {
            self.active.remove(key);
            self.finished.insert(*key);
        }
    }

    fn on_action(&mut self, action: &Action) {
        match action {
            Action::Start { key, id, .. } => {
                self.active.insert(*key, id.clone());
            }
            Action::Stop { key, .. } => {
                self.active.remove(key);
                self.finished.insert(*key);
            }
            Action::Close { .. } => self.closed = true,
            _ => {}
        }
    }

    /// Apply the end of the step (the transport close queues no `Close` action).
    fn on_step_end(&mut self, step: &Step) {
        if matches!(step.event, Event::TransportClosed) {
            self.closed = true;
        }
    }
}

/// Feeds a whole step to the model, for checkers that only look at state between steps.
fn apply(model: &mut Model, step: &Step) {
    model.on_outcome(&step.outcome);
    for action in &step.actions {
        model.on_action(action);
    }
    model.on_step_end(step);
}

fn parse_frame(frame: &str) -> Result<serde_json::Map<String, Value>, TestCaseError> {
    let value: Value = serde_json::from_str(frame)
        .map_err(|err| TestCaseError::fail(format!("frame is not JSON ({err}): {frame}")))?;
    let Value::Object(object) = value else {
        return Err(TestCaseError::fail(format!(
            "frame is not a JSON object: {frame}"
        )));
    };
    prop_assert!(
        object.get("type").is_some_and(Value::is_string),
        "frame has no string \"type\": {}",
        frame
    );
    Ok(object)
}

// ---------------------------------------------------------------------------------------
// Invariants
// ---------------------------------------------------------------------------------------

fn check_one_active_subscription_per_id(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for (i, step) in steps.iter().enumerate() {
        model.on_outcome(&step.outcome);
        for action in &step.actions {
            if let Action::Start { key, id, .. } = action {
                prop_assert!(
                    !model.active.values().any(|active| active == id),
                    "step {}: Start {:?} for id {:?} while {:?} is active under it",
                    i,
                    key,
                    id,
                    model.active
                );
            }
            model.on_action(action);
        }
        model.on_step_end(step);
    }
    Ok(())
}

fn check_keys_never_reused(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut started = BTreeSet::new();
    for (i, step) in steps.iter().enumerate() {
        for action in &step.actions {
            if let Action::Start { key, .. } = action {
                prop_assert!(started.insert(*key), "step {}: key {:?} reused", i, key);
            }
        }
    }
    Ok(())
}

fn check_nothing_sent_for_finished(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for (i, step) in steps.iter().enumerate() {
        match &step.outcome {
            Outcome::Next { key, frame, .. } | Outcome::Ended { key, frame, .. } => {
                let active = model.active.contains_key(key);
                prop_assert_eq!(
                    frame.is_some(),
                    active,
                    "step {}: {:?} on key {:?} (active: {}, finished: {})",
                    i,
                    step.event,
                    key,
                    active,
                    model.finished.contains(key)
                );
            }
            Outcome::Nothing | Outcome::Verdict(_) => {}
        }
        model.on_outcome(&step.outcome);
        for action in &step.actions {
            if let Action::Stop { key, id } = action {
                prop_assert_eq!(
                    model.active.get(key),
                    Some(id),
                    "step {}: Stop for key {:?} that is not active under that id",
                    i,
                    key
                );
            }
            model.on_action(action);
        }
        model.on_step_end(step);
        for probe in &step.probes {
            if model.finished.contains(&probe.key) {
                prop_assert!(
                    probe.next.is_none() && probe.id.is_none(),
                    "step {}: finished key {:?} still answers: {:?}",
                    i,
                    probe.key,
                    probe
                );
            } else {
                let id = model.active.get(&probe.key);
                prop_assert!(
                    id.is_some(),
                    "step {}: started key neither active nor finished",
                    i
                );
                prop_assert_eq!(probe.id.as_ref(), id, "step {}: subscription_id", i);
                prop_assert!(probe.next.is_some(), "step {}: active key refuses next", i);
            }
        }
    }
    Ok(())
}

fn check_close_is_final(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for (i, step) in steps.iter().enumerate() {
        if model.closed {
            prop_assert!(
                step.actions.is_empty(),
                "step {}: {:?} after close queued {:?}",
                i,
                step.event,
                step.actions
            );
            match &step.outcome {
                Outcome::Verdict(verdict) => prop_assert!(
                    verdict.is_ok(),
                    "step {}: verdict after close errs: {:?}",
                    i,
                    verdict
                ),
                Outcome::Next { frame, into, .. } => {
                    prop_assert!(
                        frame.is_none() && into.is_none(),
                        "step {}: next after close",
                        i
                    );
                }
                Outcome::Ended { frame, .. } => {
                    prop_assert!(frame.is_none(), "step {}: end frame after close", i);
                }
                Outcome::Nothing => {}
            }
        }
        model.on_outcome(&step.outcome);
        for (n, action) in step.actions.iter().enumerate() {
            if let Action::Close { .. } = action {
                prop_assert_eq!(
                    n + 1,
                    step.actions.len(),
                    "step {}: Close is not the last action: {:?}",
                    i,
                    &step.actions
                );
                prop_assert!(
                    model.active.is_empty(),
                    "step {}: Close before the Stop of {:?}",
                    i,
                    &model.active
                );
            }
            model.on_action(action);
        }
        if matches!(step.event, Event::TransportClosed) && !model.closed {
            prop_assert!(
                step.actions
                    .iter()
                    .all(|action| matches!(action, Action::Stop { .. })),
                "step {}: the transport close queued more than Stops: {:?}",
                i,
                &step.actions
            );
            prop_assert!(
                model.active.is_empty(),
                "step {}: the transport close left {:?} active",
                i,
                &model.active
            );
        }
        model.on_step_end(step);
        prop_assert_eq!(step.closed_after, model.closed, "step {}: is_closed()", i);
        if model.closed {
            prop_assert_eq!(step.timeout_after, None, "step {}: poll_timeout()", i);
            prop_assert_eq!(step.active_after, 0, "step {}: active after close", i);
        }
    }
    Ok(())
}

fn check_close_reasons(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut closed = false;
    for (i, step) in steps.iter().enumerate() {
        for action in &step.actions {
            let Action::Close { reason, .. } = action else {
                continue;
            };
            prop_assert!(
                reason.len() <= MAX_CLOSE_REASON_BYTES,
                "step {}: close reason of {} bytes: {:?}",
                i,
                reason.len(),
                reason
            );
            // A reason the caller chose is kept, or cut as little as possible.
            let asked = match &step.event {
                Event::Close { reason, .. } if !closed => Some(reason.as_str()),
                Event::Reject(reason) if !closed && !reason.is_empty() => Some(reason.as_str()),
                _ => None,
            };
            if let Some(asked) = asked {
                prop_assert!(
                    asked.starts_with(reason.as_str()),
                    "step {}: {:?}",
                    i,
                    reason
                );
                prop_assert!(
                    reason.len() == asked.len() || reason.len() + 4 > MAX_CLOSE_REASON_BYTES,
                    "step {}: {:?} cut too short to {:?}",
                    i,
                    asked,
                    reason
                );
            }
        }
        closed = step.closed_after;
    }
    Ok(())
}

fn check_sent_frames(protocol: Protocol, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for (i, step) in steps.iter().enumerate() {
        match &step.outcome {
            Outcome::Next { key, frame, into } => {
                prop_assert_eq!(frame, into, "step {}: next and next_into differ", i);
                if let Some(frame) = frame {
                    let object = parse_frame(frame)?;
                    let kind = match protocol {
                        Protocol::GraphqlTransportWs => "next",
                        Protocol::GraphqlWs => "data",
                    };
                    prop_assert_eq!(object.get("type").and_then(Value::as_str), Some(kind));
                    prop_assert_eq!(
                        object.get("id").and_then(Value::as_str),
                        model.active.get(key).map(String::as_str)
                    );
                }
            }
            Outcome::Ended {
                key,
                frame: Some(frame),
                kind,
            } => {
                let object = parse_frame(frame)?;
                prop_assert_eq!(object.get("type").and_then(Value::as_str), Some(*kind));
                prop_assert_eq!(
                    object.get("id").and_then(Value::as_str),
                    model.active.get(key).map(String::as_str)
                );
            }
            _ => {}
        }
        model.on_outcome(&step.outcome);
        for action in &step.actions {
            if let Action::Send(frame) = action {
                parse_frame(frame).map_err(|err| {
                    TestCaseError::fail(format!("step {i}: {:?}: {err}", step.event))
                })?;
            }
            model.on_action(action);
        }
        model.on_step_end(step);
    }
    Ok(())
}

fn check_active_count(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for (i, step) in steps.iter().enumerate() {
        apply(&mut model, step);
        prop_assert_eq!(
            step.active_after,
            model.active.len(),
            "step {}: active_subscriptions() after {:?}",
            i,
            &step.event
        );
    }
    Ok(())
}

fn check_no_overdue_deadline(steps: &[Step]) -> Result<(), TestCaseError> {
    for (i, step) in steps.iter().enumerate() {
        if matches!(step.event, Event::Advance(_) | Event::AdvanceToDeadline) {
            prop_assert!(
                step.timeout_after
                    .is_none_or(|deadline| deadline > step.now),
                "step {}: handle_timeout left a deadline due",
                i
            );
        }
    }
    Ok(())
}

fn check_authentication_flow(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut authenticated = 0;
    let mut pending = false;
    let mut acknowledged = false;
    for (i, step) in steps.iter().enumerate() {
        if let Outcome::Verdict(verdict) = &step.outcome {
            if model.closed {
                prop_assert!(verdict.is_ok(), "step {}: verdict after close", i);
            } else if pending {
                prop_assert!(
                    verdict.is_ok(),
                    "step {}: verdict refused: {:?}",
                    i,
                    verdict
                );
                pending = false;
                acknowledged = matches!(step.event, Event::Accept(_));
            } else {
                prop_assert!(
                    matches!(verdict, Err(Error::NoAuthenticationPending { .. })),
                    "step {}: verdict with nothing pending: {:?}",
                    i,
                    verdict
                );
            }
        }
        model.on_outcome(&step.outcome);
        for action in &step.actions {
            match action {
                Action::Authenticate { .. } => {
                    authenticated += 1;
                    prop_assert_eq!(authenticated, 1, "step {}: second Authenticate", i);
                    pending = true;
                }
                Action::Start { .. } => {
                    prop_assert!(acknowledged, "step {}: Start before acknowledgement", i);
                }
                _ => {}
            }
            model.on_action(action);
        }
        model.on_step_end(step);
        if model.closed {
            pending = false;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// 256 cases unless `PROPTEST_CASES` says otherwise.
fn proptest_config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 256;
    }
    config
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn no_input_sequence_panics(scenario in scenario()) {
        let steps = drive(&scenario);
        prop_assert_eq!(steps.len(), scenario.events.len());
    }

    #[test]
    fn at_most_one_active_subscription_per_id(scenario in scenario()) {
        check_one_active_subscription_per_id(&drive(&scenario))?;
    }

    #[test]
    fn subscription_keys_are_never_reused(scenario in scenario()) {
        check_keys_never_reused(&drive(&scenario))?;
    }

    #[test]
    fn nothing_is_sent_for_a_finished_subscription(scenario in scenario()) {
        check_nothing_sent_for_finished(&drive(&scenario))?;
    }

    #[test]
    fn close_is_final_and_last(scenario in scenario()) {
        check_close_is_final(&drive(&scenario))?;
    }

    #[test]
    fn close_reasons_fit_in_a_close_frame(scenario in scenario()) {
        check_close_reasons(&drive(&scenario))?;
    }

    #[test]
    fn every_sent_frame_is_a_json_object_with_a_string_type(scenario in scenario()) {
        check_sent_frames(scenario.protocol, &drive(&scenario))?;
    }

    #[test]
    fn active_subscriptions_matches_the_model(scenario in scenario()) {
        check_active_count(&drive(&scenario))?;
    }

    #[test]
    fn handle_timeout_leaves_no_deadline_overdue(scenario in scenario()) {
        check_no_overdue_deadline(&drive(&scenario))?;
    }

    #[test]
    fn verdicts_and_starts_follow_the_authentication_flow(scenario in scenario()) {
        check_authentication_flow(&drive(&scenario))?;
    }
}

/// The generators reach the interesting states: without this, a generator bug could make
/// every property above pass vacuously.
#[test]
fn scenarios_reach_the_interesting_states() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = scenario();
    let mut starts = 0;
    let mut ids_reused = 0;
    let mut next_on_ended = 0;
    let mut closes_stopping = 0;
    let mut transport_closes_stopping = 0;
    let mut keep_alive_timeouts = 0;
    for _ in 0..300 {
        let scenario = strategy.new_tree(&mut runner).unwrap().current();
        let mut model = Model::default();
        let mut started = BTreeMap::new();
        let mut ended_ids = BTreeSet::new();
        for step in drive(&scenario) {
            if matches!(step.outcome, Outcome::Next { frame: None, .. }) && !model.closed {
                next_on_ended += 1;
            }
            let stops = step
                .actions
                .iter()
                .any(|action| matches!(action, Action::Stop { .. }));
            for action in &step.actions {
                match action {
                    Action::Start { key, id, .. } => {
                        started.insert(*key, id.clone());
                        starts += 1;
                        ids_reused += usize::from(ended_ids.contains(id));
                    }
                    Action::Close { code, .. } => {
                        closes_stopping += usize::from(stops);
                        keep_alive_timeouts += usize::from(*code == CloseCode::KeepAliveTimeout);
                    }
                    _ => {}
                }
            }
            if matches!(step.event, Event::TransportClosed) && stops {
                transport_closes_stopping += 1;
            }
            apply(&mut model, &step);
            ended_ids.extend(model.finished.iter().map(|key| started[key].clone()));
        }
    }
    let counts = format!(
        "starts {starts}, ids reused {ids_reused}, next on ended {next_on_ended}, \
         closes with stops {closes_stopping}, transport closes with stops \
         {transport_closes_stopping}, keep-alive timeouts {keep_alive_timeouts}"
    );
    assert!(starts > 150, "{counts}");
    assert!(ids_reused > 15, "{counts}");
    assert!(next_on_ended > 20, "{counts}");
    assert!(closes_stopping > 30, "{counts}");
    assert!(transport_closes_stopping > 5, "{counts}");
    assert!(keep_alive_timeouts > 3, "{counts}");
}
