//! Queries and mutations on the socket: the engine hands them to its `OperationExecutor`
//! and queues the result as `next` + `complete` (or `error`), through real protocol state
//! machines for both protocols.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests fail loudly

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fraiseql_protocol::{
    Action, ConnectionConfig, GraphQLError, Protocol, ServerConnection, SubscriptionKey,
};
use fraiseql_subscriptions::security::Principal;
use fraiseql_subscriptions::{
    ConnectionHandle, Engine, EngineConfig, Event, ExecutionResult, FieldConfig, InMemoryBus,
    OperationExecutor, OperationKind, OperationRequest, Outbound,
};
use serde_json::{json, Value};
use tokio::sync::{Notify, Semaphore};

/// Hang guard only: every wait ends as soon as its frame is queued.
const GUARD: Duration = Duration::from_secs(30);

/// What the executor saw of one request.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    kind: OperationKind,
    operation_name: Option<String>,
    variables: Option<Value>,
    user: Option<String>,
}

/// Answers `{ echo(text) }`-style documents: `data.echo` is the `text` variable; a
/// document containing `fail` is refused, one containing `broken` gets a field error, one
/// containing `slow` waits for `release`, one containing `panic` panics.
#[derive(Debug)]
struct Echo {
    seen: Mutex<Vec<Seen>>,
    release: Notify,
    /// Gains a permit each time a `slow` execution's future is dropped before it finished:
    /// the engine cancelled it.
    cancelled: Arc<Semaphore>,
    /// Gains a permit each time a `slow` execution starts waiting.
    started: Semaphore,
}

/// Adds a permit to `cancelled` when dropped before `finished` was set.
impl Default for Echo {
    fn default() -> Self {
        Self {
            seen: Mutex::default(),
            release: Notify::new(),
            cancelled: Arc::new(Semaphore::new(0)),
            started: Semaphore::new(0),
        }
    }
}

struct CancelWatch {
    cancelled: Arc<Semaphore>,
    finished: bool,
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        if !self.finished {
            self.cancelled.add_permits(1);
        }
    }
}

#[async_trait]
impl OperationExecutor for Echo {
    async fn execute(
        &self,
        request: OperationRequest<'_>,
    ) -> Result<ExecutionResult, Vec<GraphQLError>> {
        self.seen.lock().unwrap().push(Seen {
            kind: request.kind,
            operation_name: request.operation_name.map(str::to_owned),
            variables: request.variables.map(|v| Value::Object(v.clone())),
            user: request.principal.user_id.clone(),
        });
        if request.query.contains("slow") {
            let mut watch = CancelWatch {
                cancelled: Arc::clone(&self.cancelled),
                finished: false,
            };
            let release = self.release.notified();
            self.started.add_permits(1);
            release.await;
            watch.finished = true;
        }
        assert!(!request.query.contains("panic"), "executor bug");
        if request.query.contains("fail") {
            return Err(vec![GraphQLError::new("Cannot query field \"fail\"")]);
        }
        let text = request
            .variables
            .and_then(|v| v.get("text"))
            .cloned()
            .unwrap_or(Value::Null);
        if request.query.contains("broken") {
            return Ok(ExecutionResult {
                data: json!({ "broken": null }),
                errors: vec![GraphQLError::new("broken failed")],
                extensions: None,
            });
        }
        Ok(ExecutionResult::data(json!({ "echo": text })))
    }
}

struct Client {
    protocol: Protocol,
    conn: ServerConnection,
    handle: ConnectionHandle,
    next_id: u32,
}

impl Client {
    fn new(engine: &Engine, protocol: Protocol, user: &str) -> Self {
        let now = Instant::now();
        let mut conn = ServerConnection::new(protocol, ConnectionConfig::default(), now);
        conn.handle_text(r#"{"type":"connection_init"}"#, now);
        conn.accept(None, now).unwrap();
        let _ = conn.drain_actions().count();
        let principal = Principal {
            user_id: Some(user.to_owned()),
            ..Principal::default()
        };
        Self {
            protocol,
            conn,
            handle: engine.connect(principal).unwrap(),
            next_id: 0,
        }
    }

    /// Sends `payload` in a `subscribe` (legacy: `start`), as a transport would.
    async fn send(&mut self, engine: &Engine, payload: Value) -> (SubscriptionKey, String) {
        self.next_id += 1;
        let id = format!("op{}", self.next_id);
        let kind = match self.protocol {
            Protocol::GraphqlTransportWs => "subscribe",
            Protocol::GraphqlWs => "start",
        };
        let text = json!({"id": id, "type": kind, "payload": payload});
        self.conn.handle_text(&text.to_string(), Instant::now());
        let Some(Action::Start { key, payload, .. }) = self.conn.poll_action() else {
            panic!("no start")
        };
        let _ = engine.subscribe(self.handle.id, key, &payload).await;
        (key, id)
    }

    /// The client's `complete` (legacy: `stop`) for `id`.
    async fn stop(&mut self, engine: &Engine, id: &str) {
        let kind = match self.protocol {
            Protocol::GraphqlTransportWs => "complete",
            Protocol::GraphqlWs => "stop",
        };
        let text = json!({"id": id, "type": kind});
        self.conn.handle_text(&text.to_string(), Instant::now());
        while let Some(action) = self.conn.poll_action() {
            if let Action::Stop { key, .. } = action {
                engine.unsubscribe(self.handle.id, key).await;
            }
        }
    }

    /// Waits for the next `n` frames, as the transport would send them.
    async fn frames(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let mut batch = Vec::new();
            let open = tokio::time::timeout(GUARD, self.handle.outbox.recv_batch(&mut batch, n))
                .await
                .expect("hang guard: no frame queued");
            for message in batch {
                let frame = match message {
                    Outbound::Next { key, payload } => self.conn.next(key, &payload),
                    Outbound::Complete { key } => self.conn.complete(key),
                    Outbound::Error { key, errors } => self.conn.error(key, &errors),
                    Outbound::Close { .. } => panic!("unexpected close"),
                };
                out.extend(frame.map(|f| serde_json::from_str::<Value>(&f).unwrap()));
            }
            assert!(open, "the outbox closed");
        }
        out
    }

    /// Every frame queued so far, without waiting.
    fn queued(&self) -> usize {
        let mut batch = Vec::new();
        self.handle.outbox.try_recv_batch(&mut batch, usize::MAX);
        batch.len()
    }
}

async fn engine_with(executor: Option<Arc<Echo>>) -> Engine {
    let config = EngineConfig {
        operations: executor.map(|e| e as Arc<dyn OperationExecutor>),
        ..EngineConfig::default()
    };
    let fields = HashMap::from([(
        "message".to_owned(),
        FieldConfig::new("room:{room}").unwrap(),
    )]);
    Engine::new(Arc::new(InMemoryBus::new()), fields, config)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_gets_one_next_then_complete_with_what_the_executor_returned() {
    let echo = Arc::new(Echo::default());
    let engine = engine_with(Some(Arc::clone(&echo))).await;
    let mut client = Client::new(&engine, Protocol::GraphqlTransportWs, "ann");
    let (_, id) = client
        .send(
            &engine,
            json!({"query": "query Q($text: String) { echo(text: $text) }", "operationName": "Q",
                   "variables": {"text": "hi"}}),
        )
        .await;
    assert_eq!(
        client.frames(2).await,
        vec![
            json!({"id": id, "type": "next", "payload": {"data": {"echo": "hi"}}}),
            json!({"id": id, "type": "complete"}),
        ]
    );
    assert_eq!(
        echo.seen.lock().unwrap().clone(),
        vec![Seen {
            kind: OperationKind::Query,
            operation_name: Some("Q".to_owned()),
            variables: Some(json!({"text": "hi"})),
            user: Some("ann".to_owned()),
        }]
    );
    let metrics = engine.metrics().encode_prometheus();
    assert!(
        metrics.contains(r#"fraiseql_operations_total{kind="query"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_on_the_legacy_protocol_gets_data_then_complete() {
    let echo = Arc::new(Echo::default());
    let engine = engine_with(Some(Arc::clone(&echo))).await;
    let mut client = Client::new(&engine, Protocol::GraphqlWs, "bob");
    let (_, id) = client
        .send(
            &engine,
            json!({"query": "mutation { echo(text: $text) }", "variables": {"text": 1}}),
        )
        .await;
    assert_eq!(
        client.frames(2).await,
        vec![
            json!({"id": id, "type": "data", "payload": {"data": {"echo": 1}}}),
            json!({"id": id, "type": "complete"}),
        ]
    );
    assert_eq!(echo.seen.lock().unwrap()[0].kind, OperationKind::Mutation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_errors_are_an_error_message_and_field_errors_ride_in_next() {
    let engine = engine_with(Some(Arc::new(Echo::default()))).await;
    let mut client = Client::new(&engine, Protocol::GraphqlTransportWs, "ann");
    let (_, refused) = client.send(&engine, json!({"query": "{ fail }"})).await;
    assert_eq!(
        client.frames(1).await,
        vec![
            json!({"id": refused, "type": "error", "payload": [{"message": "Cannot query field \"fail\""}]})
        ]
    );
    let (_, partial) = client.send(&engine, json!({"query": "{ broken }"})).await;
    assert_eq!(
        client.frames(2).await,
        vec![
            json!({"id": partial, "type": "next", "payload": {"data": {"broken": null}, "errors": [{"message": "broken failed"}]}}),
            json!({"id": partial, "type": "complete"}),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_executor_gives_an_internal_error_and_the_connection_goes_on() {
    let engine = engine_with(Some(Arc::new(Echo::default()))).await;
    let mut client = Client::new(&engine, Protocol::GraphqlTransportWs, "ann");
    let (_, id) = client.send(&engine, json!({"query": "{ panic }"})).await;
    let frames = client.frames(1).await;
    assert_eq!(frames[0]["id"], json!(id));
    assert_eq!(frames[0]["type"], "error");
    assert_eq!(
        frames[0]["payload"][0]["extensions"]["code"],
        "INTERNAL_SERVER_ERROR"
    );
    let (_, next) = client
        .send(
            &engine,
            json!({"query": "{ echo }", "variables": {"text": "again"}}),
        )
        .await;
    assert_eq!(
        client.frames(2).await[0],
        json!({"id": next, "type": "next", "payload": {"data": {"echo": "again"}}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_executor_a_query_is_refused_as_before() {
    let engine = engine_with(None).await;
    let mut client = Client::new(&engine, Protocol::GraphqlTransportWs, "ann");
    let (_, id) = client.send(&engine, json!({"query": "{ echo }"})).await;
    let frames = client.frames(1).await;
    assert_eq!(frames[0]["id"], json!(id));
    assert_eq!(frames[0]["type"], "error");
    let message = frames[0]["payload"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("only subscriptions are served"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_query_holds_up_no_event_and_complete_from_the_client_cancels_it() {
    let echo = Arc::new(Echo::default());
    let engine = Arc::new(engine_with(Some(Arc::clone(&echo))).await);
    let runner = Arc::clone(&engine);
    tokio::spawn(async move { runner.run().await });
    let mut client = Client::new(&engine, Protocol::GraphqlTransportWs, "ann");
    let (_, slow) = client.send(&engine, json!({"query": "{ slow }"})).await;
    // While it runs, a subscription on the same connection gets its events.
    let (_, sub) = client
        .send(
            &engine,
            json!({"query": "subscription { message(room: \"a\") { text } }"}),
        )
        .await;
    engine
        .publish(Event::new("room:a", json!({"text": "first"})))
        .await
        .unwrap();
    assert_eq!(
        client.frames(1).await,
        vec![
            json!({"id": sub, "type": "next", "payload": {"data": {"message": {"text": "first"}}}})
        ]
    );
    // The client gives up on the query: its task is dropped and nothing is sent for it.
    let _ = tokio::time::timeout(GUARD, echo.started.acquire())
        .await
        .expect("hang guard: the execution never started");
    client.stop(&engine, &slow).await;
    let _ = tokio::time::timeout(GUARD, echo.cancelled.acquire())
        .await
        .expect("hang guard: the execution was not cancelled");
    echo.release.notify_waiters();
    engine
        .publish(Event::new("room:a", json!({"text": "second"})))
        .await
        .unwrap();
    assert_eq!(
        client.frames(1).await,
        vec![
            json!({"id": sub, "type": "next", "payload": {"data": {"message": {"text": "second"}}}})
        ]
    );
    assert_eq!(client.queued(), 0, "nothing for the cancelled query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_cancels_what_the_connection_had_running() {
    let echo = Arc::new(Echo::default());
    let engine = engine_with(Some(Arc::clone(&echo))).await;
    let mut client = Client::new(&engine, Protocol::GraphqlTransportWs, "ann");
    client.send(&engine, json!({"query": "{ slow a }"})).await;
    client.send(&engine, json!({"query": "{ slow b }"})).await;
    let _ = tokio::time::timeout(GUARD, echo.started.acquire_many(2))
        .await
        .expect("hang guard: the executions never started");
    engine.disconnect(client.handle.id).await;
    let _ = tokio::time::timeout(GUARD, echo.cancelled.acquire_many(2))
        .await
        .expect("hang guard: both executions were not cancelled");
}
