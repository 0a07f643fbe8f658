//! Which offsets may be committed while several messages of a partition are in flight: only up to
//! the last offset below which every received message is done (at-least-once). Bookkeeping exists
//! only for assigned partitions; revoking one cancels its work in flight.

use std::collections::{BTreeSet, HashMap};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Partition {
    in_flight: BTreeSet<i64>,
    first_begun: Option<i64>,
    highest_done: Option<i64>,
    stored: Option<i64>,
    /// Cancelled when the partition is revoked: its messages now belong to another member.
    revoked: CancellationToken,
}

impl Partition {
    /// Starts over at `offset` (the fetch position moved back, e.g. reset to the earliest offset),
    /// keeping the token: the work in flight still belongs to this member.
    fn restart(&mut self, offset: i64) {
        self.in_flight.clear();
        self.first_begun = Some(offset);
        self.highest_done = None;
        self.stored = None;
    }
}

/// Per-partition bookkeeping of received and finished offsets. Offsets of one partition are begun
/// in increasing order (as a consumer receives them).
#[derive(Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, Partition>,
}

impl OffsetTracker {
    /// The partition is (newly) assigned: its bookkeeping starts clean; work left from an earlier
    /// assignment is cancelled. Returns the token its revocation cancels.
    pub fn assign(&mut self, partition: i32) -> CancellationToken {
        let state = Partition::default();
        let revoked = state.revoked.clone();
        if let Some(old) = self.partitions.insert(partition, state) {
            old.revoked.cancel();
        }
        revoked
    }

    /// The partition is revoked: its work in flight is cancelled and its bookkeeping dropped.
    /// Returns how many of its messages were in flight.
    pub fn revoke(&mut self, partition: i32) -> usize {
        self.partitions.remove(&partition).map_or(0, |state| {
            state.revoked.cancel();
            state.in_flight.len()
        })
    }

    /// Records a received message. Returns the token cancelled when its partition is revoked, or
    /// `None` when the partition is not assigned (the message must not be handled).
    pub fn begin(&mut self, partition: i32, offset: i64) -> Option<CancellationToken> {
        let state = self.partitions.get_mut(&partition)?;
        let rewound = state.in_flight.last().is_some_and(|&last| offset <= last)
            || state.highest_done.is_some_and(|done| offset <= done);
        if rewound || state.first_begun.is_none() {
            state.restart(offset);
        }
        state.in_flight.insert(offset);
        Some(state.revoked.clone())
    }

    /// Marks `offset` done. Returns the offset of the last message up to which everything is done
    /// when that advanced (the consumer stores it; the commit then names the next one to read).
    pub fn complete(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let state = self.partitions.get_mut(&partition)?;
        if !state.in_flight.remove(&offset) {
            return None;
        }
        state.highest_done = state.highest_done.max(Some(offset));
        let safe = match state.in_flight.first() {
            Some(&first) => first - 1,
            None => state.highest_done?,
        };
        let advanced = safe >= state.first_begun? && state.stored.is_none_or(|s| safe > s);
        advanced.then(|| {
            state.stored = Some(safe);
            safe
        })
    }

    /// Offsets received but not finished, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.in_flight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assigned(partitions: &[i32]) -> OffsetTracker {
        let mut t = OffsetTracker::default();
        for &p in partitions {
            t.assign(p);
        }
        t
    }

    #[test]
    fn sequential_messages_are_committable_one_by_one() {
        let mut t = assigned(&[0]);
        for offset in 5..8 {
            t.begin(0, offset).unwrap();
            assert_eq!(t.complete(0, offset), Some(offset));
        }
    }

    #[test]
    fn out_of_order_completion_waits_for_the_oldest() {
        let mut t = assigned(&[0]);
        for offset in 10..14 {
            t.begin(0, offset).unwrap();
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
        let mut t = assigned(&[0, 1]);
        t.begin(0, 0).unwrap();
        t.begin(1, 0).unwrap();
        t.begin(0, 1).unwrap();
        assert_eq!(t.complete(1, 0), Some(0));
        assert_eq!(t.complete(0, 1), None);
        assert_eq!(t.complete(0, 0), Some(1));
    }

    #[test]
    fn unassigned_partitions_take_no_messages() {
        let mut t = assigned(&[0]);
        assert!(t.begin(1, 0).is_none());
        assert_eq!(t.complete(1, 0), None);
    }

    #[test]
    fn revoking_cancels_the_work_in_flight_and_forgets_it() {
        let mut t = assigned(&[2]);
        let first = t.begin(2, 20).unwrap();
        t.begin(2, 21).unwrap();
        assert_eq!(t.complete(2, 20), Some(20));
        assert_eq!(t.revoke(2), 1);
        assert!(first.is_cancelled());
        // A late completion of the revoked partition stores nothing.
        assert_eq!(t.complete(2, 21), None);
        assert!(t.begin(2, 22).is_none());
        // Assigned again, it starts clean at whatever offset the group committed, under a new
        // token that its next revocation cancels.
        let assigned = t.assign(2);
        let again = t.begin(2, 21).unwrap();
        assert!(!again.is_cancelled());
        assert_eq!(t.complete(2, 21), Some(21));
        assert_eq!(t.in_flight(), 0);
        t.revoke(2);
        assert!(assigned.is_cancelled() && again.is_cancelled());
    }

    #[test]
    fn a_rewound_position_restarts_the_bookkeeping() {
        let mut t = assigned(&[0]);
        t.begin(0, 7).unwrap();
        assert_eq!(t.complete(0, 7), Some(7));
        t.begin(0, 3).unwrap();
        assert_eq!(t.complete(0, 3), Some(3));
    }
}
