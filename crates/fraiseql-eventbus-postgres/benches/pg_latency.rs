//! Row INSERT → frame in a subscriber's outbox, through PostgreSQL.
//!
//! A table watched by `fraiseql_watch_table`, a `PostgresBus`, an `Engine` with one
//! graphql-transport-ws subscriber (`subscription { orders { operation new { id } } }`):
//! each frame is encoded by the protocol's `ServerConnection` exactly as the server writes
//! it to the socket (the socket write itself is not included).
//!
//! - latency: rows inserted one per statement (autocommit) at a fixed rate; measured from
//!   just before the INSERT is sent to the frame being encoded, so it includes the INSERT's
//!   own round trip and commit;
//! - throughput: rows inserted by `INSERT ... SELECT generate_series` in batches of 1000
//!   from two connections; events/s = rows / (first INSERT sent → last frame encoded).
//!
//! `cargo bench -p fraiseql-eventbus-postgres --bench pg_latency [-- RATE COUNT TOTAL]`
//! (defaults 500 changes/s, 5000 changes, 100 000 rows). Needs PostgreSQL
//! (`FRAISEQL_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/test).
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // a benchmark program: prints its figures, fails loudly

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fraiseql_eventbus_postgres::tokio_postgres::{self, NoTls};
use fraiseql_eventbus_postgres::{PostgresBus, PostgresBusConfig};
use fraiseql_protocol::{Action, ConnectionConfig, Protocol, ServerConnection};
use fraiseql_subscriptions::security::Principal;
use fraiseql_subscriptions::{Engine, EngineConfig, FieldConfig, Outbound};
use tokio::sync::mpsc;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rate = args.first().copied().unwrap_or(500);
    let count = args.get(1).copied().unwrap_or(5000);
    let total = args.get(2).copied().unwrap_or(100_000);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(rate, count, total));
}

async fn pg() -> Option<tokio_postgres::Client> {
    let url = std::env::var("FRAISEQL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    match tokio_postgres::connect(&url, NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Some(client)
        }
        Err(err) => {
            println!(
                "PostgreSQL is not reachable ({err}); start it with: \
                 pg_ctlcluster $(ls /etc/postgresql) main start"
            );
            None
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn run(rate: u64, count: u64, total: u64) {
    let Some(admin) = pg().await else { return };
    let url = std::env::var("FRAISEQL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("fqb_{}", std::process::id());
    let config = PostgresBusConfig::from_url(&url)
        .unwrap()
        .with_schema(&schema)
        .with_prefix("fqb_")
        .with_retention_max_age(None)
        .with_retention_max_count(None)
        .with_stream_capacity(65_536);
    let bus = Arc::new(PostgresBus::connect(config).await.unwrap());
    admin
        .batch_execute(&format!(
            "CREATE TABLE {schema}.orders (id bigint PRIMARY KEY, total int); \
             SELECT {schema}.fraiseql_watch_table('{schema}.orders', 'orders');"
        ))
        .await
        .unwrap();
    let mut fields = HashMap::new();
    fields.insert("orders".to_owned(), FieldConfig::new("orders").unwrap());
    let mut engine_config = EngineConfig::default();
    engine_config.limits.outbox_capacity = 1 << 20;
    let engine = Arc::new(
        Engine::new(bus.clone(), fields, engine_config)
            .await
            .unwrap(),
    );
    tokio::spawn({
        let engine = Arc::clone(&engine);
        async move { engine.run().await }
    });

    // One graphql-transport-ws subscriber, frames encoded as the server does.
    let now = Instant::now();
    let mut conn = ServerConnection::new(
        Protocol::GraphqlTransportWs,
        ConnectionConfig::default(),
        now,
    );
    conn.handle_text(r#"{"type":"connection_init"}"#, now);
    conn.accept(None, now).unwrap();
    let _ = conn.drain_actions().count();
    let handle = engine.connect(Principal::anonymous()).unwrap();
    conn.handle_text(
        r#"{"id":"o","type":"subscribe","payload":{"query":"subscription { orders { operation new { id } } }"}}"#,
        Instant::now(),
    );
    let Some(Action::Start { key, payload, .. }) = conn.poll_action() else {
        panic!("no start")
    };
    engine.subscribe(handle.id, key, &payload).await.unwrap();

    // Receiver: (row id, when its frame was encoded).
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(i64, Instant)>();
    let outbox = Arc::clone(&handle.outbox);
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while outbox.recv_batch(&mut batch, 1024).await {
            for message in batch.drain(..) {
                if let Outbound::Next { key, payload } = message {
                    let frame = conn.next(key, &payload).unwrap();
                    let at = Instant::now();
                    let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
                    let id = value["payload"]["data"]["orders"]["new"]["id"]
                        .as_i64()
                        .unwrap();
                    let _ = seen_tx.send((id, at));
                }
            }
        }
    });

    // Warm up (and make sure the subscription is live): probe rows until one arrives.
    for n in 1.. {
        admin
            .execute(
                &format!("INSERT INTO {schema}.orders VALUES ({}, 0)", -n),
                &[],
            )
            .await
            .unwrap();
        if tokio::time::timeout(Duration::from_millis(200), seen_rx.recv())
            .await
            .is_ok()
        {
            break;
        }
        assert!(n < 100, "no event arrived");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    while seen_rx.try_recv().is_ok() {}

    // Latency at a fixed rate (open loop).
    let insert = admin
        .prepare(&format!("INSERT INTO {schema}.orders VALUES ($1, 1)"))
        .await
        .unwrap();
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut sent_at = HashMap::with_capacity(count as usize);
    for i in 0..count {
        tokio::time::sleep_until(start + period * u32::try_from(i).unwrap()).await;
        let id = i64::try_from(i).unwrap() + 1;
        sent_at.insert(id, Instant::now());
        admin.execute(&insert, &[&id]).await.unwrap();
    }
    let mut latencies = Vec::with_capacity(count as usize);
    while latencies.len() < count as usize {
        let (id, at) = tokio::time::timeout(Duration::from_secs(30), seen_rx.recv())
            .await
            .expect("frames stopped")
            .unwrap();
        if let Some(sent) = sent_at.get(&id) {
            latencies.push(at.duration_since(*sent));
        }
    }
    let achieved = count as f64 / start.elapsed().as_secs_f64();
    latencies.sort();
    println!(
        "latency  {count} changes at {rate}/s (achieved {achieved:.0}/s): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );

    // Sustained throughput: batched inserts from two connections.
    let second = pg().await.unwrap();
    let base = 1_000_000_i64;
    let batch = 1000_i64;
    let batches = i64::try_from(total).unwrap() / batch;
    let started = Instant::now();
    let insert_batches = |client: tokio_postgres::Client, parity: i64| {
        let schema = schema.clone();
        async move {
            let mut b = parity;
            while b < batches {
                let from = base + b * batch;
                client
                    .batch_execute(&format!(
                        "INSERT INTO {schema}.orders SELECT g, 2 FROM generate_series({from}, {}) g",
                        from + batch - 1
                    ))
                    .await
                    .unwrap();
                b += 2;
            }
            client
        }
    };
    let one = tokio::spawn(insert_batches(admin, 0));
    let two = tokio::spawn(insert_batches(second, 1));
    let mut received = 0_i64;
    while received < batches * batch {
        let (id, _) = tokio::time::timeout(Duration::from_secs(60), seen_rx.recv())
            .await
            .expect("frames stopped")
            .unwrap();
        if id >= base {
            received += 1;
        }
    }
    let elapsed = started.elapsed();
    let admin = one.await.unwrap();
    let _ = two.await;
    println!(
        "throughput  {} rows in {:.2} s: {:.0} events/s (row inserted -> frame encoded)",
        received,
        elapsed.as_secs_f64(),
        received as f64 / elapsed.as_secs_f64()
    );
    drop(engine);
    drop(bus);
    let _ = admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await;
}
