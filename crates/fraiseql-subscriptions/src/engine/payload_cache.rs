//! One event's serialized payloads ([`PayloadCache`]): each distinct projection of a value is
//! serialized once, however many subscribers share it.

use std::collections::HashMap;
use std::sync::Arc;

/// One event's serialized payloads, one per distinct (projection plan, value slot). Most
/// subscribers of a channel share one plan, so the last payload is checked before the map.
#[derive(Debug, Default)]
pub(super) struct PayloadCache {
    last: Option<((usize, usize), Arc<str>)>,
    others: HashMap<(usize, usize), Arc<str>>,
    /// Frames queued for this event (added to the metrics once, at the end).
    pub(super) delivered: u64,
}

impl PayloadCache {
    /// The payload for `key`, serialized by `serialize` the first time the key is seen.
    pub(super) fn get_or_serialize(
        &mut self,
        key: (usize, usize),
        serialize: impl FnOnce() -> Arc<str>,
    ) -> Arc<str> {
        if let Some((last_key, payload)) = &self.last {
            if *last_key == key {
                return Arc::clone(payload);
            }
        }
        let payload = Arc::clone(self.others.entry(key).or_insert_with(serialize));
        if let Some((old_key, old)) = self.last.replace((key, Arc::clone(&payload))) {
            self.others.entry(old_key).or_insert(old);
        }
        payload
    }
}
