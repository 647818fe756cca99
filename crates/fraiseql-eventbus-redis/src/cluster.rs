//! Redis Cluster, the listening side: shard channels (`SSUBSCRIBE`) grouped by hash slot —
//! one command may only name channels of one slot — and which node owns each slot now.

use std::collections::BTreeMap;

use fred::interfaces::ClusterInterface;
use fred::prelude::{Client, ClientLike, PubsubInterface};
use fred::types::config::Server;

/// `keys` grouped by their hash slot.
pub(crate) fn by_slot(keys: &[String]) -> BTreeMap<u16, Vec<String>> {
    let mut groups: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for key in keys {
        groups
            .entry(fred::util::redis_keyslot(key.as_bytes()))
            .or_default()
            .push(key.clone());
    }
    groups
}

/// `SSUBSCRIBE`s `keys`, one command per slot, each sent to the slot's owner. fred resolves
/// an `SSUBSCRIBE` on Redis's answer (it follows a `MOVED` reply), so when this returns every
/// shard channel is listened to.
pub(crate) async fn ssubscribe(
    listener: &Client,
    keys: &[String],
) -> Result<(), fred::error::Error> {
    for group in by_slot(keys).into_values() {
        listener.ssubscribe(group).await?;
    }
    Ok(())
}

/// `SUNSUBSCRIBE`s `keys`, one command per slot, then returns once every owner has applied
/// them: fred resolves an unsubscribe once written, so a `PING` on the same connection of
/// each node (answered in order, after the commands before it) confirms it.
pub(crate) async fn sunsubscribe(
    listener: &Client,
    keys: &[String],
) -> Result<(), fred::error::Error> {
    let groups = by_slot(keys);
    for group in groups.values() {
        listener.sunsubscribe(group.clone()).await?;
    }
    let mut owners: Vec<Server> = groups
        .keys()
        .filter_map(|slot| owner(listener, *slot))
        .collect();
    owners.sort();
    owners.dedup();
    for server in owners {
        listener
            .with_cluster_node(server)
            .ping::<fred::types::Value>(None)
            .await?;
    }
    Ok(())
}

/// The node that owns `slot` in the client's copy of the slot map.
pub(crate) fn owner(client: &Client, slot: u16) -> Option<Server> {
    client
        .cached_cluster_state()
        .and_then(|state| state.get_server(slot).cloned())
}

/// The owner of each slot `keys` hash to, as the client's slot map says now.
pub(crate) fn owners(client: &Client, keys: &[String]) -> BTreeMap<u16, Option<Server>> {
    by_slot(keys)
        .into_keys()
        .map(|slot| (slot, owner(client, slot)))
        .collect()
}

/// Reads the cluster's slot map again (`CLUSTER SLOTS`), so the client routes by where slots
/// live now.
pub(crate) async fn refresh(client: &Client) -> Result<(), fred::error::Error> {
    client.sync_cluster().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_grouped_by_their_hash_tag_slot() {
        let keys = vec!["p:{a}".to_owned(), "q:{a}".to_owned(), "p:{b}".to_owned()];
        let groups = by_slot(&keys);
        assert_eq!(groups.len(), 2);
        let slot_a = fred::util::redis_keyslot(b"a");
        assert_eq!(groups.get(&slot_a).map(Vec::len), Some(2));
    }
}
