//! The Redis bus on a Redis Cluster the test starts itself (3 primaries, 3 replicas, local
//! `redis-server` processes on private ports): two nodes, a subscriber on one and a
//! publisher on the other, while a primary is killed, a slot migrates and a node restarts.
//! Counts lost, duplicated and reordered events per mode: streams mode loses nothing Redis
//! still holds, pubsub mode resumes delivery on every channel.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod redis_topology;

use std::sync::Arc;
use std::time::Duration;

use fraiseql_eventbus_redis::{RedisBus, RedisBusConfig, RedisMode, RedisTopology};
use fraiseql_subscriptions::{Event, EventBus as _};
use fred::prelude::{Builder, ClientLike, StreamsInterface, Value};
use redis_topology::traffic::{check, numbers_of, spread_channels, Traffic};
use redis_topology::{available, Cluster};

const PREFIX: &str = "fraiseql-cluster-test:";

async fn node(cluster: &Cluster, mode: RedisMode) -> Arc<RedisBus> {
    let config = RedisBusConfig::from_url(&cluster.url())
        .unwrap()
        .with_mode(mode)
        .with_prefix(PREFIX)
        .with_reconnect_backoff(Duration::from_millis(20), Duration::from_millis(500))
        .with_command_timeout(Duration::from_secs(2))
        .with_topology_check(Duration::from_millis(200));
    assert_eq!(config.topology(), &RedisTopology::Cluster);
    Arc::new(RedisBus::connect(config).await.unwrap())
}

/// The slot of a channel's key (`prefix{channel}`): the channel's own.
fn slot_of(channel: &str) -> u16 {
    fred::util::redis_keyslot(channel.as_bytes())
}

/// Every stored event's number in `channel`'s stream.
async fn stored(cluster: &Cluster, channel: &str) -> Vec<u64> {
    let client = Builder::from_config(
        fred::types::config::Config::from_url(&format!(
            "redis-cluster://127.0.0.1:{}",
            cluster.nodes.iter().find(|n| n.is_running()).unwrap().port
        ))
        .unwrap(),
    )
    .build()
    .unwrap();
    client.init().await.unwrap();
    let key = format!("{PREFIX}{{{channel}}}");
    let entries: Vec<(String, std::collections::HashMap<String, Value>)> =
        client.xrange(key, "-", "+", None).await.unwrap();
    let _ = client.quit().await;
    numbers_of(
        entries
            .iter()
            .map(|(_, fields)| fields["e"].as_bytes().unwrap()),
    )
}

async fn failures_heal(mode: RedisMode) {
    let mut cluster = Cluster::start(3);
    let channels = spread_channels(2, |c| cluster.owner_of(slot_of(c)).port);
    let (a, b) = (node(&cluster, mode).await, node(&cluster, mode).await);
    let traffic = Traffic::start(Arc::clone(&b), Arc::clone(&a), channels.clone()).await;
    traffic.wait_fed("before any failure").await;

    // A primary dies; its replica takes over its slots.
    let killed = cluster.fail_over(slot_of(&channels[0]));
    traffic.wait_fed("after the failover").await;

    // A slot with traffic moves to another primary.
    cluster.migrate_slot(slot_of(&channels[1]));
    traffic.wait_fed("after the slot migration").await;

    // The dead primary comes back (as a replica of the one that replaced it).
    cluster.process(killed).restart();
    cluster.wait_healthy();
    traffic.wait_fed("after the node restarted").await;

    let failed = traffic
        .failed_publishes
        .load(std::sync::atomic::Ordering::Relaxed);
    let tallies = traffic.finish().await;
    for channel in &channels {
        let stored = match mode {
            RedisMode::Streams => Some(stored(&cluster, channel).await),
            _ => None,
        };
        check(mode, channel, &tallies[channel], failed, stored);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_delivery_resumes_after_a_failover_a_slot_migration_and_a_restart() {
    if !available("cluster pubsub failures") {
        return;
    }
    failures_heal(RedisMode::PubSub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_lose_nothing_redis_holds_across_a_failover_a_slot_migration_and_a_restart() {
    if !available("cluster streams failures") {
        return;
    }
    failures_heal(RedisMode::Streams).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cross_nodes_in_order_on_every_shard_in_both_modes() {
    if !available("cluster cross-node order") {
        return;
    }
    let cluster = Cluster::start(3);
    let channels = spread_channels(2, |c| cluster.owner_of(slot_of(c)).port);
    for mode in [RedisMode::PubSub, RedisMode::Streams] {
        let (a, b) = (node(&cluster, mode).await, node(&cluster, mode).await);
        let mut stream = b.subscribe(&channels).await.unwrap();
        let started = std::time::Instant::now();
        for n in 1..=100_u64 {
            for channel in &channels {
                a.publish(Arc::new(Event::new(
                    channel.clone(),
                    serde_json::json!({ "n": n }),
                )))
                .await
                .unwrap();
            }
        }
        eprintln!("{mode}: published in {:?}", started.elapsed());
        let mut last: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        for _ in 0..100 * channels.len() {
            let event = tokio::time::timeout(Duration::from_secs(30), stream.recv())
                .await
                .expect("hang guard: an event is missing")
                .unwrap();
            let n = event.data().value().unwrap()["n"].as_u64().unwrap();
            let before = last.insert(event.channel().to_owned(), n).unwrap_or(0);
            assert_eq!(
                n,
                before + 1,
                "{mode} {}: {n} after {before}",
                event.channel()
            );
        }
        eprintln!("{mode}: received in {:?}", started.elapsed());
        assert_eq!(b.stats().events_delivered, 100 * channels.len() as u64);
    }
}
