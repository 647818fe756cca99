//! The engine in process: real protocol state machines as clients, the in-memory bus,
//! dispatch through security, filters, resolvers, projection and outboxes.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)] // tests fail loudly

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use fraiseql_protocol::{
    Action, ConnectionConfig, Protocol, ServerConnection, SubscribePayload, SubscriptionKey,
};
use fraiseql_subscriptions::filter::{FilterOp, FilterSpec};
use fraiseql_subscriptions::limits::{LimitsConfig, RateLimit};
use fraiseql_subscriptions::security::{Principal, SecurityPolicy};
use fraiseql_subscriptions::{
    ConnectionHandle, Engine, EngineConfig, Event, EventBus, FieldConfig, InMemoryBus, Outbound,
    OverflowPolicy, Resolved, Resolver, ResolverError,
};
use serde_json::{json, Value};

/// A client: its protocol state machine and its engine connection.
struct Client {
    conn: ServerConnection,
    handle: ConnectionHandle,
    next_id: u32,
}

impl Client {
    fn new(engine: &Engine, principal: Principal) -> Self {
        let now = Instant::now();
        let mut conn = ServerConnection::new(
            Protocol::GraphqlTransportWs,
            ConnectionConfig::default(),
            now,
        );
        conn.handle_text(r#"{"type":"connection_init"}"#, now);
        conn.accept(None, now).unwrap();
        let _ = conn.drain_actions().count();
        Self {
            conn,
            handle: engine.connect(principal).unwrap(),
            next_id: 0,
        }
    }

    /// Subscribes through the protocol, as a transport would; returns the key and id.
    async fn subscribe(
        &mut self,
        engine: &Engine,
        query: &str,
        variables: Value,
    ) -> (SubscriptionKey, String) {
        self.next_id += 1;
        let id = format!("s{}", self.next_id);
        let text = json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}});
        self.conn.handle_text(&text.to_string(), Instant::now());
        let Some(Action::Start { key, payload, .. }) = self.conn.poll_action() else {
            panic!("no start")
        };
        let _ = engine.subscribe(self.handle.id, key, &payload).await;
        (key, id)
    }

    /// Every frame the engine queued so far, as the transport would send them.
    fn frames(&mut self) -> Vec<Value> {
        let mut batch = Vec::new();
        self.handle.outbox.try_recv_batch(&mut batch, usize::MAX);
        let mut frames = Vec::new();
        for message in batch {
            let frame = match message {
                Outbound::Next { key, payload } => self.conn.next(key, &payload),
                Outbound::Complete { key } => self.conn.complete(key),
                Outbound::Error { key, errors } => self.conn.error(key, &errors),
                Outbound::Close { code, reason } => {
                    self.conn.close(code, &reason);
                    Some(json!({"close": code.as_u16(), "reason": reason}).to_string())
                }
            };
            if let Some(frame) = frame {
                frames.push(serde_json::from_str(&frame).unwrap());
            }
        }
        frames
    }
}

const MESSAGE: &str = "subscription($room: String!) { message(room: $room) { id text } }";

fn chat_fields() -> HashMap<String, FieldConfig> {
    HashMap::from([(
        "message".to_owned(),
        FieldConfig::new("room:{room}").unwrap(),
    )])
}

async fn engine_with(
    fields: HashMap<String, FieldConfig>,
    config: EngineConfig,
) -> (Arc<Engine>, Arc<InMemoryBus>) {
    let bus = Arc::new(InMemoryBus::new());
    let engine = Arc::new(
        Engine::new(bus.clone() as Arc<dyn EventBus>, fields, config)
            .await
            .unwrap(),
    );
    (engine, bus)
}

/// Publishes and dispatches synchronously (the bus stream is drained by `run` in real use).
async fn publish(engine: &Engine, event: Event) {
    engine.dispatch(&Arc::new(event)).await;
}

#[tokio::test]
async fn an_event_reaches_its_channels_subscribers_projected_with_their_ids() {
    let (engine, _) = engine_with(chat_fields(), EngineConfig::default()).await;
    let mut alice = Client::new(&engine, Principal::user("alice"));
    let mut bob = Client::new(&engine, Principal::user("bob"));
    let (_, alice_id) = alice
        .subscribe(&engine, MESSAGE, json!({"room": "lobby"}))
        .await;
    let (_, bob_id) = bob
        .subscribe(&engine, MESSAGE, json!({"room": "kitchen"}))
        .await;
    publish(
        &engine,
        Event::new(
            "room:lobby",
            json!({"id": "1", "text": "hi", "secret": "x"}),
        ),
    )
    .await;
    assert_eq!(
        alice.frames(),
        vec![
            json!({"id": alice_id, "type": "next", "payload": {"data": {"message": {"id": "1", "text": "hi"}}}})
        ]
    );
    assert!(bob.frames().is_empty(), "kitchen does not hear the lobby");
    publish(
        &engine,
        Event::new(
            "room:kitchen",
            json!({"id": "2", "text": "yo", "flag": true}),
        ),
    )
    .await;
    assert_eq!(bob.frames()[0]["id"], bob_id);
}

#[tokio::test]
async fn one_payload_is_serialized_once_and_shared() {
    let (engine, _) = engine_with(chat_fields(), EngineConfig::default()).await;
    let mut clients: Vec<Client> = (0..3)
        .map(|n| Client::new(&engine, Principal::user(format!("u{n}"))))
        .collect();
    for client in &mut clients {
        client
            .subscribe(&engine, MESSAGE, json!({"room": "r"}))
            .await;
    }
    publish(
        &engine,
        Event::new("room:r", json!({"id": "1", "text": "t"})),
    )
    .await;
    let payloads: Vec<Arc<str>> = clients
        .iter()
        .map(|c| {
            let mut batch = Vec::new();
            c.handle.outbox.try_recv_batch(&mut batch, 10);
            match batch.pop() {
                Some(Outbound::Next { payload, .. }) => payload,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert!(
        payloads.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])),
        "one shared serialization"
    );
}

#[tokio::test]
async fn tenant_b_never_receives_tenant_a_events() {
    let config = EngineConfig {
        security: SecurityPolicy {
            multi_tenant: true,
            ..SecurityPolicy::default()
        },
        ..EngineConfig::default()
    };
    let (engine, _) = engine_with(chat_fields(), config).await;
    let mut a = Client::new(&engine, Principal::user("a").with_tenant("A"));
    let mut b = Client::new(&engine, Principal::user("b").with_tenant("B"));
    a.subscribe(&engine, MESSAGE, json!({"room": "r"})).await;
    b.subscribe(&engine, MESSAGE, json!({"room": "r"})).await;
    publish(
        &engine,
        Event::new("room:r", json!({"id": "1", "text": "a"})).with_tenant("A"),
    )
    .await;
    publish(
        &engine,
        Event::new("room:r", json!({"id": "2", "text": "none"})),
    )
    .await;
    assert_eq!(a.frames().len(), 1);
    assert!(b.frames().is_empty());
    assert_eq!(engine.metrics().snapshot().security_rejections, 3);
}

#[tokio::test]
async fn a_field_filter_that_can_never_compile_fails_at_engine_start() {
    let fields = HashMap::from([(
        "message".to_owned(),
        FieldConfig::new("room:{room}")
            .unwrap()
            .with_filter(FilterSpec::constant(
                "priority",
                FilterOp::Gte,
                json!({"n": 1}),
            )),
    )]);
    let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
    let err = Engine::new(bus, fields, EngineConfig::default())
        .await
        .err()
        .unwrap();
    let message = err.to_string();
    assert!(message.contains("`message`"), "{message}");
    assert!(message.contains("a number or a string"), "{message}");
}

#[tokio::test]
async fn filters_bound_to_arguments_select_events() {
    let mut fields = HashMap::new();
    fields.insert(
        "orderUpdated".to_owned(),
        FieldConfig::new("orders")
            .unwrap()
            .with_filter(FilterSpec::bound("customer", FilterOp::Eq, "customer")),
    );
    let (engine, _) = engine_with(fields, EngineConfig::default()).await;
    let mut c = Client::new(&engine, Principal::user("c"));
    c.subscribe(
        &engine,
        "subscription { orderUpdated(customer: \"c1\") { id } }",
        json!({}),
    )
    .await;
    publish(
        &engine,
        Event::new("orders", json!({"id": 1, "customer": "c2"})),
    )
    .await;
    publish(
        &engine,
        Event::new("orders", json!({"id": 2, "customer": "c1"})),
    )
    .await;
    let frames = c.frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["payload"]["data"]["orderUpdated"]["id"], 2);
}

#[derive(Debug, Default)]
struct CountingResolver {
    calls: AtomicUsize,
}

#[async_trait]
impl Resolver for CountingResolver {
    async fn resolve(
        &self,
        event: &Arc<Event>,
        _field: &str,
        arguments: &serde_json::Map<String, Value>,
    ) -> Result<Resolved, ResolverError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let data = event.data().value().unwrap();
        match arguments.get("mode").and_then(Value::as_str) {
            Some("fail") => Err(ResolverError {
                message: "resolver exploded".into(),
            }),
            Some("end") => Ok(Resolved::Complete),
            Some("skip") => Ok(Resolved::Skip),
            _ => Ok(Resolved::Value(
                json!({"id": data["id"], "text": format!("{} (resolved)", data["text"].as_str().unwrap_or(""))}),
            )),
        }
    }
}

fn resolver_fields(resolver: Arc<CountingResolver>) -> HashMap<String, FieldConfig> {
    HashMap::from([(
        "message".to_owned(),
        FieldConfig::new("room:{room}")
            .unwrap()
            .with_resolver(resolver),
    )])
}

const MODE: &str =
    "subscription($room: String!, $mode: String) { message(room: $room, mode: $mode) { text } }";

#[tokio::test]
async fn a_resolver_runs_once_per_group_not_per_subscriber() {
    let resolver = Arc::new(CountingResolver::default());
    let (engine, _) = engine_with(resolver_fields(resolver.clone()), EngineConfig::default()).await;
    let mut clients: Vec<Client> = (0..5)
        .map(|n| Client::new(&engine, Principal::user(format!("u{n}"))))
        .collect();
    // The groups interleave on the channel (plain, other, plain, ...): each is still one.
    for (n, client) in clients.iter_mut().enumerate() {
        let mode = if n % 2 == 1 { "other" } else { "plain" };
        client
            .subscribe(&engine, MODE, json!({"room": "r", "mode": mode}))
            .await;
    }
    publish(
        &engine,
        Event::new("room:r", json!({"id": "1", "text": "hi"})),
    )
    .await;
    assert_eq!(
        resolver.calls.load(Ordering::SeqCst),
        2,
        "two groups, two calls"
    );
    for client in &mut clients {
        assert_eq!(
            client.frames()[0]["payload"]["data"]["message"]["text"],
            "hi (resolved)"
        );
    }
}

/// A resolver whose "wait" group cannot finish until the "signal" group has run: with
/// groups resolved one after another (in first-seen order) this would never finish.
#[derive(Debug, Default)]
struct RendezvousResolver {
    signalled: tokio::sync::Notify,
}

#[async_trait]
impl Resolver for RendezvousResolver {
    async fn resolve(
        &self,
        _event: &Arc<Event>,
        _field: &str,
        arguments: &serde_json::Map<String, Value>,
    ) -> Result<Resolved, ResolverError> {
        let mode = arguments.get("mode").and_then(Value::as_str).unwrap_or("");
        if mode == "wait" {
            self.signalled.notified().await;
        } else {
            self.signalled.notify_one();
        }
        Ok(Resolved::Value(json!({"text": mode})))
    }
}

#[tokio::test]
async fn resolver_groups_run_concurrently() {
    let resolver = Arc::new(RendezvousResolver::default());
    let fields = HashMap::from([(
        "message".to_owned(),
        FieldConfig::new("room:{room}")
            .unwrap()
            .with_resolver(resolver),
    )]);
    let (engine, _) = engine_with(fields, EngineConfig::default()).await;
    let mut waiting = Client::new(&engine, Principal::user("w"));
    let mut signalling = Client::new(&engine, Principal::user("s"));
    waiting
        .subscribe(&engine, MODE, json!({"room": "r", "mode": "wait"}))
        .await;
    signalling
        .subscribe(&engine, MODE, json!({"room": "r", "mode": "signal"}))
        .await;
    // A hang guard, not a performance assertion: sequential groups would never finish.
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        publish(&engine, Event::new("room:r", json!({"id": "1"}))),
    )
    .await
    .expect("resolver groups were awaited one after another");
    assert_eq!(
        waiting.frames()[0]["payload"]["data"]["message"]["text"],
        "wait"
    );
    assert_eq!(
        signalling.frames()[0]["payload"]["data"]["message"]["text"],
        "signal"
    );
}

#[tokio::test]
async fn a_resolver_failure_errors_its_group_only() {
    let resolver = Arc::new(CountingResolver::default());
    let (engine, _) = engine_with(resolver_fields(resolver), EngineConfig::default()).await;
    let mut failing = Client::new(&engine, Principal::user("f"));
    let mut fine = Client::new(&engine, Principal::user("g"));
    let (_, failing_id) = failing
        .subscribe(&engine, MODE, json!({"room": "r", "mode": "fail"}))
        .await;
    fine.subscribe(&engine, MODE, json!({"room": "r"})).await;
    publish(
        &engine,
        Event::new("room:r", json!({"id": "1", "text": "x"})),
    )
    .await;
    let frames = failing.frames();
    assert_eq!(
        frames,
        vec![
            json!({"id": failing_id, "type": "error", "payload": [{"message": "resolver exploded", "extensions": {"code": "RESOLVER_ERROR"}}]})
        ]
    );
    assert_eq!(fine.frames().len(), 1);
    assert_eq!(
        engine.subscription_count(),
        1,
        "the failed subscription ended"
    );
    assert_eq!(engine.metrics().snapshot().resolver_errors, 1);
}

#[tokio::test]
async fn a_resolver_can_end_a_subscription_with_complete() {
    let resolver = Arc::new(CountingResolver::default());
    let (engine, bus) = engine_with(resolver_fields(resolver), EngineConfig::default()).await;
    let mut c = Client::new(&engine, Principal::user("c"));
    let (_, id) = c
        .subscribe(&engine, MODE, json!({"room": "r", "mode": "end"}))
        .await;
    publish(
        &engine,
        Event::new("room:r", json!({"id": "1", "text": "x"})),
    )
    .await;
    assert_eq!(c.frames(), vec![json!({"id": id, "type": "complete"})]);
    assert_eq!(engine.subscription_count(), 0);
    assert_eq!(
        bus.stats().active_channels,
        0,
        "the bus stopped listening on the channel"
    );
}

#[tokio::test]
async fn unsubscribe_and_disconnect_stop_delivery_and_free_the_channel() {
    let (engine, bus) = engine_with(chat_fields(), EngineConfig::default()).await;
    let mut c = Client::new(&engine, Principal::user("c"));
    let (key, _) = c.subscribe(&engine, MESSAGE, json!({"room": "a"})).await;
    c.subscribe(&engine, MESSAGE, json!({"room": "b"})).await;
    assert_eq!(bus.stats().active_channels, 2);
    engine.unsubscribe(c.handle.id, key).await;
    publish(
        &engine,
        Event::new("room:a", json!({"id": "1", "text": "x"})),
    )
    .await;
    assert!(c.frames().is_empty());
    engine.disconnect(c.handle.id).await;
    assert_eq!(engine.subscription_count(), 0);
    assert_eq!(bus.stats().active_channels, 0);
    assert!(c.handle.outbox.is_closed());
    assert_eq!(engine.metrics().snapshot().connections, 0);
}

#[tokio::test]
async fn invalid_documents_and_unknown_fields_get_an_error_message() {
    let (engine, _) = engine_with(chat_fields(), EngineConfig::default()).await;
    let mut c = Client::new(&engine, Principal::user("c"));
    let (_, bad) = c
        .subscribe(&engine, "subscription { message(room: ", json!({}))
        .await;
    let (_, unknown) = c
        .subscribe(&engine, "subscription { typing { who } }", json!({}))
        .await;
    let (_, missing) = c.subscribe(&engine, MESSAGE, json!({})).await;
    let frames = c.frames();
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert_eq!(frames[0]["id"], bad);
    assert_eq!(frames[0]["type"], "error");
    assert_eq!(frames[1]["id"], unknown);
    assert!(frames[1]["payload"][0]["message"]
        .as_str()
        .unwrap()
        .contains("typing"));
    assert_eq!(frames[2]["id"], missing);
    assert_eq!(engine.subscription_count(), 0);
}

#[tokio::test]
async fn delivery_order_equals_publish_order_through_the_bus() {
    let (engine, _) = engine_with(chat_fields(), EngineConfig::default()).await;
    let runner = {
        let engine = Arc::clone(&engine);
        tokio::spawn(async move { engine.run().await })
    };
    let mut c = Client::new(&engine, Principal::user("c"));
    c.subscribe(&engine, MESSAGE, json!({"room": "o"})).await;
    for n in 0..50 {
        engine
            .publish(Event::new(
                "room:o",
                json!({"id": n.to_string(), "text": "t"}),
            ))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut batch = Vec::new();
    while seen.len() < 50 {
        batch.clear();
        assert!(c.handle.outbox.recv_batch(&mut batch, 64).await);
        for message in batch.drain(..) {
            let Outbound::Next { key, payload } = message else {
                panic!()
            };
            let frame: Value = serde_json::from_str(&c.conn.next(key, &payload).unwrap()).unwrap();
            seen.push(
                frame["payload"]["data"]["message"]["id"]
                    .as_str()
                    .unwrap()
                    .parse::<u32>()
                    .unwrap(),
            );
        }
    }
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
    runner.abort();
}

#[tokio::test]
async fn a_slow_consumer_is_closed_and_nobody_else_is_affected() {
    let config = EngineConfig {
        limits: LimitsConfig {
            outbox_capacity: 3,
            ..LimitsConfig::default()
        },
        overflow_policy: OverflowPolicy::CloseConnection,
        ..EngineConfig::default()
    };
    let (engine, _) = engine_with(chat_fields(), config).await;
    let mut slow = Client::new(&engine, Principal::user("slow"));
    let mut fast = Client::new(&engine, Principal::user("fast"));
    slow.subscribe(&engine, MESSAGE, json!({"room": "r"})).await;
    fast.subscribe(&engine, MESSAGE, json!({"room": "r"})).await;
    for n in 0..5 {
        publish(
            &engine,
            Event::new("room:r", json!({"id": n.to_string(), "text": "t"})),
        )
        .await;
        assert_eq!(fast.frames().len(), 1, "the fast client reads every event");
    }
    let frames = slow.frames();
    assert_eq!(
        frames,
        vec![
            json!({"close": 1008, "reason": "Slow consumer: more than 3 messages waiting to be sent"})
        ]
    );
    assert_eq!(engine.metrics().snapshot().outbox_overflows, 1);
}

#[tokio::test]
async fn subscribe_payloads_from_both_protocols_work() {
    let (engine, _) = engine_with(chat_fields(), EngineConfig::default()).await;
    let handle = engine.connect(Principal::anonymous()).unwrap();
    let now = Instant::now();
    let mut legacy = ServerConnection::new(Protocol::GraphqlWs, ConnectionConfig::default(), now);
    legacy.handle_text(r#"{"type":"connection_init"}"#, now);
    legacy.accept(None, now).unwrap();
    legacy.handle_text(&json!({"id": "1", "type": "start", "payload": {"query": MESSAGE, "variables": {"room": "l"}}}).to_string(), now);
    let key = legacy
        .drain_actions()
        .find_map(|a| match a {
            Action::Start { key, .. } => Some(key),
            _ => None,
        })
        .unwrap();
    let request = SubscribePayload {
        query: MESSAGE.into(),
        operation_name: None,
        variables: json!({"room": "l"}).as_object().cloned(),
        extensions: None,
    };
    engine.subscribe(handle.id, key, &request).await.unwrap();
    publish(
        &engine,
        Event::new("room:l", json!({"id": "1", "text": "old"})),
    )
    .await;
    let mut batch = Vec::new();
    handle.outbox.try_recv_batch(&mut batch, 10);
    let Some(Outbound::Next { key, payload }) = batch.pop() else {
        panic!()
    };
    let frame: Value = serde_json::from_str(&legacy.next(key, &payload).unwrap()).unwrap();
    assert_eq!(frame["type"], "data");
}

#[tokio::test]
async fn subscription_caps_refuse_with_limit_exceeded() {
    let config = EngineConfig {
        limits: LimitsConfig {
            max_subscriptions_per_connection: Some(2),
            ..LimitsConfig::default()
        },
        ..EngineConfig::default()
    };
    let (engine, _) = engine_with(chat_fields(), config).await;
    let mut c = Client::new(&engine, Principal::user("c"));
    c.subscribe(&engine, MESSAGE, json!({"room": "a"})).await;
    c.subscribe(&engine, MESSAGE, json!({"room": "b"})).await;
    let (_, third) = c.subscribe(&engine, MESSAGE, json!({"room": "c"})).await;
    let frames = c.frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["id"], third);
    assert_eq!(
        frames[0]["payload"][0]["extensions"]["code"],
        "LIMIT_EXCEEDED"
    );
    assert_eq!(engine.subscription_count(), 2);
}

#[tokio::test]
async fn connections_per_user_are_capped() {
    let config = EngineConfig {
        limits: LimitsConfig {
            max_connections_per_user: Some(1),
            ..LimitsConfig::default()
        },
        ..EngineConfig::default()
    };
    let (engine, _) = engine_with(chat_fields(), config).await;
    let first = engine.connect(Principal::user("u")).unwrap();
    let err = engine.connect(Principal::user("u")).unwrap_err();
    assert!(err.message.contains("connections"), "{}", err.message);
    engine.disconnect(first.id).await;
    assert!(
        engine.connect(Principal::user("u")).is_ok(),
        "a closed connection frees its slot"
    );
}

#[tokio::test]
async fn subscribe_rate_per_user_refuses_bursts_with_rate_limited() {
    let config = EngineConfig {
        limits: LimitsConfig {
            subscribe_rate_per_user: Some(RateLimit::new(1, 2)),
            ..LimitsConfig::default()
        },
        ..EngineConfig::default()
    };
    let (engine, _) = engine_with(chat_fields(), config).await;
    let mut c = Client::new(&engine, Principal::user("eager"));
    for room in ["a", "b", "c"] {
        c.subscribe(&engine, MESSAGE, json!({"room": room})).await;
    }
    let frames = c.frames();
    assert_eq!(
        frames.len(),
        1,
        "the third subscribe is over the burst: {frames:?}"
    );
    assert_eq!(
        frames[0]["payload"][0]["extensions"]["code"],
        "RATE_LIMITED"
    );
    assert_eq!(engine.metrics().snapshot().rate_limited, 1);
}

#[tokio::test]
async fn deliveries_over_the_rate_are_dropped_and_counted() {
    let config = EngineConfig {
        limits: LimitsConfig {
            delivery_rate_per_subscription: Some(RateLimit::new(1, 2)),
            ..LimitsConfig::default()
        },
        ..EngineConfig::default()
    };
    let (engine, _) = engine_with(chat_fields(), config).await;
    let mut c = Client::new(&engine, Principal::user("c"));
    c.subscribe(&engine, MESSAGE, json!({"room": "r"})).await;
    for n in 0..5 {
        publish(
            &engine,
            Event::new("room:r", json!({"id": n.to_string(), "text": "t"})),
        )
        .await;
    }
    assert_eq!(
        c.frames().len(),
        2,
        "the burst of 2 passes, the rest is dropped"
    );
    assert_eq!(
        engine
            .metrics()
            .dropped_count(fraiseql_subscriptions::metrics::DropReason::RateLimited),
        3
    );
}

#[tokio::test]
async fn client_messages_over_the_rate_are_reported_to_the_transport() {
    let config = EngineConfig {
        limits: LimitsConfig {
            message_rate_per_connection: Some(RateLimit::new(1, 3)),
            ..LimitsConfig::default()
        },
        ..EngineConfig::default()
    };
    let (engine, _) = engine_with(chat_fields(), config).await;
    let handle = engine.connect(Principal::user("chatty")).unwrap();
    for _ in 0..3 {
        assert!(handle.check_message().is_ok());
    }
    assert!(handle.check_message().is_err());
}

#[tokio::test]
async fn field_rules_use_the_full_path_from_the_root_field() {
    let mut security = SecurityPolicy::default();
    security.selected_fields.insert(
        "message.author.email".to_owned(),
        fraiseql_subscriptions::security::Requirement::any_role(["staff"]),
    );
    let config = EngineConfig {
        security,
        ..EngineConfig::default()
    };
    let (engine, _) = engine_with(chat_fields(), config).await;
    let query = "subscription($room: String!) { message(room: $room) { id author { email } } }";
    let mut user = Client::new(&engine, Principal::user("u"));
    let (_, id) = user.subscribe(&engine, query, json!({"room": "r"})).await;
    let frames = user.frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["id"], id);
    assert_eq!(frames[0]["payload"][0]["extensions"]["code"], "FORBIDDEN");
    assert!(frames[0]["payload"][0]["message"]
        .as_str()
        .unwrap()
        .contains("message.author.email"));
    let mut staff = Client::new(&engine, Principal::user("s").with_roles(["staff"]));
    staff.subscribe(&engine, query, json!({"room": "r"})).await;
    assert!(staff.frames().is_empty(), "staff may select the email");
    assert_eq!(engine.subscription_count(), 1);
}

#[tokio::test]
async fn an_argument_that_makes_a_bad_channel_is_bad_user_input() {
    let (engine, bus) = engine_with(chat_fields(), EngineConfig::default()).await;
    let mut c = Client::new(&engine, Principal::user("c"));
    c.subscribe(&engine, MESSAGE, json!({"room": "x".repeat(300)}))
        .await;
    let frames = c.frames();
    assert_eq!(
        frames[0]["payload"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
    assert!(frames[0]["payload"][0]["message"]
        .as_str()
        .unwrap()
        .contains("256 bytes"));
    assert_eq!(bus.stats().active_channels, 0);
}

#[tokio::test]
async fn a_slow_consumers_subscriptions_are_unregistered_at_overflow() {
    let config = EngineConfig {
        limits: LimitsConfig {
            outbox_capacity: 2,
            ..LimitsConfig::default()
        },
        ..EngineConfig::default()
    };
    let (engine, _) = engine_with(chat_fields(), config).await;
    let mut slow = Client::new(&engine, Principal::user("slow"));
    let mut fast = Client::new(&engine, Principal::user("fast"));
    slow.subscribe(&engine, MESSAGE, json!({"room": "r"})).await;
    fast.subscribe(&engine, MESSAGE, json!({"room": "r"})).await;
    for n in 0..6 {
        publish(
            &engine,
            Event::new("room:r", json!({"id": n.to_string(), "text": "t"})),
        )
        .await;
        fast.frames();
    }
    assert_eq!(
        engine.subscription_count(),
        1,
        "only the fast client is left"
    );
    assert_eq!(engine.metrics().snapshot().connections, 1);
    assert_eq!(
        slow.frames()[0]["close"],
        1008,
        "the close still reaches the transport"
    );
}

#[tokio::test]
async fn a_final_event_is_delivered_then_ends_the_subscriptions_it_reaches() {
    let (engine, bus) = engine_with(chat_fields(), EngineConfig::default()).await;
    let mut c = Client::new(&engine, Principal::user("c"));
    let (_, id) = c
        .subscribe(&engine, MESSAGE, json!({"room": "auction"}))
        .await;
    publish(
        &engine,
        Event::new("room:auction", json!({"id": "1", "text": "bid"})),
    )
    .await;
    publish(
        &engine,
        Event::new("room:auction", json!({"id": "2", "text": "sold"})).final_event(),
    )
    .await;
    publish(
        &engine,
        Event::new("room:auction", json!({"id": "3", "text": "late"})),
    )
    .await;
    let frames = c.frames();
    let types: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["next", "next", "complete"]);
    assert_eq!(frames[2], json!({"id": id, "type": "complete"}));
    assert_eq!(engine.subscription_count(), 0);
    assert_eq!(bus.stats().active_channels, 0);
}

#[tokio::test]
async fn starting_the_same_subscription_twice_is_refused_and_leaks_nothing() {
    let (engine, _) = engine_with(chat_fields(), EngineConfig::default()).await;
    let handle = engine.connect(Principal::user("t")).unwrap();
    let now = Instant::now();
    let mut conn = ServerConnection::new(
        Protocol::GraphqlTransportWs,
        ConnectionConfig::default(),
        now,
    );
    conn.handle_text(r#"{"type":"connection_init"}"#, now);
    conn.accept(None, now).unwrap();
    conn.handle_text(&json!({"id": "1", "type": "subscribe", "payload": {"query": MESSAGE, "variables": {"room": "r"}}}).to_string(), now);
    let (key, payload) = conn
        .drain_actions()
        .find_map(|a| match a {
            Action::Start { key, payload, .. } => Some((key, payload)),
            _ => None,
        })
        .unwrap();
    engine.subscribe(handle.id, key, &payload).await.unwrap();
    let errors = engine
        .subscribe(handle.id, key, &payload)
        .await
        .unwrap_err();
    assert_eq!(errors[0].extensions["code"], "BAD_REQUEST");
    assert_eq!(engine.subscription_count(), 1);
    engine.disconnect(handle.id).await;
    assert_eq!(engine.subscription_count(), 0);
    let closed = engine
        .subscribe(handle.id, key, &payload)
        .await
        .unwrap_err();
    assert_eq!(closed[0].extensions["code"], "CONNECTION_CLOSED");
}

/// A bus that records which channels it is asked to feed; unsubscribing yields first, so a
/// later subscribe can overtake an earlier unsubscribe, as on a real network.
#[derive(Debug, Default)]
struct RecordingBus {
    inner: InMemoryBus,
    listening: std::sync::Mutex<std::collections::HashSet<String>>,
}

#[async_trait]
impl EventBus for RecordingBus {
    async fn publish(&self, event: Arc<Event>) -> Result<(), fraiseql_subscriptions::BusError> {
        self.inner.publish(event).await
    }
    async fn subscribe(
        &self,
        channels: &[String],
    ) -> Result<fraiseql_subscriptions::EventStream, fraiseql_subscriptions::BusError> {
        self.inner.subscribe(channels).await
    }
    async fn subscribe_to(
        &self,
        stream: fraiseql_subscriptions::StreamId,
        channels: &[String],
    ) -> Result<(), fraiseql_subscriptions::BusError> {
        self.listening
            .lock()
            .unwrap()
            .extend(channels.iter().cloned());
        self.inner.subscribe_to(stream, channels).await
    }
    async fn unsubscribe(
        &self,
        stream: fraiseql_subscriptions::StreamId,
        channels: &[String],
    ) -> Result<(), fraiseql_subscriptions::BusError> {
        // Unsubscribing is slower than subscribing, as a network round trip can be.
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        {
            let mut listening = self.listening.lock().unwrap();
            for channel in channels {
                listening.remove(channel);
            }
        }
        self.inner.unsubscribe(stream, channels).await
    }
    async fn health_check(&self) -> Result<(), fraiseql_subscriptions::BusError> {
        self.inner.health_check().await
    }
    fn stats(&self) -> fraiseql_subscriptions::BusStats {
        self.inner.stats()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_subscribe_and_unsubscribe_leave_the_bus_feeding_exactly_the_live_channels() {
    let bus = Arc::new(RecordingBus::default());
    let engine = Arc::new(
        Engine::new(
            bus.clone() as Arc<dyn EventBus>,
            chat_fields(),
            EngineConfig::default(),
        )
        .await
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for n in 0..16_u32 {
        let engine = Arc::clone(&engine);
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(&engine, Principal::user(format!("u{n}")));
            // Churn on three shared rooms; every task ends with one live subscription on
            // room (n % 3) when n is even, none when odd.
            for round in 0..20_u32 {
                let room = format!("r{}", (n + round) % 3);
                let (key, _) = client
                    .subscribe(&engine, MESSAGE, json!({"room": room}))
                    .await;
                engine.unsubscribe(client.handle.id, key).await;
            }
            if n % 2 == 0 {
                client
                    .subscribe(&engine, MESSAGE, json!({"room": format!("r{}", n % 3)}))
                    .await;
            }
            client
        }));
    }
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.unwrap());
    }
    let live: std::collections::HashSet<String> = (0..16_u32)
        .filter(|n| n % 2 == 0)
        .map(|n| format!("room:r{}", n % 3))
        .collect();
    assert_eq!(*bus.listening.lock().unwrap(), live);
    assert_eq!(engine.subscription_count(), 8);
}

#[tokio::test]
async fn a_gap_notice_ends_the_channels_subscriptions_with_events_lost() {
    let (engine, _) = engine_with(chat_fields(), EngineConfig::default()).await;
    let mut on_gap = Client::new(&engine, Principal::user("a"));
    let mut elsewhere = Client::new(&engine, Principal::user("b"));
    on_gap
        .subscribe(&engine, MESSAGE, json!({"room": "g"}))
        .await;
    elsewhere
        .subscribe(&engine, MESSAGE, json!({"room": "other"}))
        .await;
    publish(&engine, Event::gap("room:g", "events 5-9 were trimmed")).await;
    let frames = on_gap.frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["type"], "error");
    assert_eq!(
        frames[0]["payload"][0]["message"],
        "events 5-9 were trimmed"
    );
    assert_eq!(frames[0]["payload"][0]["extensions"]["code"], "EVENTS_LOST");
    assert!(elsewhere.frames().is_empty());
    assert_eq!(engine.subscription_count(), 1);
}

/// Holds event `n`'s resolution until the call for event `n + 1` has started: it only
/// finishes if `Engine::run` overlaps the resolver calls of consecutive events.
#[derive(Debug, Default)]
struct WaitsForTheNext {
    started: tokio::sync::Mutex<Vec<u64>>,
    notify: tokio::sync::Notify,
}

#[async_trait]
impl Resolver for WaitsForTheNext {
    async fn resolve(
        &self,
        event: &Arc<Event>,
        _field: &str,
        _arguments: &serde_json::Map<String, Value>,
    ) -> Result<Resolved, ResolverError> {
        let n = event.data().value().unwrap()["n"].as_u64().unwrap();
        self.started.lock().await.push(n);
        self.notify.notify_waiters();
        if n < 5 {
            loop {
                let notified = self.notify.notified();
                if self.started.lock().await.contains(&(n + 1)) {
                    break;
                }
                notified.await;
            }
        }
        Ok(Resolved::Value(json!({"text": format!("event {n}")})))
    }
}

#[tokio::test]
async fn run_overlaps_resolver_calls_and_delivers_in_event_order() {
    let resolver = Arc::new(WaitsForTheNext::default());
    let fields = HashMap::from([(
        "message".to_owned(),
        FieldConfig::new("room:{room}")
            .unwrap()
            .with_resolver(resolver.clone()),
    )]);
    let (engine, bus) = engine_with(fields, EngineConfig::default()).await;
    let runner = Arc::clone(&engine);
    tokio::spawn(async move { runner.run().await });
    let mut client = Client::new(&engine, Principal::user("u"));
    client
        .subscribe(&engine, MESSAGE, json!({"room": "r"}))
        .await;
    for n in 1..=5 {
        bus.publish(Arc::new(Event::new("room:r", json!({"n": n}))))
            .await
            .unwrap();
    }
    let mut texts = Vec::new();
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while texts.len() < 5 {
        assert!(
            Instant::now() < deadline,
            "only {texts:?} arrived (no overlap?)"
        );
        for frame in client.frames() {
            texts.push(
                frame["payload"]["data"]["message"]["text"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        texts,
        (1..=5).map(|n| format!("event {n}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn publish_dispatched_returns_after_local_subscribers_have_their_frames() {
    let (engine, _) = engine_with(chat_fields(), EngineConfig::default()).await;
    let runner = tokio::spawn({
        let engine = Arc::clone(&engine);
        async move { engine.run().await }
    });
    let mut alice = Client::new(&engine, Principal::user("alice"));
    alice
        .subscribe(&engine, MESSAGE, json!({"room": "lobby"}))
        .await;
    for n in 0..50 {
        let seen = engine
            .publish_dispatched(
                Event::new("room:lobby", json!({"id": n.to_string(), "text": "t"})),
                std::time::Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert!(seen);
        // No waiting: the frame is already in the outbox when the publish returns.
        let frames = alice.frames();
        assert_eq!(frames.len(), 1, "event {n}");
        assert_eq!(frames[0]["payload"]["data"]["message"]["id"], n.to_string());
    }
    // A channel without local subscribers returns once the bus took the event.
    assert!(engine
        .publish_dispatched(
            Event::new("room:empty", json!({})),
            std::time::Duration::from_secs(60)
        )
        .await
        .unwrap());
    runner.abort();
}

#[tokio::test]
async fn undeclared_fields_are_refused_unless_implicit_fields_is_on() {
    let (strict, _) = engine_with(HashMap::new(), EngineConfig::default()).await;
    let mut client = Client::new(&strict, Principal::anonymous());
    client
        .subscribe(&strict, "subscription { users { id } }", json!({}))
        .await;
    let frames = client.frames();
    assert_eq!(frames[0]["type"], "error");
    assert!(frames[0]["payload"][0]["message"]
        .as_str()
        .unwrap()
        .contains("No subscription field \"users\""));

    let config = EngineConfig {
        implicit_fields: true,
        ..EngineConfig::default()
    };
    let (engine, _) = engine_with(HashMap::new(), config).await;
    let mut client = Client::new(&engine, Principal::anonymous());
    let (_, id) = client
        .subscribe(&engine, "subscription { users { id } }", json!({}))
        .await;
    publish(
        &engine,
        Event::new("users", json!({"id": "123", "name": "Alice"})),
    )
    .await;
    assert_eq!(
        client.frames(),
        vec![json!({"id": id, "type": "next", "payload": {"data": {"users": {"id": "123"}}}})]
    );
}
