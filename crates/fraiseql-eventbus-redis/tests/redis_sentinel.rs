//! The Redis bus behind Redis Sentinel (`redis-sentinel://...?service=`), on a primary, a
//! replica and three sentinels the test starts itself: two nodes, a subscriber on one and a
//! publisher on the other, while the primary is killed (the sentinels promote the replica)
//! and then comes back. Streams mode loses nothing Redis still holds, pubsub mode resumes.
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
use fred::prelude::{Builder, ClientLike, StreamsInterface, Value};
use redis_topology::traffic::{check, numbers_of, Traffic};
use redis_topology::{available, SentinelSet, SERVICE};

const PREFIX: &str = "fraiseql-sentinel-test:";

async fn node(set: &SentinelSet, mode: RedisMode) -> Arc<RedisBus> {
    let config = RedisBusConfig::from_url(&set.url())
        .unwrap()
        .with_mode(mode)
        .with_prefix(PREFIX)
        .with_reconnect_backoff(Duration::from_millis(20), Duration::from_millis(500))
        .with_command_timeout(Duration::from_secs(2));
    assert_eq!(
        config.topology(),
        &RedisTopology::Sentinel {
            service: SERVICE.to_owned()
        }
    );
    Arc::new(RedisBus::connect(config).await.unwrap())
}

/// Every stored event's number in `channel`'s stream, read from the primary now.
async fn stored(set: &SentinelSet, channel: &str) -> Vec<u64> {
    let url = format!("redis://127.0.0.1:{}", set.primary_port());
    let client = Builder::from_config(fred::types::config::Config::from_url(&url).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    let entries: Vec<(String, std::collections::HashMap<String, Value>)> = client
        .xrange(format!("{PREFIX}{channel}"), "-", "+", None)
        .await
        .unwrap();
    let _ = client.quit().await;
    numbers_of(
        entries
            .iter()
            .map(|(_, fields)| fields["e"].as_bytes().unwrap()),
    )
}

async fn failover_heals(mode: RedisMode) {
    let mut set = SentinelSet::start();
    let channels: Vec<String> = (0..4).map(|i| format!("room:{i}")).collect();
    let (a, b) = (node(&set, mode).await, node(&set, mode).await);
    let traffic = Traffic::start(Arc::clone(&b), Arc::clone(&a), channels.clone()).await;
    traffic.wait_fed("before the failover").await;

    set.fail_over();
    traffic.wait_fed("after the failover").await;

    // The old primary comes back; the sentinels make it a replica of the new one.
    set.primary.restart();
    traffic.wait_fed("after the old primary came back").await;

    let failed = traffic
        .failed_publishes
        .load(std::sync::atomic::Ordering::Relaxed);
    let tallies = traffic.finish().await;
    for channel in &channels {
        let stored = match mode {
            RedisMode::Streams => Some(stored(&set, channel).await),
            _ => None,
        };
        check(mode, channel, &tallies[channel], failed, stored);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_delivery_resumes_after_the_sentinels_fail_over() {
    if !available("sentinel pubsub failover") {
        return;
    }
    failover_heals(RedisMode::PubSub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_lose_nothing_redis_holds_across_a_sentinel_failover() {
    if !available("sentinel streams failover") {
        return;
    }
    failover_heals(RedisMode::Streams).await;
}
