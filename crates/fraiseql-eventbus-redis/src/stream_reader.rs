//! Streams mode, the reading side: one reader task per node follows every stream it needs
//! from the last id it saw, and hands entries (or gap notices) to the local subscribers.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use fraiseql_subscriptions::Event;
use fred::prelude::{StreamsInterface, Value};

use crate::shared::Shared;
use crate::stream_log::{continuity, field_u64, Continuity, EntryId};

/// The reader task: XREAD BLOCK over every active channel's stream (and the wake stream),
/// each from its cursor, until the bus is dropped.
pub(crate) async fn run_reader(shared: Arc<Shared>) {
    let config = &shared.config;
    let block_ms = u64::try_from(config.read_block.as_millis()).unwrap_or(u64::MAX);
    let mut wake_id = EntryId::default();
    let mut backoff = config.reconnect_min;
    loop {
        let (mut keys, mut ids): (Vec<String>, Vec<String>) = {
            let local = shared.local();
            local
                .channels
                .iter()
                .filter_map(|(channel, state)| {
                    state
                        .cursor
                        .map(|cursor| (config.key_of(channel), cursor.id.to_string()))
                })
                .unzip()
        };
        keys.push(shared.wake_key.clone());
        ids.push(wake_id.to_string());
        let read = tokio::select! {
            () = shared.cancel.cancelled() => return,
            read = shared.listener.xread::<Value, _, _>(Some(config.read_batch), Some(block_ms), keys, ids) => read,
        };
        let value = match read.and_then(|v| {
            if v.is_null() {
                Ok(HashMap::new())
            } else {
                v.into_xread_response::<String, String, String, Value>()
            }
        }) {
            Ok(value) => {
                backoff = config.reconnect_min;
                value
            }
            Err(err) => {
                // The cursors stay where they are: the next read resumes exactly there.
                tracing::warn!(host = %config.host, error = %err, retry_in = ?backoff, "Redis stream read failed");
                tokio::select! {
                    () = shared.cancel.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(config.reconnect_max);
                continue;
            }
        };
        for (key, batch) in value {
            if key == shared.wake_key {
                if let Some(last) = batch.last().and_then(|(id, _)| EntryId::parse(id)) {
                    wake_id = last;
                }
                continue;
            }
            let Some(channel) = config.channel_of(&key) else {
                continue;
            };
            for (id, fields) in batch {
                read_entry(&shared, channel, &id, &fields).await;
            }
        }
    }
}

/// Advances `channel`'s cursor past entry `id` and delivers it, after a gap notice when
/// entries before it were trimmed unread. Entries at or before the cursor (a read that raced
/// with the channel being dropped and added again) are skipped: each is delivered once.
pub(crate) async fn read_entry(
    shared: &Arc<Shared>,
    channel: &str,
    id: &str,
    fields: &HashMap<String, Value>,
) {
    let Some(id) = EntryId::parse(id) else {
        return;
    };
    let n = field_u64(fields, "n");
    let (subscribers, continuity) = {
        let mut local = shared.local();
        let Some(state) = local.channels.get_mut(channel) else {
            return;
        };
        let Some(cursor) = state.cursor.as_mut() else {
            return;
        };
        if id <= cursor.id {
            return;
        }
        let continuity = continuity(*cursor, n);
        cursor.id = id;
        if let Some(n) = n {
            cursor.n = n;
        }
        (state.subscribers.clone(), continuity)
    };
    if continuity == Continuity::Rewound {
        tracing::warn!(
            channel,
            n,
            "the Redis stream's numbering went back: Redis lost entries this node had \
             already read (a failover before the replica had them); continuing"
        );
    }
    if let Continuity::Gap { missing } = continuity {
        shared.gaps.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            channel,
            missing,
            "Redis stream trimmed events before this node read them"
        );
        let notice = Arc::new(Event::gap(
            channel,
            format!(
                "{missing} event(s) on channel {channel} were trimmed from the Redis stream \
                 before this node read them (stream_max_len {}); subscribe again and refetch",
                shared.config.stream_max_len
            ),
        ));
        shared.deliver(&subscribers, &notice).await;
    }
    let Some(payload) = fields.get("e").and_then(Value::as_bytes) else {
        return;
    };
    match Event::from_wire_json(payload) {
        Ok(event) => shared.deliver(&subscribers, &Arc::new(event)).await,
        Err(err) => {
            tracing::warn!(channel, error = %err, "skipping a Redis stream entry that is not a FraiseQL event");
        }
    }
}
