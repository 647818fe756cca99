//! Engine dispatch: one event to N subscribers on one channel, with one shared projection,
//! with 100 distinct projections, with filters, with every security check on, and through a
//! resolver (an identity resolver in Rust: what the engine's resolver path costs besides the
//! resolver itself). Only the dispatch is timed; outboxes are drained between iterations,
//! outside the measurement.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // bench setup fails loudly

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fraiseql_benches::{acknowledged_connection, start_subscription};
use fraiseql_protocol::ServerConnection;
use fraiseql_subscriptions::filter::{FilterOp, FilterSpec};
use fraiseql_subscriptions::limits::LimitsConfig;
use fraiseql_subscriptions::security::{Principal, SecurityPolicy};
use fraiseql_subscriptions::{
    ConnectionHandle, Engine, EngineConfig, Event, EventBus, FieldConfig, InMemoryBus, Outbound,
    Resolved, Resolver, ResolverError,
};
use serde_json::json;

#[derive(Clone, Copy)]
enum Scenario {
    SharedProjection,
    DistinctProjections,
    Filtered,
    AllSecurity,
    Resolved,
}

/// Returns the event's data: the resolver path with nothing in the resolver.
#[derive(Debug)]
struct Identity;

#[async_trait::async_trait]
impl Resolver for Identity {
    async fn resolve(
        &self,
        event: &Arc<Event>,
        _field: &str,
        _arguments: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Resolved, ResolverError> {
        let data = event.data().value().map_err(|e| ResolverError {
            message: e.to_string(),
        })?;
        Ok(Resolved::Value(data.clone()))
    }
}

struct Setup {
    runtime: tokio::runtime::Runtime,
    engine: Arc<Engine>,
    clients: Vec<(ServerConnection, ConnectionHandle)>,
    event: Arc<Event>,
}

fn build(scenario: Scenario, subscribers: usize) -> Setup {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut field = FieldConfig::new("room:{room}").unwrap();
    if matches!(scenario, Scenario::Filtered) {
        field = field.with_filter(FilterSpec::all([
            FilterSpec::constant("priority", FilterOp::Gte, json!(1)),
            FilterSpec::constant("kind", FilterOp::In, json!(["chat", "system"])),
        ]));
    }
    if matches!(scenario, Scenario::Resolved) {
        field = field.with_resolver(Arc::new(Identity));
    }
    let mut config = EngineConfig {
        limits: unlimited(16),
        ..EngineConfig::default()
    };
    if matches!(scenario, Scenario::AllSecurity) {
        config.security = SecurityPolicy {
            multi_tenant: true,
            user_arguments: vec!["userId".into()],
            ..SecurityPolicy::default()
        };
    }
    let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
    let fields = HashMap::from([("message".to_owned(), field)]);
    let engine = Arc::new(runtime.block_on(Engine::new(bus, fields, config)).unwrap());
    let now = Instant::now();
    let mut clients = Vec::with_capacity(subscribers);
    for n in 0..subscribers {
        let principal = Principal::user(format!("user{n}"))
            .with_tenant("acme")
            .with_roles(["member"]);
        let handle = engine.connect(principal).unwrap();
        let mut conn = acknowledged_connection(now);
        let alias = if matches!(scenario, Scenario::DistinctProjections) {
            format!("m{}", n % 100)
        } else {
            "message".to_owned()
        };
        let query = format!("subscription($room: String!) {{ {alias}: message(room: $room) {{ id text author {{ id name }} }} }}");
        let (key, request) =
            start_subscription(&mut conn, "1", &query, &json!({"room": "lobby"}), now).unwrap();
        runtime
            .block_on(engine.subscribe(handle.id, key, &request))
            .unwrap();
        clients.push((conn, handle));
    }
    let mut event = Event::new(
        "room:lobby",
        json!({"id": "42", "text": "hello everyone", "kind": "chat", "priority": 2,
               "author": {"id": "u1", "name": "Ann", "email": "ann@example.com"},
               "createdAt": "2026-11-22T10:00:00Z", "edited": false, "reactions": [1, 2, 3]}),
    );
    if matches!(scenario, Scenario::AllSecurity) {
        event = event
            .with_tenant("acme")
            .with_audience(fraiseql_subscriptions::Audience::roles(["member"]));
    }
    Setup {
        runtime,
        engine,
        clients,
        event: Arc::new(event),
    }
}

/// No caps or rate limits: the benches measure dispatch, not the limiters.
fn unlimited(outbox_capacity: usize) -> LimitsConfig {
    LimitsConfig {
        max_subscriptions_per_connection: None,
        max_subscriptions_per_user: None,
        max_connections_per_user: None,
        outbox_capacity,
        subscribe_rate_per_user: None,
        delivery_rate_per_subscription: None,
        message_rate_per_connection: None,
    }
}

fn drain(setup: &Setup) {
    let mut batch: Vec<Outbound> = Vec::new();
    for (_, handle) in &setup.clients {
        batch.clear();
        handle.outbox.try_recv_batch(&mut batch, usize::MAX);
    }
}

fn time_dispatch(setup: &Setup, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        setup
            .runtime
            .block_on(setup.engine.dispatch(black_box(&setup.event)));
        total += start.elapsed();
        drain(setup);
    }
    total
}

fn one_event_to_n_subscribers(c: &mut Criterion) {
    let mut group = c.benchmark_group("dispatch/one_event");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for subscribers in [100_usize, 1_000, 10_000, 100_000] {
        let setup = build(Scenario::SharedProjection, subscribers);
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_with_input(
            BenchmarkId::new("shared_projection", subscribers),
            &setup,
            |b, setup| {
                b.iter_custom(|iters| time_dispatch(setup, iters));
            },
        );
    }
    for (name, scenario) in [
        ("distinct_projections_100", Scenario::DistinctProjections),
        ("filtered", Scenario::Filtered),
        ("all_security_checks", Scenario::AllSecurity),
    ] {
        let setup = build(scenario, 10_000);
        group.throughput(Throughput::Elements(10_000));
        group.bench_with_input(BenchmarkId::new(name, 10_000), &setup, |b, setup| {
            b.iter_custom(|iters| time_dispatch(setup, iters));
        });
    }
    // One resolver group (every subscriber has the same field and arguments), against
    // shared_projection at the same sizes.
    for subscribers in [1_usize, 1_000, 10_000] {
        let setup = build(Scenario::Resolved, subscribers);
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_with_input(
            BenchmarkId::new("one_resolver_group", subscribers),
            &setup,
            |b, setup| {
                b.iter_custom(|iters| time_dispatch(setup, iters));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, one_event_to_n_subscribers);
criterion_main!(benches);
