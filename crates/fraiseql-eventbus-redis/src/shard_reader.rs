//! Streams mode on a Redis Cluster, the reading side. One `XREAD` may only name streams of
//! one slot, and a blocking read would hold a connection per slot, so instead each publish
//! is followed by a wake-up on the stream's shard channel (same name, same slot, see
//! [`crate::config::RedisBusConfig::key_of`]); the reader reads, without blocking and from
//! its cursor, each channel woken, and every channel each `topology_check` (what a wake-up
//! lost to a failover or a reconnect would have announced). Reads start from the cursor, so
//! nothing Redis holds is missed or delivered twice, whatever the wake-ups do.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};

use fred::prelude::{StreamsInterface, Value};
use futures_util::future::join_all;

use crate::error::command_error;
use crate::shared::Shared;
use crate::stream_reader::read_entry;

/// The reader task, until the bus is dropped.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(shared.config.topology_check);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let everything = tokio::select! {
            () = shared.cancel.cancelled() => return,
            () = shared.dirty_notify.notified() => false,
            _ = every.tick() => true,
        };
        let channels: Vec<String> = {
            let mut dirty = shared.dirty.lock().unwrap_or_else(PoisonError::into_inner);
            if everything {
                dirty.clear();
                shared.local().channels.keys().cloned().collect()
            } else {
                dirty.drain().collect()
            }
        };
        // Channels live on different shards: read them side by side, each in order.
        let reads = join_all(channels.iter().map(|c| read_channel(&shared, c))).await;
        for (channel, read) in channels.iter().zip(reads) {
            if let Err(err) = read {
                // The cursor stays where it was: the next read resumes exactly there.
                tracing::warn!(host = %shared.config.host, channel, error = %err, "Redis stream read failed; retrying at the next check");
            }
        }
    }
}

/// Reads `channel`'s stream from its cursor to its end and delivers every entry.
async fn read_channel(
    shared: &Arc<Shared>,
    channel: &str,
) -> Result<(), fraiseql_subscriptions::BusError> {
    let key = shared.config.key_of(channel);
    let Some(client) = shared.reader.as_ref() else {
        return Ok(());
    };
    loop {
        let cursor = {
            let local = shared.local();
            match local.channels.get(channel).and_then(|state| state.cursor) {
                Some(cursor) => cursor,
                // Unsubscribed meanwhile.
                None => return Ok(()),
            }
        };
        let value: Value = client
            .xread(
                Some(shared.config.read_batch),
                None,
                key.as_str(),
                cursor.id.to_string(),
            )
            .await
            .map_err(|e| command_error(&shared.config.host, "XREAD", &e))?;
        let batch = if value.is_null() {
            Vec::new()
        } else {
            value
                .into_xread_response::<String, String, String, Value>()
                .map_err(|e| command_error(&shared.config.host, "XREAD", &e))?
                .into_values()
                .flatten()
                .collect::<Vec<(String, HashMap<String, Value>)>>()
        };
        let full = batch.len() as u64 >= shared.config.read_batch;
        for (id, fields) in batch {
            read_entry(shared, channel, &id, &fields).await;
        }
        if !full {
            return Ok(());
        }
    }
}
