//! A multi-tenant chat on the engine, minus the sockets: two clients of two tenants speak the
//! graphql-transport-ws protocol through `ServerConnection`, subscribe to `message(room)`,
//! and the frames each one would receive are printed — tenant isolation, a filter, one
//! shared serialization per projection, and a refused subscribe along the way.
//!
//! Run with `cargo run -p fraiseql-subscriptions --example chat_engine`.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fraiseql_protocol::{Action, ConnectionConfig, Protocol, ServerConnection};
use fraiseql_subscriptions::filter::FilterSpec;
use fraiseql_subscriptions::metrics::DropReason;
use fraiseql_subscriptions::security::{Principal, SecurityPolicy};
use fraiseql_subscriptions::{
    ConnectionHandle, Engine, EngineConfig, Event, EventBus, FieldConfig, InMemoryBus, Outbound,
};
use serde_json::json;

type BoxError = Box<dyn std::error::Error>;

/// What a transport keeps per socket: the protocol state machine and the engine connection.
struct Client {
    name: &'static str,
    conn: ServerConnection,
    handle: ConnectionHandle,
}

impl Client {
    /// Opens a connection, acknowledges `connection_init` and registers `principal`.
    fn connect(
        engine: &Engine,
        name: &'static str,
        principal: Principal,
    ) -> Result<Self, BoxError> {
        let now = Instant::now();
        let mut conn = ServerConnection::new(
            Protocol::GraphqlTransportWs,
            ConnectionConfig::default(),
            now,
        );
        conn.handle_text(r#"{"type":"connection_init"}"#, now);
        // A real transport runs its authenticator on Action::Authenticate; here the
        // principal is given.
        conn.accept(None, now)?;
        for action in conn.drain_actions() {
            if let Action::Send(frame) = action {
                println!("{name:<5} <- {frame}");
            }
        }
        // Refused when the user already holds the most connections allowed: close with 4403.
        let handle = engine.connect(principal)?;
        Ok(Self { name, conn, handle })
    }

    /// Feeds a client text frame to the protocol and hands each `Start` to the engine.
    async fn send(&mut self, engine: &Engine, text: &str) {
        println!("{:<5} -> {text}", self.name);
        self.conn.handle_text(text, Instant::now());
        while let Some(action) = self.conn.poll_action() {
            match action {
                Action::Start { key, payload, .. } => {
                    // On failure the engine also queues the `error` message for this key.
                    let _ = engine.subscribe(self.handle.id, key, &payload).await;
                }
                Action::Stop { key, .. } => engine.unsubscribe(self.handle.id, key).await,
                Action::Send(frame) => println!("{:<5} <- {frame}", self.name),
                _ => {}
            }
        }
    }

    /// Turns everything waiting in the outbox into frames, as the transport's writer does;
    /// stops once the outbox has been idle for a moment.
    async fn drain(&mut self) {
        let mut batch = Vec::new();
        while let Ok(true) = tokio::time::timeout(
            Duration::from_millis(50),
            self.handle.outbox.recv_batch(&mut batch, 64),
        )
        .await
        {
            for message in batch.drain(..) {
                let frame = match message {
                    Outbound::Next { key, payload } => self.conn.next(key, &payload),
                    Outbound::Complete { key } => self.conn.complete(key),
                    Outbound::Error { key, errors } => self.conn.error(key, &errors),
                    Outbound::Close { code, reason } => {
                        self.conn.close(code, &reason);
                        println!("{:<5} <- (close {} {reason})", self.name, code.as_u16());
                        None
                    }
                };
                if let Some(frame) = frame {
                    println!("{:<5} <- {frame}", self.name);
                }
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    // One root field, `message(room)`, listening on the channel "room:{room}", hiding
    // messages flagged as deleted (a filter in its JSON form, as Python would pass it).
    let hide_deleted: FilterSpec =
        serde_json::from_value(json!({"path": "deleted", "op": "ne", "value": true}))?;
    let fields = HashMap::from([(
        "message".to_owned(),
        FieldConfig::new("room:{room}")?.with_filter(hide_deleted),
    )]);
    let config = EngineConfig {
        security: SecurityPolicy {
            multi_tenant: true,
            ..SecurityPolicy::default()
        },
        ..EngineConfig::default()
    };
    let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
    let engine = Arc::new(Engine::new(bus, fields, config).await?);
    let runner = {
        let engine = Arc::clone(&engine);
        tokio::spawn(async move { engine.run().await })
    };

    let mut alice = Client::connect(
        &engine,
        "alice",
        Principal::user("alice").with_tenant("acme"),
    )?;
    let mut bob = Client::connect(&engine, "bob", Principal::user("bob").with_tenant("globex"))?;
    alice
        .send(
            &engine,
            r#"{"id":"a1","type":"subscribe","payload":{"query":"subscription($room: String!) { message(room: $room) { id text } }","variables":{"room":"lobby"}}}"#,
        )
        .await;
    bob.send(
        &engine,
        r#"{"id":"b1","type":"subscribe","payload":{"query":"subscription { message(room: \"lobby\") { id from: author text } }"}}"#,
    )
    .await;
    bob.send(
        &engine,
        r#"{"id":"b2","type":"subscribe","payload":{"query":"subscription { typing(room: \"lobby\") { who } }"}}"#,
    )
    .await;
    bob.drain().await;

    println!("\npublish: acme's message, globex's deleted message, a global announcement\n");
    engine
        .publish(
            Event::new(
                "room:lobby",
                json!({"id": "1", "author": "alice", "text": "hi from acme"}),
            )
            .with_tenant("acme"),
        )
        .await?;
    engine
        .publish(
            Event::new(
                "room:lobby",
                json!({"id": "2", "author": "bob", "text": "oops", "deleted": true}),
            )
            .with_tenant("globex"),
        )
        .await?;
    engine
        .publish(
            Event::new(
                "room:lobby",
                json!({"id": "3", "author": "ops", "text": "maintenance at noon"}),
            )
            .global(),
        )
        .await?;

    alice.drain().await;
    bob.drain().await;

    engine.disconnect(alice.handle.id).await;
    engine.disconnect(bob.handle.id).await;
    runner.abort();
    let m = engine.metrics().snapshot();
    println!(
        "\nmetrics: published {}, delivered {}, dropped {} (tenant {}, filter {}), subscribe errors {}",
        m.events_published,
        m.events_delivered,
        m.events_dropped,
        engine
            .metrics()
            .dropped_count(DropReason::Tenant),
        engine
            .metrics()
            .dropped_count(DropReason::Filter),
        m.subscribe_errors,
    );
    Ok(())
}
