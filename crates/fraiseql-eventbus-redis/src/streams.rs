//! Streams mode: entries numbered by a publish script, one reader per node that follows
//! every stream it needs from the last id it saw.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use fraiseql_subscriptions::Event;
use fred::prelude::{Client, KeysInterface, StreamsInterface, Value};

use crate::bus::Shared;

/// Appends an entry numbered one past the stream's last (`n`), so a reader can tell a
/// contiguous read from one that skipped trimmed entries. Runs atomically in Redis, so
/// concurrent publishers on many nodes still number one sequence per stream. A stream that
/// was deleted (a Redis restart without persistence) starts again at 1.
pub(crate) const APPEND_LUA: &str = r"
local n = 1
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then
  local fields = last[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'n' then n = tonumber(fields[i + 1]) + 1 end
  end
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'n', n, 'e', ARGV[2])
";

/// A stream entry id, `<milliseconds>-<sequence>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct EntryId {
    ms: u64,
    seq: u64,
}

impl EntryId {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (ms, seq) = text.split_once('-')?;
        Some(Self {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Where a node stands in one channel's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// The last entry read (or the stream's end when the channel became active).
    pub(crate) id: EntryId,
    /// Its number `n` (0 when the stream was empty).
    pub(crate) n: u64,
}

/// What reading entry number `n` after `cursor` means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Continuity {
    /// The next entry, or the first of a stream created anew.
    Contiguous,
    /// `missing` entries between the cursor and this one are gone.
    Gap { missing: u64 },
}

pub(crate) fn continuity(cursor: Cursor, n: Option<u64>) -> Continuity {
    match n {
        // Not written by this bus: nothing to check against.
        None => Continuity::Contiguous,
        Some(n) if n == cursor.n.saturating_add(1) || n == 1 => Continuity::Contiguous,
        Some(n) if n > cursor.n => Continuity::Gap {
            missing: n - cursor.n - 1,
        },
        // Numbered below the cursor yet not 1: the stream was recreated and its first
        // entries were trimmed too.
        Some(n) => Continuity::Gap {
            missing: n.saturating_sub(1),
        },
    }
}

/// Stream entries as Redis returns them: id and fields.
type Entries = Vec<(String, HashMap<String, Value>)>;

fn entries(value: Value) -> Result<Entries, fred::error::Error> {
    if value.is_null() {
        return Ok(Vec::new());
    }
    value.into_xread_value()
}

fn field_u64(fields: &HashMap<String, Value>, name: &str) -> Option<u64> {
    let value = fields.get(name)?;
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// The end of `key`'s stream now: where a channel that just became active starts reading.
pub(crate) async fn tip(client: &Client, key: &str) -> Result<Cursor, fred::error::Error> {
    let last: Value = client.xrevrange(key, "+", "-", Some(1)).await?;
    let cursor = entries(last)?
        .into_iter()
        .next()
        .and_then(|(id, fields)| {
            Some(Cursor {
                id: EntryId::parse(&id)?,
                n: field_u64(&fields, "n").unwrap_or(0),
            })
        })
        .unwrap_or(Cursor {
            id: EntryId::default(),
            n: 0,
        });
    Ok(cursor)
}

/// Wakes the node's reader out of its XREAD BLOCK.
pub(crate) async fn wake(client: &Client, key: &str) -> Result<(), fred::error::Error> {
    let _: Value = client
        .xadd(key, false, ("MAXLEN", "=", 8), "*", vec![("w", "1")])
        .await?;
    // Left behind only if the process dies without dropping the bus.
    let _: Value = client.pexpire(key, 3_600_000, None).await?;
    Ok(())
}

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
            let Some(channel) = key.strip_prefix(config.prefix.as_str()) else {
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
async fn read_entry(
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(n: u64) -> Cursor {
        Cursor {
            id: EntryId::parse("5-0").unwrap(),
            n,
        }
    }

    #[test]
    fn entry_ids_order_by_time_then_sequence() {
        let a = EntryId::parse("10-5").unwrap();
        let b = EntryId::parse("11-0").unwrap();
        assert!(a < b);
        assert_eq!(a.to_string(), "10-5");
        assert!(EntryId::parse("x-1").is_none());
    }

    #[test]
    fn the_next_number_is_contiguous_and_a_jump_is_a_gap() {
        assert_eq!(continuity(at(4), Some(5)), Continuity::Contiguous);
        assert_eq!(continuity(at(0), Some(1)), Continuity::Contiguous);
        assert_eq!(continuity(at(4), Some(9)), Continuity::Gap { missing: 4 });
        assert_eq!(continuity(at(4), None), Continuity::Contiguous);
        // A stream created anew (Redis restarted without persistence) starts at 1.
        assert_eq!(continuity(at(40), Some(1)), Continuity::Contiguous);
        assert_eq!(continuity(at(40), Some(3)), Continuity::Gap { missing: 2 });
    }
}
