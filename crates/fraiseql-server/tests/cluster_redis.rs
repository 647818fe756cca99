//! Two `fraiseql-server` processes sharing one Redis (`--bus redis://...`), or a Redis Cluster
//! the test starts (`--bus redis-cluster://...`): an event POSTed to one reaches a WebSocket
//! subscriber of the other, in order, in both bus modes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
// The Redis bus crate's harness: local `redis-server` processes forming a cluster.
#[path = "../../fraiseql-eventbus-redis/tests/redis_topology/mod.rs"]
mod redis_topology;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{http, start_server_process, Client, Seen, ServerProcess};
use serde_json::{json, Value};

/// Whether Redis answers on 127.0.0.1:6379. When it does not: fails under `CI=true`,
/// otherwise says how to start it and the test skips.
fn redis_available() -> bool {
    let answer = (|| -> std::io::Result<bool> {
        let addr = "127.0.0.1:6379".parse().map_err(std::io::Error::other)?;
        let mut socket = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        socket.write_all(b"PING\r\n")?;
        let mut buf = [0_u8; 16];
        let n = socket.read(&mut buf)?;
        Ok(buf[..n].starts_with(b"+PONG"))
    })();
    match answer {
        Ok(true) => true,
        other => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "Redis at 127.0.0.1:6379 is required when CI=true: {other:?}"
            );
            eprintln!(
                "SKIPPED: Redis is not reachable at 127.0.0.1:6379 ({other:?}). Start it with: \
                 redis-server --daemonize yes --port 6379 --save \"\""
            );
            false
        }
    }
}

/// Starts the binary on the bus `url`; returns it with its address.
fn start_node(url: &str, mode: &str, prefix: &str) -> (ServerProcess, std::net::SocketAddr) {
    start_server_process(&[
        "--bind",
        "127.0.0.1:0",
        "--field",
        "message=room:{room}",
        "--publish-token",
        "t",
        "--bus",
        url,
        "--bus-mode",
        mode,
        "--bus-prefix",
        prefix,
    ])
}

const REDIS: &str = "redis://127.0.0.1:6379";

async fn post(addr: std::net::SocketAddr, data: Value) {
    let body = json!({"channel": "room:x", "data": data}).to_string();
    let (status, text) = http(
        addr,
        "POST",
        "/publish",
        &[("Authorization", "Bearer t")],
        &body,
    )
    .await;
    assert!((200..300).contains(&status), "publish: {status} {text}");
}

fn message_of(frame: &Value) -> &Value {
    assert_eq!(frame["type"], "next", "{frame}");
    &frame["payload"]["data"]["message"]
}

async fn events_posted_on_one_process_reach_a_subscriber_of_the_other(url: &str, mode: &str) {
    let prefix = format!("fraiseql-cluster-test:{mode}:{}:", std::process::id());
    let (_a, addr_a) = start_node(url, mode, &prefix);
    let (_b, addr_b) = start_node(url, mode, &prefix);
    let mut client = Client::acknowledged(addr_b, json!({})).await;
    client
        .subscribe(
            "s",
            "subscription { message(room: \"x\") { n probe } }",
            json!({}),
        )
        .await;
    // The subscribe is registered asynchronously: post probes until one arrives, so the
    // numbered events below are published while the subscription is live.
    for _ in 0..200 {
        post(addr_a, json!({"n": -1, "probe": true})).await;
        if let Ok(seen) = tokio::time::timeout(Duration::from_millis(200), client.next()).await {
            match seen {
                Seen::Frame(frame) => {
                    assert_eq!(message_of(&frame)["probe"], true);
                    break;
                }
                other => panic!("expected a frame, got {other:?}"),
            }
        }
    }
    for n in 0..50 {
        post(addr_a, json!({"n": n, "probe": false})).await;
    }
    let mut expected = 0;
    while expected < 50 {
        let frame = client.next_frame().await;
        let message = message_of(&frame);
        if message["probe"] == true {
            continue; // a late probe
        }
        assert_eq!(message["n"], expected, "{mode}: in order, each once");
        expected += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_events_through_redis_pubsub() {
    if !redis_available() {
        return;
    }
    events_posted_on_one_process_reach_a_subscriber_of_the_other(REDIS, "pubsub").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_events_through_redis_streams() {
    if !redis_available() {
        return;
    }
    events_posted_on_one_process_reach_a_subscriber_of_the_other(REDIS, "streams").await;
    // The streams' keys are left to the cap; clean them so runs do not accumulate.
    let prefix = format!("fraiseql-cluster-test:streams:{}:", std::process::id());
    let _ = Command::new("redis-cli")
        .args(["--scan", "--pattern", &format!("{prefix}*")])
        .output()
        .map(|out| {
            for key in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("redis-cli").args(["DEL", key]).output();
            }
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_events_through_a_redis_cluster_in_both_modes() {
    if !redis_topology::available("two server processes on a Redis Cluster") {
        return;
    }
    let cluster = tokio::task::block_in_place(|| redis_topology::Cluster::start(3));
    for mode in ["pubsub", "streams"] {
        events_posted_on_one_process_reach_a_subscriber_of_the_other(&cluster.url(), mode).await;
    }
}
