//! What a backend gives the suite: isolated deployments of nodes, and hooks that make a node
//! see its server go away.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use fraiseql_subscriptions::EventBus;

/// What a backend promises about loss, as the table of the `EventBus` contract says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Nothing is ever lost and there is no connection to lose (the in-memory bus).
    Lossless,
    /// At most once (Redis pubsub): what is published while a node is disconnected is lost
    /// for it, silently; once it has reconnected, delivery resumes.
    AtMostOnce,
    /// Durable (Redis streams, PostgreSQL): across lost connections and backend restarts,
    /// nothing the backend still holds is lost; what it discarded before a node read it is
    /// reported to that node's streams by a gap notice.
    Durable,
}

/// One bus backend (and mode) under test.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Its name in messages: `memory`, `redis/pubsub`, `redis/streams`, `postgres`.
    fn name(&self) -> String;

    /// What it promises.
    fn delivery(&self) -> Delivery;

    /// A fresh deployment for one run of the case `case`: nodes built by it share events
    /// with each other and with nothing else (their own key prefix, schema, ...). `None` when
    /// the server is not reachable outside CI, after printing how to start it; under
    /// `CI=true` an unreachable server must fail the test instead (panic).
    async fn deploy(&self, case: &str) -> Option<Box<dyn Deployment>>;
}

/// One node of a deployment: a bus of its own (one process, in production), and the name the
/// deployment knows it by in its hooks.
#[derive(Clone)]
pub struct Node {
    bus: Arc<dyn EventBus>,
    name: String,
}

impl Node {
    /// A node: `bus`, known to its deployment as `name` (a Redis ACL user, a PostgreSQL role).
    #[must_use]
    pub fn new(bus: Arc<dyn EventBus>, name: impl Into<String>) -> Self {
        Self {
            bus,
            name: name.into(),
        }
    }

    /// The node's bus.
    #[must_use]
    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.bus
    }

    /// The name its deployment knows it by.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("bus", &self.bus)
            .finish()
    }
}

/// An isolated deployment of a backend for one case: its nodes see each other's events and
/// nobody else's. It must not keep its nodes' buses alive (a case checks that dropping a bus
/// ends its streams).
///
/// The hooks return `false` when the backend has nothing of the kind (the in-memory bus has
/// no connection); the cases that need them then pass as not applicable.
#[async_trait]
pub trait Deployment: Send + Sync {
    /// A node connected to this deployment, its streams queueing up to
    /// [`crate::STREAM_CAPACITY`] events. A single-process backend may return the same bus
    /// for every call, as long as it is alive.
    async fn node(&self) -> Node;

    /// What a backend restart looks like to `node`: the server closes every connection of
    /// the node. The node may reconnect at once.
    async fn kill_connections(&self, node: &Node) -> bool {
        let _ = node;
        false
    }

    /// Starts an outage of `node`: its logins are refused and its connections killed, until
    /// [`Deployment::end_outage`]. The other nodes keep working.
    async fn begin_outage(&self, node: &Node) -> bool {
        let _ = node;
        false
    }

    /// Ends the outage of `node`: it may log in again.
    async fn end_outage(&self, node: &Node) {
        let _ = node;
    }

    /// The server discards the oldest events it holds for `channels`, keeping only the newest
    /// `keep` (Redis `XTRIM MAXLEN keep`; PostgreSQL prunes the events table down to `keep`
    /// rows). `false` when the backend holds no events.
    async fn discard_events(&self, channels: &[String], keep: usize) -> bool {
        let _ = (channels, keep);
        false
    }

    /// Removes what the deployment created on the server (keys, schema, users). Runs after
    /// the case, whether it passed or not.
    async fn cleanup(&self) {}
}
