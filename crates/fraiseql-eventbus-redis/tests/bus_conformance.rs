//! The `EventBus` contract's conformance suite (crate `fraiseql-bus-conformance`), run
//! against a real Redis in both modes: `pubsub::*` (at most once) and `streams::*` (durable).
//!
//! Each node of a deployment logs in as an ACL user of its own, so the hooks act on that node
//! only, never on the other tests sharing the server: `CLIENT KILL USER` closes its
//! connections (a restart, as the node sees it), `ACL SETUSER .. off` refuses its logins for
//! an outage, and `XTRIM` discards what a streams-mode node had not read.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod live_redis;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fraiseql_bus_conformance::{async_trait, Backend, Delivery, Deployment, Node};
use fraiseql_eventbus_redis::{RedisBus, RedisBusConfig, RedisMode};
use fraiseql_subscriptions::EventBus;
use fred::prelude::{Client, ClientLike};

struct Redis(RedisMode);

#[async_trait]
impl Backend for Redis {
    fn name(&self) -> String {
        self.0.stats_name().to_owned()
    }

    fn delivery(&self) -> Delivery {
        match self.0 {
            RedisMode::Streams => Delivery::Durable,
            _ => Delivery::AtMostOnce,
        }
    }

    async fn deploy(&self, case: &str) -> Option<Box<dyn Deployment>> {
        if !live_redis::available(case) {
            return None;
        }
        Some(Box::new(RedisDeployment {
            mode: self.0,
            prefix: live_redis::unique_prefix("conformance"),
            admin: live_redis::admin().await,
            users: Mutex::new(Vec::new()),
        }))
    }
}

/// One key prefix, and an ACL user per node.
struct RedisDeployment {
    mode: RedisMode,
    prefix: String,
    admin: Client,
    users: Mutex<Vec<String>>,
}

const PASSWORD: &str = "conformance-pw";

/// `live_redis::url()` logging in as `user`.
fn url_of(user: &str) -> String {
    let url = live_redis::url();
    let (scheme, rest) = url.split_once("://").expect("a redis:// URL");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}:{PASSWORD}@{host}")
}

impl RedisDeployment {
    async fn run(&self, name: &'static str, args: &[&str]) {
        let args = args.iter().map(|s| (*s).to_owned()).collect();
        live_redis::command(&self.admin, name, args).await;
    }
}

#[async_trait]
impl Deployment for RedisDeployment {
    async fn node(&self) -> Node {
        let user = format!("fqt_conf_{}", uuid::Uuid::now_v7().simple());
        let password = format!(">{PASSWORD}");
        self.run(
            "ACL",
            &[
                "SETUSER", &user, "reset", "on", &password, "~*", "&*", "+@all",
            ],
        )
        .await;
        self.users.lock().unwrap().push(user.clone());
        let config = RedisBusConfig::from_url(&url_of(&user))
            .unwrap()
            .with_mode(self.mode)
            .with_prefix(&self.prefix)
            .with_stream_capacity(fraiseql_bus_conformance::STREAM_CAPACITY)
            .with_stream_max_len(10_000)
            .with_read(256, Duration::from_millis(500))
            .with_reconnect_backoff(Duration::from_millis(20), Duration::from_millis(250))
            .with_command_timeout(Duration::from_secs(3));
        let bus = RedisBus::connect(config).await.unwrap();
        Node::new(Arc::new(bus) as Arc<dyn EventBus>, user)
    }

    async fn kill_connections(&self, node: &Node) -> bool {
        self.run("CLIENT", &["KILL", "USER", node.name()]).await;
        true
    }

    async fn begin_outage(&self, node: &Node) -> bool {
        self.run("ACL", &["SETUSER", node.name(), "off"]).await;
        self.kill_connections(node).await
    }

    async fn end_outage(&self, node: &Node) {
        self.run("ACL", &["SETUSER", node.name(), "on"]).await;
    }

    async fn discard_events(&self, channels: &[String], keep: usize) -> bool {
        if self.mode != RedisMode::Streams {
            return false;
        }
        for channel in channels {
            let key = format!("{}{channel}", self.prefix);
            self.run("XTRIM", &[&key, "MAXLEN", &keep.to_string()])
                .await;
        }
        true
    }

    async fn cleanup(&self) {
        live_redis::cleanup(&self.prefix).await;
        let users: Vec<String> = self.users.lock().unwrap().drain(..).collect();
        for user in users {
            // Also closes the user's connections.
            self.run("ACL", &["DELUSER", &user]).await;
        }
        let _ = self.admin.quit().await;
    }
}

fraiseql_bus_conformance::bus_conformance_tests!(pubsub: Redis(RedisMode::PubSub));
fraiseql_bus_conformance::bus_conformance_tests!(streams: Redis(RedisMode::Streams));
