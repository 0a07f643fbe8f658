//! Lag arithmetic and scaling advice: pure functions of what the broker reported.

use crate::crd::{GroupLag, KafkaStatus, Trend};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// What the broker said about one group.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupSample {
    pub group: String,
    pub topic: String,
    /// Log end offset per partition; empty when the topic does not exist yet.
    pub end_offsets: Vec<i64>,
    /// Committed offset per partition (`None`: never committed).
    pub committed: Vec<Option<i64>>,
    /// The group's members and their assignments.
    pub members: GroupMembers,
}

/// A consumer group's members as the broker describes them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupMembers {
    /// Every member has its assignment; otherwise partitions are being reassigned.
    pub stable: bool,
    /// Each member's assigned partitions, by topic.
    pub assignments: Vec<BTreeMap<String, Vec<i32>>>,
}

impl GroupMembers {
    /// Members of a stable group that were assigned no partition of `topic`.
    pub fn idle(&self, topic: &str) -> i32 {
        if !self.stable {
            return 0;
        }
        self.assignments
            .iter()
            .filter(|a| a.get(topic).is_none_or(Vec::is_empty))
            .count() as i32
    }
}

impl GroupSample {
    /// Messages not yet committed. A partition the group never committed counts from offset 0:
    /// the lab's topics keep every message for its lifetime.
    pub fn lag(&self) -> i64 {
        self.end_offsets
            .iter()
            .enumerate()
            .map(|(p, end)| {
                let committed = self.committed.get(p).copied().flatten().unwrap_or(0);
                (end - committed).max(0)
            })
            .sum()
    }
}

/// How far back the trend looks: a lag moves in steps of whole messages, so two readings a few
/// seconds apart often match even while it grows; half a minute shows the direction.
pub const TREND_WINDOW: Duration = Duration::from_secs(30);

/// One group's lag readings over the last [`TREND_WINDOW`].
#[derive(Debug, Default, Clone)]
pub struct LagHistory(VecDeque<(Instant, i64)>);

impl LagHistory {
    /// The lag the trend compares with: the oldest reading still inside the window.
    pub fn reference(&self) -> Option<i64> {
        self.0.front().map(|(_, lag)| *lag)
    }

    /// Adds a reading taken `at` and forgets those that left the window.
    pub fn record(&mut self, at: Instant, lag: i64) {
        self.0.push_back((at, lag));
        while self
            .0
            .front()
            .is_some_and(|(then, _)| at.duration_since(*then) > TREND_WINDOW)
        {
            self.0.pop_front();
        }
    }
}

/// Builds the group's status line, comparing with an earlier lag (see [`LagHistory`]) to tell the
/// trend.
pub fn group_lag(sample: &GroupSample, previous_lag: Option<i64>) -> GroupLag {
    let partitions = sample.end_offsets.len() as i32;
    let lag = sample.lag();
    let consumers = sample.members.assignments.len() as i32;
    let idle = sample.members.idle(&sample.topic);
    let trend = match previous_lag {
        Some(p) if lag > p => Trend::Growing,
        Some(p) if lag < p => Trend::Draining,
        _ => Trend::Steady,
    };
    let (group, topic) = (&sample.group, &sample.topic);
    let advice = if partitions == 0 {
        format!("topic {topic} does not exist yet: it is created when the services start")
    } else if consumers > 0 && !sample.members.stable {
        format!(
            "group {group} is rebalancing: its {consumers} consumers are being given partitions"
        )
    } else if idle > 0 {
        format!(
            "{idle} of {consumers} consumers idle: {topic} has {partitions} partitions, so at most \
             {partitions} consumers get work; more replicas will not reduce the lag"
        )
    } else if consumers == 0 && lag > 0 {
        format!(
            "no consumer in group {group}: {lag} messages wait; is the {group} service running?"
        )
    } else if trend == Trend::Growing && consumers >= partitions {
        format!(
            "lag growing while every one of the {partitions} partitions has its own consumer: the \
             per-message work is the bottleneck; raise concurrency or lighten the workload"
        )
    } else if trend == Trend::Growing {
        format!(
            "lag growing with {consumers} {} for {partitions} partitions: scaling {group} up to \
             {partitions} replicas spreads the partitions",
            if consumers == 1 {
                "consumer"
            } else {
                "consumers"
            }
        )
    } else if trend == Trend::Draining {
        format!("lag draining: {consumers} consumers keep ahead of the incoming messages")
    } else if lag == 0 {
        format!("keeping up: {consumers} consumers, {partitions} partitions")
    } else {
        format!("{lag} messages wait; the lag is not moving")
    };
    GroupLag {
        group: group.clone(),
        topic: topic.clone(),
        partitions,
        lag,
        consumers,
        idle_consumers: idle,
        trend,
        advice,
    }
}

/// Totals over the groups; the worst group is the one with the largest positive lag.
pub fn summarise(groups: Vec<GroupLag>, orders_per_second: Option<f64>, at: Time) -> KafkaStatus {
    let total_lag = groups.iter().map(|g| g.lag).sum();
    let worst_group = groups
        .iter()
        .filter(|g| g.lag > 0)
        .max_by_key(|g| g.lag)
        .map(|g| g.group.clone());
    KafkaStatus {
        measured_at: Some(at),
        total_lag,
        worst_group,
        orders_per_second,
        groups,
    }
}

/// Orders per second between two readings of the `orders` topic's total end offset.
pub fn rate(
    previous: Option<(i64, std::time::Instant)>,
    now: (i64, std::time::Instant),
) -> Option<f64> {
    let (before, then) = previous?;
    let seconds = now.1.duration_since(then).as_secs_f64();
    (seconds > 0.0 && now.0 >= before)
        .then(|| ((now.0 - before) as f64 / seconds * 100.0).round() / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trend_compares_with_the_oldest_reading_of_the_window() {
        let start = Instant::now();
        let mut history = LagHistory::default();
        assert_eq!(history.reference(), None);
        // A growing lag that reads the same twice in a row still compares with half a minute ago.
        for (second, lag) in [(0, 3), (2, 5), (4, 5), (31, 9), (33, 9)] {
            history.record(start + Duration::from_secs(second), lag);
        }
        assert_eq!(
            history.reference(),
            Some(5),
            "readings older than the window are gone"
        );
        let g = group_lag(
            &sample(&[5, 4], &[Some(0), Some(0)], 1),
            history.reference(),
        );
        assert_eq!(g.trend, Trend::Growing);
        assert!(g.advice.contains("with 1 consumer for"), "{}", g.advice);
    }

    /// A stable group whose consumers share the partitions round robin, as the broker assigns them.
    fn sample(end: &[i64], committed: &[Option<i64>], consumers: i32) -> GroupSample {
        let mut assignments = vec![BTreeMap::new(); consumers as usize];
        let members = assignments.len();
        for p in (0..end.len()).filter(|_| members > 0) {
            let member: &mut BTreeMap<String, Vec<i32>> = &mut assignments[p % members];
            member.entry("orders".into()).or_default().push(p as i32);
        }
        GroupSample {
            group: "processing".into(),
            topic: "orders".into(),
            end_offsets: end.to_vec(),
            committed: committed.to_vec(),
            members: GroupMembers {
                stable: true,
                assignments,
            },
        }
    }

    #[test]
    fn lag_sums_end_minus_committed_and_counts_uncommitted_from_zero() {
        let s = sample(&[10, 5, 7], &[Some(4), None, Some(7)], 3);
        assert_eq!(s.lag(), 6 + 5);
    }

    #[test]
    fn idle_consumers_are_named_with_the_numbers() {
        let s = sample(&[1, 1], &[Some(1), Some(1)], 4);
        let g = group_lag(&s, Some(0));
        assert_eq!((g.consumers, g.idle_consumers, g.partitions), (4, 2, 2));
        assert!(g.advice.contains("2 of 4 consumers idle"), "{}", g.advice);
        assert!(g.advice.contains("2 partitions"), "{}", g.advice);
    }

    #[test]
    fn idle_comes_from_the_assignments_not_from_counting() {
        // Three members for three partitions, but the assignor gave one member two of them.
        let mut s = sample(&[1, 1, 1], &[Some(1); 3], 3);
        s.members.assignments = vec![
            BTreeMap::from([("orders".into(), vec![0, 1])]),
            BTreeMap::from([("orders".into(), vec![2])]),
            BTreeMap::from([("orders".into(), vec![])]),
        ];
        let g = group_lag(&s, Some(0));
        assert_eq!((g.consumers, g.idle_consumers), (3, 1));
        s.members.stable = false;
        let g = group_lag(&s, Some(0));
        assert_eq!(g.idle_consumers, 0, "nothing is idle while partitions move");
        assert!(g.advice.contains("rebalancing"), "{}", g.advice);
    }

    #[test]
    fn growing_lag_with_every_partition_covered_blames_the_work() {
        let s = sample(&[50, 50], &[Some(10), Some(10)], 2);
        let g = group_lag(&s, Some(20));
        assert_eq!(g.trend, Trend::Growing);
        assert!(
            g.advice.contains("per-message work is the bottleneck"),
            "{}",
            g.advice
        );
        let fewer = group_lag(&sample(&[50, 50], &[Some(10), Some(10)], 1), Some(20));
        assert!(
            fewer.advice.contains("up to 2 replicas"),
            "{}",
            fewer.advice
        );
    }

    #[test]
    fn draining_and_missing_consumers_and_topics() {
        let g = group_lag(&sample(&[5], &[Some(4)], 1), Some(3));
        assert_eq!(g.trend, Trend::Draining);
        let g = group_lag(&sample(&[5], &[None], 0), None);
        assert!(g.advice.contains("no consumer"), "{}", g.advice);
        let g = group_lag(&sample(&[], &[], 0), None);
        assert!(g.advice.contains("does not exist yet"), "{}", g.advice);
    }

    #[test]
    fn summary_picks_the_worst_group_and_rate_is_per_second() {
        let a = group_lag(&sample(&[3], &[Some(0)], 1), None);
        let mut b = a.clone();
        b.group = "analytics".into();
        b.lag = 9;
        let s = summarise(
            vec![a, b],
            None,
            Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        );
        assert_eq!(
            (s.total_lag, s.worst_group.as_deref()),
            (12, Some("analytics"))
        );
        let t0 = Instant::now();
        assert_eq!(
            rate(Some((100, t0)), (120, t0 + Duration::from_secs(10))),
            Some(2.0)
        );
        assert_eq!(rate(None, (120, t0)), None);
    }
}
