//! The duplicate filter of the listening side: an event can arrive both by catch-up and by
//! notification, and must be delivered once.

use std::collections::BTreeSet;

/// How far below the highest sequence seen a catch-up re-reads, and how many sequence
/// numbers the duplicate filter remembers: transactions commit out of sequence order
/// (a sequence number is taken at insert, the notification sent at commit), so rows just
/// below the highest seen may still be unseen.
pub(super) const REORDER_WINDOW: i64 = 16_384;

/// both by catch-up and by notification.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    pub(super) seen: BTreeSet<i64>,
    /// Every row of the bus's channels at or below this sequence has been delivered, except
    /// late commits, which the catch-up re-reads within [`REORDER_WINDOW`].
    pub(super) watermark: i64,
}

impl Tracker {
    /// Records `seq`; `false` if it was delivered already.
    pub(super) fn first_time(&mut self, seq: i64) -> bool {
        if !self.seen.insert(seq) {
            return false;
        }
        self.advance(seq);
        true
    }

    pub(super) fn advance(&mut self, to: i64) {
        if to <= self.watermark {
            return;
        }
        self.watermark = to;
        let floor = to.saturating_sub(REORDER_WINDOW);
        if self.seen.first().is_some_and(|first| *first < floor) {
            self.seen = self.seen.split_off(&floor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_drops_second_copies_and_forgets_below_the_window() {
        let mut tracker = Tracker::default();
        assert!(tracker.first_time(5));
        assert!(!tracker.first_time(5));
        assert!(
            tracker.first_time(3),
            "a late commit below the highest is new"
        );
        tracker.advance(5 + REORDER_WINDOW + 10);
        assert!(tracker.seen.is_empty(), "old entries are forgotten");
        assert_eq!(tracker.watermark, 5 + REORDER_WINDOW + 10);
    }
}
