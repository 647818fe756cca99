//! Registry consistency under random add / remove / close sequences, against a plain model.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code fails loudly

use std::collections::BTreeMap;

use fraiseql_subscriptions::registry::{ConnectionId, Registry, SubscriptionId};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Insert {
        connection: u64,
        user: Option<u8>,
        channel: u8,
    },
    Remove {
        pick: usize,
    },
    CloseConnection {
        connection: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4_u64, proptest::option::of(0..3_u8), 0..5_u8)
            .prop_map(|(connection, user, channel)| Op::Insert { connection, user, channel }),
        2 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
        1 => (0..4_u64).prop_map(|connection| Op::CloseConnection { connection }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct ModelEntry {
    connection: u64,
    user: Option<String>,
    channel: String,
}

proptest! {
    #[test]
    fn registry_indexes_agree_with_a_plain_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut reg: Registry<u32> = Registry::new();
        let mut model: BTreeMap<SubscriptionId, ModelEntry> = BTreeMap::new();
        let mut ever: Vec<SubscriptionId> = Vec::new();
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Insert { connection, user, channel } => {
                    let user = user.map(|u| format!("user{u}"));
                    let channel = format!("ch{channel}");
                    let was_active = model.values().any(|e| e.channel == channel);
                    let inserted = reg.insert(ConnectionId(connection), user.as_deref(), channel.clone(), n as u32);
                    prop_assert_eq!(inserted.channel_activated, !was_active);
                    prop_assert!(!ever.contains(&inserted.id), "ids are never reused");
                    ever.push(inserted.id);
                    model.insert(inserted.id, ModelEntry { connection, user, channel });
                }
                Op::Remove { pick } => {
                    let id = ever[pick % ever.len().max(1)..].first().copied();
                    if let Some(id) = id {
                        let expected = model.remove(&id);
                        let removed = reg.remove(id);
                        prop_assert_eq!(removed.is_some(), expected.is_some());
                        if let (Some(removed), Some(expected)) = (removed, expected) {
                            let still = model.values().any(|e| e.channel == expected.channel);
                            prop_assert_eq!(removed.channel_deactivated, !still);
                            prop_assert_eq!(removed.channel, expected.channel);
                        }
                    }
                }
                Op::CloseConnection { connection } => {
                    let expected: Vec<SubscriptionId> = model
                        .iter()
                        .filter(|(_, e)| e.connection == connection)
                        .map(|(id, _)| *id)
                        .collect();
                    let removed: Vec<SubscriptionId> =
                        reg.remove_connection(ConnectionId(connection)).into_iter().map(|r| r.id).collect();
                    prop_assert_eq!(&removed, &expected);
                    model.retain(|_, e| e.connection != connection);
                }
            }
            // Every index agrees with the model after every step.
            prop_assert_eq!(reg.len(), model.len());
            for c in 0..4 {
                let count = model.values().filter(|e| e.connection == c).count();
                prop_assert_eq!(reg.count_for_connection(ConnectionId(c)), count);
            }
            for u in 0..3 {
                let user = format!("user{u}");
                let count = model.values().filter(|e| e.user.as_deref() == Some(&user)).count();
                prop_assert_eq!(reg.count_for_user(&user), count);
            }
            for ch in 0..5 {
                let channel = format!("ch{ch}");
                let mut expected: Vec<_> =
                    model.iter().filter(|(_, e)| e.channel == channel).map(|(id, _)| *id).collect();
                let mut got: Vec<_> = reg.on_channel(&channel).map(|(id, _)| id).collect();
                expected.sort();
                got.sort();
                prop_assert_eq!(got, expected);
            }
            let mut active: Vec<_> = model.values().map(|e| e.channel.clone()).collect();
            active.sort();
            active.dedup();
            prop_assert_eq!(reg.active_channels(), active.len());
            for (id, entry) in &model {
                prop_assert_eq!(reg.connection_of(*id), Some(ConnectionId(entry.connection)));
                prop_assert!(reg.get(*id).is_some());
            }
        }
    }
}
