//! Streams mode, what lives in Redis: the publish script that numbers each channel's
//! entries, entry ids, a reader's cursor and how it tells a contiguous read from a gap, and
//! the two commands the subscribe path needs (the tip of a stream, a wake-up entry).

use std::collections::HashMap;
use std::fmt;

use fred::interfaces::LuaInterface;
use fred::prelude::{Client, KeysInterface, StreamsInterface, Value};

/// The Lua that sets `n` to one past the number of the stream's last entry (1 for an empty
/// or new stream); the start of both append scripts.
macro_rules! numbering_lua {
    () => {
        r"
local n = 1
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then
  local fields = last[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'n' then n = tonumber(fields[i + 1]) + 1 end
  end
end
"
    };
}

/// Appends an entry numbered one past the stream's last (`n`), so a reader can tell a
/// contiguous read from one that skipped trimmed entries. Runs atomically in Redis, so
/// concurrent publishers on many nodes still number one sequence per stream. A stream that
/// was deleted (a Redis restart without persistence) starts again at 1.
pub(crate) const APPEND_LUA: &str = concat!(
    numbering_lua!(),
    "return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'n', n, 'e', ARGV[2])\n"
);

/// [`APPEND_LUA`] for a Redis Cluster: the same append, then the wake-up of the stream's
/// readers on its shard channel — named like the key, so it hashes to the script's slot —
/// in the same command.
pub(crate) const APPEND_AND_WAKE_LUA: &str = concat!(
    numbering_lua!(),
    "local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'n', n, 'e', ARGV[2])\n",
    "redis.call('SPUBLISH', KEYS[1], '')\n",
    "return id\n"
);

/// Appends `payload` to `key`'s stream on a cluster and wakes its readers, in one command:
/// `EVALSHA` of [`APPEND_AND_WAKE_LUA`], or its text (`EVAL`, which also caches it there)
/// when the node answering — a replica promoted by a failover, a primary a slot moved to —
/// does not have it yet. Reloading through fred would send `SCRIPT LOAD` to every primary of
/// its slot map, a dead one included.
pub(crate) async fn append_and_wake(
    client: &Client,
    sha: &str,
    key: &str,
    args: Vec<String>,
) -> Result<Value, fred::error::Error> {
    // As `Value`s the arguments share their bytes, so keeping them for a second attempt
    // copies no payload.
    let args: Vec<Value> = args.into_iter().map(Value::from).collect();
    match client.evalsha(sha, key, args.clone()).await {
        Err(err) if err.details().starts_with("NOSCRIPT") => {
            client.eval(APPEND_AND_WAKE_LUA, key, args).await
        }
        result => result,
    }
}

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
    /// The numbering went back (to `n`, not 1): Redis lost the stream's last entries after
    /// this node had read them — a primary that failed before its replica had them, or a
    /// restart that kept an older copy. Nothing Redis holds was skipped; the entry is new.
    Rewound,
}

pub(crate) fn continuity(cursor: Cursor, n: Option<u64>) -> Continuity {
    match n {
        // Not written by this bus: nothing to check against.
        None => Continuity::Contiguous,
        Some(n) if n == cursor.n.saturating_add(1) || n == 1 => Continuity::Contiguous,
        Some(n) if n > cursor.n => Continuity::Gap {
            missing: n - cursor.n - 1,
        },
        // At or below the cursor yet not 1, in an entry after it: the tail this node read
        // is gone from Redis and the numbering continued from the surviving copy.
        Some(_) => Continuity::Rewound,
    }
}

/// Stream entries as Redis returns them: id and fields.
pub(crate) type Entries = Vec<(String, HashMap<String, Value>)>;

pub(crate) fn entries(value: Value) -> Result<Entries, fred::error::Error> {
    if value.is_null() {
        return Ok(Vec::new());
    }
    value.into_xread_value()
}

pub(crate) fn field_u64(fields: &HashMap<String, Value>, name: &str) -> Option<u64> {
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
        // A failover that lost entries 39 and 40 after this node read them.
        assert_eq!(continuity(at(40), Some(39)), Continuity::Rewound);
    }
}
