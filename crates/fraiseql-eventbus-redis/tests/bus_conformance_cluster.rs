//! The `EventBus` contract's conformance suite (crate `fraiseql-bus-conformance`) against a
//! Redis Cluster this test binary starts (3 primaries, 3 replicas; stopped when it exits),
//! in both modes: `cluster_pubsub::*` (sharded pub/sub, at most once) and
//! `cluster_streams::*` (durable).
//!
//! As on one server, each node logs in as an ACL user of its own — created on every cluster
//! node, since ACLs are per node — so the hooks act on that node only: `CLIENT KILL USER` on
//! every cluster node closes its connections, `ACL SETUSER .. off` refuses its logins, and
//! `XTRIM` on the owner of a stream's slot discards what it had not read.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod redis_topology;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fraiseql_bus_conformance::{async_trait, Backend, Delivery, Deployment, Node};
use fraiseql_eventbus_redis::{RedisBus, RedisBusConfig, RedisMode};
use fraiseql_subscriptions::EventBus;
use redis_topology::{available, cli, Cluster};

/// One cluster for every case of this binary (each case has its own prefix and users).
fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start(3))
}

struct RedisCluster(RedisMode);

#[async_trait]
impl Backend for RedisCluster {
    fn name(&self) -> String {
        format!("{} on a cluster", self.0.stats_name())
    }

    fn delivery(&self) -> Delivery {
        match self.0 {
            RedisMode::Streams => Delivery::Durable,
            _ => Delivery::AtMostOnce,
        }
    }

    async fn deploy(&self, case: &str) -> Option<Box<dyn Deployment>> {
        if !available(case) {
            return None;
        }
        let cluster = tokio::task::block_in_place(cluster);
        Some(Box::new(ClusterDeployment {
            mode: self.0,
            prefix: format!("fraiseql-test:{case}:{}:", uuid::Uuid::now_v7().simple()),
            cluster,
            users: Mutex::new(Vec::new()),
        }))
    }
}

struct ClusterDeployment {
    mode: RedisMode,
    prefix: String,
    cluster: &'static Cluster,
    users: Mutex<Vec<String>>,
}

const PASSWORD: &str = "conformance-pw";

impl ClusterDeployment {
    /// Runs a command on every node of the cluster.
    fn everywhere(&self, args: &[&str]) {
        for node in self.cluster.nodes.iter().filter(|n| n.is_running()) {
            let out = cli(node.port, args);
            assert!(!out.starts_with("ERR"), "{args:?} on {}: {out}", node.port);
        }
    }
}

#[async_trait]
impl Deployment for ClusterDeployment {
    async fn node(&self) -> Node {
        let user = format!("fqt_conf_{}", uuid::Uuid::now_v7().simple());
        let password = format!(">{PASSWORD}");
        self.everywhere(&[
            "ACL", "SETUSER", &user, "reset", "on", &password, "~*", "&*", "+@all",
        ]);
        self.users.lock().unwrap().push(user.clone());
        let url = self
            .cluster
            .url()
            .replacen("://", &format!("://{user}:{PASSWORD}@"), 1);
        let config = RedisBusConfig::from_url(&url)
            .unwrap()
            .with_mode(self.mode)
            .with_prefix(&self.prefix)
            .with_stream_capacity(fraiseql_bus_conformance::STREAM_CAPACITY)
            .with_stream_max_len(10_000)
            .with_read(256, Duration::from_millis(500))
            .with_reconnect_backoff(Duration::from_millis(20), Duration::from_millis(250))
            .with_command_timeout(Duration::from_secs(3))
            .with_topology_check(Duration::from_millis(250));
        let bus = RedisBus::connect(config).await.unwrap();
        Node::new(Arc::new(bus) as Arc<dyn EventBus>, user)
    }

    async fn kill_connections(&self, node: &Node) -> bool {
        self.everywhere(&["CLIENT", "KILL", "USER", node.name()]);
        true
    }

    async fn begin_outage(&self, node: &Node) -> bool {
        self.everywhere(&["ACL", "SETUSER", node.name(), "off"]);
        self.kill_connections(node).await
    }

    async fn end_outage(&self, node: &Node) {
        self.everywhere(&["ACL", "SETUSER", node.name(), "on"]);
    }

    async fn discard_events(&self, channels: &[String], keep: usize) -> bool {
        if self.mode != RedisMode::Streams {
            return false;
        }
        for channel in channels {
            let owner = self
                .cluster
                .owner_of(fred::util::redis_keyslot(channel.as_bytes()));
            let key = format!("{}{{{channel}}}", self.prefix);
            cli(owner.port, &["XTRIM", &key, "MAXLEN", &keep.to_string()]);
        }
        true
    }

    async fn cleanup(&self) {
        let users: Vec<String> = self.users.lock().unwrap().drain(..).collect();
        for user in users {
            // Also closes the user's connections. The keys go with the cluster.
            self.everywhere(&["ACL", "DELUSER", &user]);
        }
    }
}

fraiseql_bus_conformance::bus_conformance_tests!(cluster_pubsub: RedisCluster(RedisMode::PubSub));
fraiseql_bus_conformance::bus_conformance_tests!(cluster_streams: RedisCluster(RedisMode::Streams));
