//! Stream fields: values from a per-subscription source go through the subscription's
//! filter, projection and outbox; the source learns when the subscription ends.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)] // tests fail loudly

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fraiseql_protocol::{Action, ConnectionConfig, Protocol, ServerConnection};
use fraiseql_subscriptions::security::Principal;
use fraiseql_subscriptions::stream::{StreamSink, StreamSource, StreamStart};
use fraiseql_subscriptions::{Engine, EngineConfig, EventBus, FieldConfig, InMemoryBus, Outbound};
use serde_json::{json, Value};

/// Counts down from the `start` argument, then completes; keeps the sinks it was given.
#[derive(Debug, Default)]
struct Countdown {
    sinks: Mutex<Vec<StreamSink>>,
    starts: Mutex<Vec<(String, Value, Option<String>)>>,
}

impl StreamSource for Countdown {
    fn start(&self, start: StreamStart) {
        self.starts.lock().unwrap().push((
            start.field.clone(),
            Value::Object(start.arguments.clone()),
            start.principal.user_id.clone(),
        ));
        let from = start
            .arguments
            .get("start")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        self.sinks.lock().unwrap().push(start.sink.clone());
        if from == 0 {
            return; // an endless stream: the test ends it
        }
        let sink = start.sink;
        tokio::spawn(async move {
            for n in (1..=from).rev() {
                sink.emit(&json!({"n": n, "hidden": true})).unwrap();
            }
            sink.complete();
        });
    }
}

async fn engine(source: Arc<Countdown>) -> Arc<Engine> {
    let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
    let fields = HashMap::from([("countdown".to_owned(), FieldConfig::stream(source))]);
    let engine = Arc::new(
        Engine::new(bus, fields, EngineConfig::default())
            .await
            .unwrap(),
    );
    let runner = Arc::clone(&engine);
    tokio::spawn(async move { runner.run().await });
    engine
}

struct Client {
    conn: ServerConnection,
    handle: fraiseql_subscriptions::ConnectionHandle,
}

impl Client {
    fn new(engine: &Engine) -> Self {
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
            handle: engine.connect(Principal::user("ada")).unwrap(),
        }
    }

    async fn subscribe(
        &mut self,
        engine: &Engine,
        id: &str,
        query: &str,
    ) -> fraiseql_protocol::SubscriptionKey {
        let text = json!({"id": id, "type": "subscribe", "payload": {"query": query}});
        self.conn.handle_text(&text.to_string(), Instant::now());
        let Some(Action::Start { key, payload, .. }) = self.conn.poll_action() else {
            panic!("no start")
        };
        let _ = engine.subscribe(self.handle.id, key, &payload).await;
        key
    }

    /// The next `n` frames, waiting for them.
    async fn frames(&mut self, n: usize) -> Vec<Value> {
        let mut frames = Vec::new();
        let mut batch = Vec::new();
        while frames.len() < n {
            tokio::time::timeout(
                Duration::from_secs(10),
                self.handle.outbox.recv_batch(&mut batch, n),
            )
            .await
            .unwrap();
            for message in batch.drain(..) {
                let frame = match message {
                    Outbound::Next { key, payload } => self.conn.next(key, &payload),
                    Outbound::Complete { key } => self.conn.complete(key),
                    Outbound::Error { key, errors } => self.conn.error(key, &errors),
                    Outbound::Close { .. } => None,
                };
                frames.extend(frame.map(|f| serde_json::from_str::<Value>(&f).unwrap()));
            }
        }
        frames
    }
}

async fn settle(engine: &Engine, subscriptions: usize) {
    for _ in 0..500 {
        if engine.subscription_count() == subscriptions {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{} subscriptions, expected {subscriptions}",
        engine.subscription_count()
    );
}

#[tokio::test]
async fn a_stream_delivers_projected_values_then_completes_and_is_unregistered() {
    let source = Arc::new(Countdown::default());
    let engine = engine(Arc::clone(&source)).await;
    let mut client = Client::new(&engine);
    client
        .subscribe(&engine, "c", "subscription { countdown(start: 2) { n } }")
        .await;
    assert_eq!(
        client.frames(3).await,
        vec![
            json!({"id": "c", "type": "next", "payload": {"data": {"countdown": {"n": 2}}}}),
            json!({"id": "c", "type": "next", "payload": {"data": {"countdown": {"n": 1}}}}),
            json!({"id": "c", "type": "complete"}),
        ]
    );
    settle(&engine, 0).await;
    assert_eq!(
        source.starts.lock().unwrap().clone(),
        vec![(
            "countdown".to_owned(),
            json!({"start": 2}),
            Some("ada".to_owned())
        )]
    );
}

#[tokio::test]
async fn the_source_learns_when_the_client_completes_or_disconnects() {
    let source = Arc::new(Countdown::default());
    let engine = engine(Arc::clone(&source)).await;
    let mut client = Client::new(&engine);
    let key = client
        .subscribe(&engine, "a", "subscription { countdown(start: 0) { n } }")
        .await;
    client
        .subscribe(&engine, "b", "subscription { countdown(start: 0) { n } }")
        .await;
    let sinks = source.sinks.lock().unwrap().clone();
    assert!(sinks.iter().all(StreamSink::is_active));
    sinks[0].emit(&json!({"n": 7})).unwrap();
    assert_eq!(
        client.frames(1).await,
        vec![json!({"id": "a", "type": "next", "payload": {"data": {"countdown": {"n": 7}}}})]
    );
    engine.unsubscribe(client.handle.id, key).await;
    tokio::time::timeout(Duration::from_secs(10), sinks[0].stopped())
        .await
        .unwrap();
    assert!(sinks[0].emit(&json!({"n": 8})).is_err());
    assert!(sinks[1].is_active());
    engine.disconnect(client.handle.id).await;
    tokio::time::timeout(Duration::from_secs(10), sinks[1].stopped())
        .await
        .unwrap();
    assert_eq!(engine.subscription_count(), 0);
}

#[tokio::test]
async fn a_failing_stream_sends_an_error_and_is_unregistered() {
    let source = Arc::new(Countdown::default());
    let engine = engine(Arc::clone(&source)).await;
    let mut client = Client::new(&engine);
    client
        .subscribe(&engine, "x", "subscription { countdown(start: 0) }")
        .await;
    let sink = source.sinks.lock().unwrap()[0].clone();
    sink.fail("the feed broke");
    let frames = client.frames(1).await;
    assert_eq!(frames[0]["type"], "error");
    assert_eq!(frames[0]["payload"][0]["message"], "the feed broke");
    assert_eq!(
        frames[0]["payload"][0]["extensions"]["code"],
        "RESOLVER_ERROR"
    );
    settle(&engine, 0).await;
    assert_eq!(engine.metrics().snapshot().resolver_errors, 1);
}
