//! Which offsets may be committed while several messages of a partition are in flight: only up to
//! the last offset below which every received message is done (at-least-once).

use std::collections::{BTreeSet, HashMap};

#[derive(Default)]
struct Partition {
    in_flight: BTreeSet<i64>,
    first_begun: i64,
    highest_done: i64,
    stored: i64,
}

/// Per-partition bookkeeping of received and finished offsets. Offsets of one partition must be
/// begun in increasing order (as a consumer receives them); a smaller one means the partition was
/// rewound (rebalance, restart) and starts its bookkeeping afresh.
#[derive(Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, Partition>,
}

impl OffsetTracker {
    pub fn begin(&mut self, partition: i32, offset: i64) {
        let state = self
            .partitions
            .entry(partition)
            .or_insert_with(|| Partition {
                first_begun: offset,
                highest_done: offset - 1,
                stored: offset - 1,
                ..Partition::default()
            });
        let rewound =
            state.in_flight.last().is_some_and(|&last| offset <= last) || offset <= state.stored;
        if rewound {
            *state = Partition {
                first_begun: offset,
                highest_done: offset - 1,
                stored: offset - 1,
                ..Partition::default()
            };
        }
        state.in_flight.insert(offset);
    }

    /// Marks `offset` done. Returns the offset of the last message up to which everything is done
    /// when that advanced (the consumer stores it; the commit then names the next one to read).
    pub fn complete(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let state = self.partitions.get_mut(&partition)?;
        if !state.in_flight.remove(&offset) {
            return None;
        }
        state.highest_done = state.highest_done.max(offset);
        let safe = match state.in_flight.first() {
            Some(&first) => first - 1,
            None => state.highest_done,
        };
        if safe > state.stored && safe >= state.first_begun {
            state.stored = safe;
            Some(safe)
        } else {
            None
        }
    }

    /// Offsets received but not finished, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.in_flight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_messages_are_committable_one_by_one() {
        let mut t = OffsetTracker::default();
        for offset in 5..8 {
            t.begin(0, offset);
            assert_eq!(t.complete(0, offset), Some(offset));
        }
    }

    #[test]
    fn out_of_order_completion_waits_for_the_oldest() {
        let mut t = OffsetTracker::default();
        for offset in 10..14 {
            t.begin(0, offset);
        }
        assert_eq!(t.complete(0, 12), None);
        assert_eq!(t.complete(0, 11), None);
        assert_eq!(t.in_flight(), 2);
        assert_eq!(t.complete(0, 10), Some(12));
        assert_eq!(t.complete(0, 13), Some(13));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = OffsetTracker::default();
        t.begin(0, 0);
        t.begin(1, 0);
        t.begin(0, 1);
        assert_eq!(t.complete(1, 0), Some(0));
        assert_eq!(t.complete(0, 1), None);
        assert_eq!(t.complete(0, 0), Some(1));
    }

    #[test]
    fn rewind_restarts_the_bookkeeping_and_ignores_stale_completions() {
        let mut t = OffsetTracker::default();
        t.begin(2, 20);
        t.begin(2, 21);
        assert_eq!(t.complete(2, 20), Some(20));
        // Reassigned after a rebalance: delivery restarts at the committed offset 21.
        t.begin(2, 21);
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.complete(2, 21), Some(21));
        assert_eq!(t.complete(2, 21), None);
        assert_eq!(t.complete(3, 0), None);
    }
}
