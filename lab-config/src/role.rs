use crate::workload::{Faults, Intensity, WorkloadMix};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The four lab services, in pipeline order.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Api,
    Processing,
    Notification,
    Analytics,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Self::Api,
        Self::Processing,
        Self::Notification,
        Self::Analytics,
    ];
    /// The roles that consume from Kafka.
    pub const CONSUMERS: [Role; 3] = [Self::Processing, Self::Notification, Self::Analytics];

    pub fn name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Processing => "processing",
            Self::Notification => "notification",
            Self::Analytics => "analytics",
        }
    }

    /// The span of one order in this role, the parent of everything the role does for it: what
    /// a student searches in Jaeger, and what `tracing-lab-operator check` looks for.
    pub fn order_span(self) -> &'static str {
        match self {
            Self::Api => "create_order",
            Self::Processing => "process_order",
            Self::Notification => "notify_order",
            Self::Analytics => "analyze_order",
        }
    }

    /// Topic this role consumes; its consumer group is named after the role.
    pub fn input_topic(self) -> Option<&'static str> {
        match self {
            Self::Api => None,
            Self::Processing => Some("orders"),
            Self::Notification => Some("processed-orders"),
            Self::Analytics => Some("notified-orders"),
        }
    }

    /// Topic this role publishes to.
    pub fn output_topic(self) -> Option<&'static str> {
        match self {
            Self::Api => Some("orders"),
            Self::Processing => Some("processed-orders"),
            Self::Notification => Some("notified-orders"),
            Self::Analytics => None,
        }
    }

    /// Consumer group name (`None` for the api, which only produces).
    pub fn consumer_group(self) -> Option<&'static str> {
        self.input_topic().map(|_| self.name())
    }

    /// The original lab's table.
    pub fn defaults(self) -> RoleSettings {
        use Intensity::*;
        let workload = match self {
            Self::Api => WorkloadMix::new(40, 60, &[Light, Medium]),
            Self::Processing => WorkloadMix::new(70, 30, &[Medium, Heavy, Severe]),
            Self::Notification => WorkloadMix::new(30, 70, &[Light, Medium, Heavy]),
            Self::Analytics => WorkloadMix::new(50, 50, &[Medium, Heavy, Severe]),
        };
        RoleSettings {
            concurrency: 1,
            workload,
            faults: Faults::default(),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown role {s:?}; expected one of api, processing, notification, analytics"
                )
            })
    }
}

pub(crate) fn api_defaults() -> RoleSettings {
    Role::Api.defaults()
}
pub(crate) fn processing_defaults() -> RoleSettings {
    Role::Processing.defaults()
}
pub(crate) fn notification_defaults() -> RoleSettings {
    Role::Notification.defaults()
}
pub(crate) fn analytics_defaults() -> RoleSettings {
    Role::Analytics.defaults()
}

/// What one service does per message, fully resolved.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleSettings {
    /// Messages processed at once by one replica; 1 gives head-of-line blocking.
    #[serde(default = "one")]
    pub concurrency: u32,
    pub workload: WorkloadMix,
    #[serde(default)]
    pub faults: Faults,
}

fn one() -> u32 {
    1
}

impl RoleSettings {
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(1..=64).contains(&self.concurrency) {
            p.push(format!(
                "concurrency must be 1..=64, got {}",
                self.concurrency
            ));
        }
        p.extend(self.workload.problems());
        p.extend(self.faults.problems());
        p
    }
}

/// A user's changes to one role's defaults, as written in the `TracingLab` spec.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RoleOverrides {
    /// Messages processed at once by one replica (1 = single-threaded, head-of-line blocking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub concurrency: Option<u32>,
    /// Workload mix; defaults to the original lab's mix for this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadMix>,
    /// Fault injection; defaults to none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<Faults>,
}

impl RoleOverrides {
    pub fn resolve(&self, role: Role) -> RoleSettings {
        let defaults = role.defaults();
        RoleSettings {
            concurrency: self.concurrency.unwrap_or(defaults.concurrency),
            workload: self.workload.clone().unwrap_or(defaults.workload),
            faults: self.faults.clone().unwrap_or(defaults.faults),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_name() {
        let o = RoleOverrides {
            concurrency: Some(4),
            ..Default::default()
        };
        let s = o.resolve(Role::Processing);
        assert_eq!(s.concurrency, 4);
        assert_eq!(s.workload, Role::Processing.defaults().workload);
    }

    #[test]
    fn topics_chain_the_pipeline() {
        for pair in Role::ALL.windows(2) {
            assert_eq!(pair[0].output_topic(), pair[1].input_topic());
        }
        assert_eq!(Role::Processing.consumer_group(), Some("processing"));
        assert_eq!(Role::Api.consumer_group(), None);
        assert_eq!("notification".parse::<Role>().unwrap(), Role::Notification);
        assert!("billing".parse::<Role>().unwrap_err().contains("billing"));
    }
}
