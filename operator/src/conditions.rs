//! Status conditions as the Kubernetes API conventions define them, for the reconciler's
//! conditions and the lag monitor's alike: each names the generation it describes, and keeps its
//! `lastTransitionTime` until its status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// What a new condition is measured against: the object's conditions so far, its generation, and
/// the time of the observation.
pub struct Observation<'a> {
    pub previous: &'a [Condition],
    pub generation: Option<i64>,
    pub now: Time,
}

impl Observation<'_> {
    /// Condition `type_` as observed now.
    pub fn condition(&self, type_: &str, status: bool, reason: &str, message: String) -> Condition {
        let status = if status { "True" } else { "False" }.to_string();
        let last_transition_time = match self.previous.iter().find(|c| c.type_ == type_) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => self.now.clone(),
        };
        Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            last_transition_time,
            observed_generation: self.generation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn the_transition_time_moves_only_when_the_status_does() {
        let at = |s: i64| Time(Timestamp::from_second(s).unwrap());
        let first = Observation {
            previous: &[],
            generation: Some(1),
            now: at(10),
        }
        .condition("Ready", false, "RollingOut", "waiting".into());
        assert_eq!(first.last_transition_time, at(10));
        let previous = [first];
        let observe = |now| Observation {
            previous: &previous,
            generation: Some(2),
            now,
        };
        let same = observe(at(20)).condition("Ready", false, "Blocked", "kafka".into());
        assert_eq!(
            (
                same.last_transition_time,
                same.observed_generation,
                same.reason.as_str()
            ),
            (at(10), Some(2), "Blocked")
        );
        let flipped =
            observe(at(30)).condition("Ready", true, "AllComponentsAvailable", String::new());
        assert_eq!(
            (flipped.status.as_str(), flipped.last_transition_time),
            ("True", at(30))
        );
        let other = observe(at(40)).condition("Degraded", false, "AsExpected", String::new());
        assert_eq!(
            other.last_transition_time,
            at(40),
            "another type's history is not this one's"
        );
    }
}
