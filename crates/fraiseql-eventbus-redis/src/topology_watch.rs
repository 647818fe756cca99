//! Redis Cluster: noticing that a slot moved. Redis drops a node's shard-channel
//! subscriptions when the slot they hash to leaves that node (a resharding) or the node
//! dies (a failover), and says so only in an out-of-band message. So every `topology_check`
//! the bus reads the slot map again and, when a slot its channels hash to has a new owner
//! (or a resubscription failed), listens to every channel again: `SSUBSCRIBE` on a channel
//! already listened to is a no-op, and each goes to the slot's owner now.
//!
//! On one server or behind Sentinel the same task only retries a resubscription that failed
//! after a reconnect (Redis answered the reconnect but not yet the `SUBSCRIBE`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use fred::types::config::Server;

use crate::cluster;
use crate::shared::Shared;

/// The watcher task, until the bus is dropped.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut last: BTreeMap<u16, Option<Server>> = BTreeMap::new();
    loop {
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            () = tokio::time::sleep(shared.config.topology_check) => {}
        }
        if !shared.clustered() {
            if shared.resubscribe_failed.load(Ordering::Relaxed) {
                shared.resubscribe_all().await;
            }
            continue;
        }
        if let Err(err) = cluster::refresh(&shared.listener).await {
            tracing::debug!(host = %shared.config.host, error = %err, "could not read the cluster's slot map");
            continue;
        }
        let keys: Vec<String> = {
            let local = shared.local();
            local
                .channels
                .keys()
                .map(|c| shared.config.key_of(c))
                .collect()
        };
        let owners = cluster::owners(&shared.listener, &keys);
        let moved = owners
            .iter()
            .any(|(slot, owner)| last.get(slot).is_some_and(|before| before != owner));
        if moved || shared.resubscribe_failed.load(Ordering::Relaxed) {
            tracing::info!(host = %shared.config.host, "a slot of this node's channels moved; listening again");
            shared.resubscribe_all().await;
        }
        last = owners;
    }
}
