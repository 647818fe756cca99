//! Delivery through Redis between two buses (two "nodes", each with its own connections):
//! sustained events/s, and the latency added over the in-memory bus at 1 000 events/s, for
//! both modes. Needs Redis on 127.0.0.1:6379 (`REDIS_URL` to change it).
//!
//! `cargo bench -p fraiseql-eventbus-redis --bench redis_delivery`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use fraiseql_eventbus_redis::{RedisBus, RedisBusConfig, RedisMode};
use fraiseql_subscriptions::{Event, EventBus, InMemoryBus};
use serde_json::json;

const THROUGHPUT_EVENTS: u64 = 100_000;
const PUBLISHERS: u64 = 16;
const LATENCY_EVENTS: u64 = 3_000;

fn url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn pair(mode: RedisMode, prefix: &str) -> (Arc<dyn EventBus>, Arc<dyn EventBus>) {
    let config = || {
        RedisBusConfig::from_url(&url())
            .unwrap()
            .with_mode(mode)
            .with_prefix(prefix)
            .with_stream_max_len(200_000)
    };
    let a = RedisBus::connect(config()).await.unwrap();
    let b = RedisBus::connect(config()).await.unwrap();
    (Arc::new(a), Arc::new(b))
}

/// Events/s from `PUBLISHERS` concurrent publishers on `a` until `b` has them all.
async fn throughput(a: Arc<dyn EventBus>, b: &Arc<dyn EventBus>) -> f64 {
    let mut stream = b.subscribe(&["bench:t".to_owned()]).await.unwrap();
    let start = Instant::now();
    for p in 0..PUBLISHERS {
        let a = Arc::clone(&a);
        tokio::spawn(async move {
            for n in 0..THROUGHPUT_EVENTS / PUBLISHERS {
                a.publish(Arc::new(Event::new("bench:t", json!({"p": p, "n": n}))))
                    .await
                    .unwrap();
            }
        });
    }
    let mut got = 0;
    let mut batch = Vec::new();
    while got < THROUGHPUT_EVENTS {
        if stream.recv().await.is_none() {
            break;
        }
        got += 1 + stream.try_recv_many(&mut batch, 4096) as u64;
        batch.clear();
    }
    got as f64 / start.elapsed().as_secs_f64()
}

/// p50 and p99 publish-to-receive latency at 1 000 events/s, in microseconds.
async fn latency(a: Arc<dyn EventBus>, b: &Arc<dyn EventBus>) -> (f64, f64) {
    let mut stream = b.subscribe(&["bench:l".to_owned()]).await.unwrap();
    let base = Instant::now();
    let publisher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        for _ in 0..LATENCY_EVENTS {
            tick.tick().await;
            let sent = base.elapsed().as_nanos() as u64;
            a.publish(Arc::new(Event::new("bench:l", json!({"sent": sent}))))
                .await
                .unwrap();
        }
    });
    let mut samples = Vec::with_capacity(LATENCY_EVENTS as usize);
    for _ in 0..LATENCY_EVENTS {
        let event = stream.recv().await.unwrap();
        let now = base.elapsed().as_nanos() as u64;
        let sent = event.data().value().unwrap()["sent"].as_u64().unwrap();
        samples.push((now.saturating_sub(sent)) as f64 / 1000.0);
    }
    publisher.await.unwrap();
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    (at(0.50), at(0.99))
}

async fn cleanup(prefix: &str) {
    let _ = std::process::Command::new("redis-cli")
        .args(["--scan", "--pattern", &format!("{prefix}*")])
        .output()
        .map(|out| {
            for key in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = std::process::Command::new("redis-cli")
                    .args(["DEL", key])
                    .output();
            }
        });
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let memory: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
        let (m50, m99) = latency(Arc::clone(&memory), &memory).await;
        println!("memory bus: p50 {m50:.0} us, p99 {m99:.0} us at 1000 events/s");
        println!("| mode | events/s sustained | p50 | p99 | added p50 | added p99 |");
        println!("|---|---|---|---|---|---|");
        for mode in [RedisMode::PubSub, RedisMode::Streams] {
            let prefix = format!("fraiseql-bench:{}:", uuid::Uuid::now_v7().simple());
            let (a, b) = pair(mode, &prefix).await;
            let rate = throughput(Arc::clone(&a), &b).await;
            let (p50, p99) = latency(a, &b).await;
            println!(
                "| {mode} | {rate:.0} | {p50:.0} us | {p99:.0} us | {:.0} us | {:.0} us |",
                p50 - m50,
                p99 - m99
            );
            cleanup(&prefix).await;
        }
    });
}
