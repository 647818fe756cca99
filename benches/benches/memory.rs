//! Memory per idle subscription, measured as resident-set growth in a process that does
//! nothing else first (freed memory would otherwise be reused and hide the cost).
//! Run: `cargo bench -p fraiseql-benches --bench memory`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // bench setup fails loudly

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use fraiseql_benches::{acknowledged_connection, start_subscription};
use fraiseql_subscriptions::limits::LimitsConfig;
use fraiseql_subscriptions::security::Principal;
use fraiseql_subscriptions::{Engine, EngineConfig, EventBus, FieldConfig, InMemoryBus};
use serde_json::json;

fn unlimited() -> LimitsConfig {
    LimitsConfig {
        max_subscriptions_per_connection: None,
        max_subscriptions_per_user: None,
        max_connections_per_user: None,
        outbox_capacity: 1024,
        subscribe_rate_per_user: None,
        delivery_rate_per_subscription: None,
        message_rate_per_connection: None,
    }
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    // Both setups stay alive until the end: freed memory would be reused by the next
    // setup and hide its cost.
    let subscribers = 100_000;
    // All on one connection: what one more subscription costs by itself.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
    let fields = HashMap::from([(
        "message".to_owned(),
        FieldConfig::new("room:{room}").unwrap(),
    )]);
    let config = EngineConfig {
        limits: unlimited(),
        ..EngineConfig::default()
    };
    let engine = runtime.block_on(Engine::new(bus, fields, config)).unwrap();
    let handle = engine.connect(Principal::user("one")).unwrap();
    let now = Instant::now();
    let mut conn = acknowledged_connection(now);
    let query =
        "subscription($room: String!) { message(room: $room) { id text author { id name } } }";
    let variables = json!({"room": "lobby"});
    let before = rss_bytes();
    for n in 0..subscribers {
        let (key, request) =
            start_subscription(&mut conn, &n.to_string(), query, &variables, now).unwrap();
        runtime
            .block_on(engine.subscribe(handle.id, key, &request))
            .unwrap();
    }
    let after = rss_bytes();
    println!(
        "memory: {subscribers} idle subscriptions on one connection grew RSS by {} MiB: {} bytes \
         per subscription (engine registry + protocol bookkeeping)",
        after.saturating_sub(before) / (1024 * 1024),
        after.saturating_sub(before) / subscribers
    );
    // One connection (engine connection + protocol state machine) per subscription.
    let before = rss_bytes();
    let mut clients = Vec::with_capacity(subscribers);
    for n in 0..subscribers {
        let handle = engine.connect(Principal::user(format!("user{n}"))).unwrap();
        let mut conn = acknowledged_connection(now);
        let (key, request) = start_subscription(&mut conn, "1", query, &variables, now).unwrap();
        runtime
            .block_on(engine.subscribe(handle.id, key, &request))
            .unwrap();
        clients.push((conn, handle));
    }
    let after = rss_bytes();
    println!(
        "memory: {subscribers} idle subscriptions, each on its own connection (engine connection, \
         outbox, protocol state machine) grew RSS by {} MiB: {} bytes per subscription",
        after.saturating_sub(before) / (1024 * 1024),
        after.saturating_sub(before) / subscribers
    );
    drop(clients);
    drop(engine);
}
