//! The standard `OTEL_*` variables, parsed strictly: a value the SDK would silently replace by a
//! default is an error naming the variable instead.

use opentelemetry_sdk::trace::Sampler;
use tracing_lab_config::contract::{JaegerRemoteArg, Sampler as SamplerName, env};

/// Transport of the OTLP span exporter (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// What `init` builds, read from the environment.
#[derive(Clone, Debug)]
pub struct TelemetrySettings {
    /// `OTEL_SDK_DISABLED=true`: no tracer provider at all, logs only.
    pub sdk_disabled: bool,
    /// Service name when neither `OTEL_SERVICE_NAME` nor `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES` gives one.
    pub fallback_service_name: Option<String>,
    /// `Some` when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-specific variable) is set;
    /// the exporter reads the endpoint itself.
    pub exporter: Option<Protocol>,
    pub sampler: SamplerSetting,
}

/// The sampler `init` installs.
#[derive(Clone, Debug)]
pub enum SamplerSetting {
    /// One of the SDK's samplers that decide alone.
    Local(Sampler),
    /// Jaeger's remote sampler: asks Jaeger for the service's strategy, at once and then at the
    /// interval; it needs the service's name and a runtime, so `init` builds it.
    JaegerRemote {
        /// Whether a span with a parent follows the parent's decision (`parentbased_…`).
        parent_based: bool,
        arg: JaegerRemoteArg,
    },
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{variable}={value:?} is invalid: {reason}")]
pub struct SettingError {
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
}

fn invalid(variable: &'static str, value: &str, reason: impl Into<String>) -> SettingError {
    SettingError {
        variable,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

impl TelemetrySettings {
    /// Reads the settings through `var`, which returns a variable's value (`std::env::var` in
    /// production, a map in tests). Empty values count as unset, as the specification says.
    pub fn from_lookup(
        default_service_name: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());

        let sdk_disabled = match get("OTEL_SDK_DISABLED") {
            None => false,
            Some(v) => parse_bool("OTEL_SDK_DISABLED", &v)?,
        };

        let resource_attributes = get(env::OTEL_RESOURCE_ATTRIBUTES);
        let named_in_attributes = match &resource_attributes {
            None => false,
            Some(attrs) => check_resource_attributes(attrs)?,
        };
        let fallback_service_name = (get(env::OTEL_SERVICE_NAME).is_none() && !named_in_attributes)
            .then(|| default_service_name.to_owned());

        let endpoint_set = get(env::OTEL_EXPORTER_OTLP_ENDPOINT).is_some()
            || get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some();
        let protocol = match get(env::OTEL_EXPORTER_OTLP_PROTOCOL) {
            // The specification's default.
            None => Protocol::HttpProtobuf,
            Some(v) => parse_protocol(&v)?,
        };

        let sampler = parse_sampler(
            get(env::OTEL_TRACES_SAMPLER).as_deref(),
            get(env::OTEL_TRACES_SAMPLER_ARG).as_deref(),
        )?;

        Ok(Self {
            sdk_disabled,
            fallback_service_name,
            exporter: endpoint_set.then_some(protocol),
            sampler,
        })
    }
}

fn parse_bool(variable: &'static str, value: &str) -> Result<bool, SettingError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(variable, value, "expected true or false")),
    }
}

fn parse_protocol(value: &str) -> Result<Protocol, SettingError> {
    match value.trim() {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        _ => Err(invalid(
            env::OTEL_EXPORTER_OTLP_PROTOCOL,
            value,
            "expected grpc or http/protobuf",
        )),
    }
}

/// Checks the `key=value,...` syntax the SDK would otherwise skip silently; tells whether
/// `service.name` is among the keys.
fn check_resource_attributes(value: &str) -> Result<bool, SettingError> {
    let mut names_service = false;
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((key, _)) if !key.trim().is_empty() => {
                names_service |=
                    key.trim() == opentelemetry_semantic_conventions::resource::SERVICE_NAME;
            }
            _ => {
                return Err(invalid(
                    env::OTEL_RESOURCE_ATTRIBUTES,
                    value,
                    format!("{pair:?} is not of the form key=value"),
                ));
            }
        }
    }
    Ok(names_service)
}

fn parse_sampler(name: Option<&str>, arg: Option<&str>) -> Result<SamplerSetting, SettingError> {
    let ratio = || -> Result<f64, SettingError> {
        // A missing argument means 1.0 (specification); a wrong one is an error.
        let Some(arg) = arg else { return Ok(1.0) };
        match arg.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err(invalid(
                env::OTEL_TRACES_SAMPLER_ARG,
                arg,
                "expected a ratio between 0.0 and 1.0",
            )),
        }
    };
    let named = match name.map(str::trim) {
        // The specification's default.
        None => SamplerName::ParentBasedAlwaysOn,
        Some(name) => SamplerName::named(name).ok_or_else(|| {
            let names: Vec<&str> = SamplerName::ALL.iter().map(|s| s.as_str()).collect();
            invalid(
                env::OTEL_TRACES_SAMPLER,
                name,
                format!("supported samplers are {}", names.join(", ")),
            )
        })?,
    };
    let remote = |parent_based: bool| -> Result<SamplerSetting, SettingError> {
        let arg = arg.unwrap_or_default();
        let arg = JaegerRemoteArg::parse(arg)
            .map_err(|reason| invalid(env::OTEL_TRACES_SAMPLER_ARG, arg, reason))?;
        Ok(SamplerSetting::JaegerRemote { parent_based, arg })
    };
    let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
    Ok(SamplerSetting::Local(match named {
        SamplerName::AlwaysOn => Sampler::AlwaysOn,
        SamplerName::AlwaysOff => Sampler::AlwaysOff,
        SamplerName::TraceIdRatio => Sampler::TraceIdRatioBased(ratio()?),
        SamplerName::ParentBasedAlwaysOn => parent_based(Sampler::AlwaysOn),
        SamplerName::ParentBasedAlwaysOff => parent_based(Sampler::AlwaysOff),
        SamplerName::ParentBasedTraceIdRatio => parent_based(Sampler::TraceIdRatioBased(ratio()?)),
        SamplerName::JaegerRemote => return remote(false),
        SamplerName::ParentBasedJaegerRemote => return remote(true),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<TelemetrySettings, SettingError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TelemetrySettings::from_lookup("api", |name| map.get(name).cloned())
    }

    #[test]
    fn nothing_set_gives_logs_only_with_the_default_name() {
        let s = settings(&[]).unwrap();
        assert!(!s.sdk_disabled);
        assert_eq!(s.exporter, None);
        assert_eq!(s.fallback_service_name.as_deref(), Some("api"));
        assert!(format!("{:?}", s.sampler).contains("ParentBased(AlwaysOn)"));
    }

    #[test]
    fn endpoint_enables_the_exporter_with_the_chosen_protocol() {
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]).unwrap();
        assert_eq!(s.exporter, Some(Protocol::HttpProtobuf));
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])
        .unwrap();
        assert_eq!(s.exporter, Some(Protocol::Grpc));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (vars, variable) in [
            (
                vec![("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![("OTEL_TRACES_SAMPLER", "sometimes")],
                "OTEL_TRACES_SAMPLER",
            ),
            (
                vec![("OTEL_TRACES_SAMPLER", "jaeger_remote")],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                vec![
                    ("OTEL_TRACES_SAMPLER", "parentbased_jaeger_remote"),
                    (
                        "OTEL_TRACES_SAMPLER_ARG",
                        "endpoint=http://j:5778/sampling,rate=1",
                    ),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                vec![
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "half"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                vec![
                    ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (vec![("OTEL_SDK_DISABLED", "yes")], "OTEL_SDK_DISABLED"),
            (
                vec![("OTEL_RESOURCE_ATTRIBUTES", "a=b,oops")],
                "OTEL_RESOURCE_ATTRIBUTES",
            ),
        ] {
            let err = settings(&vars).unwrap_err();
            assert_eq!(err.variable, variable);
            assert!(err.to_string().starts_with(variable), "{err}");
        }
    }

    #[test]
    fn samplers_follow_the_specification() {
        let s = settings(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ])
        .unwrap();
        assert!(format!("{:?}", s.sampler).contains("TraceIdRatioBased(0.25)"));
        let s = settings(&[("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")]).unwrap();
        assert!(format!("{:?}", s.sampler).contains("ParentBased(TraceIdRatioBased(1.0))"));
        let s = settings(&[("OTEL_TRACES_SAMPLER", "always_off")]).unwrap();
        assert!(matches!(
            s.sampler,
            SamplerSetting::Local(Sampler::AlwaysOff)
        ));
        let s = settings(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_jaeger_remote"),
            (
                "OTEL_TRACES_SAMPLER_ARG",
                "endpoint=http://j:5778/sampling,pollingIntervalMs=2000,initialSamplingRate=0.5",
            ),
        ])
        .unwrap();
        let SamplerSetting::JaegerRemote { parent_based, arg } = s.sampler else {
            panic!("{:?}", s.sampler)
        };
        assert!(parent_based);
        assert_eq!(arg.endpoint, "http://j:5778/sampling");
        assert_eq!(arg.polling_interval, std::time::Duration::from_secs(2));
        assert_eq!(arg.initial_sampling_rate, 0.5);
    }

    #[test]
    fn service_name_from_the_environment_wins_over_the_default() {
        let s = settings(&[("OTEL_SERVICE_NAME", "processing")]).unwrap();
        assert_eq!(s.fallback_service_name, None);
        let s = settings(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.namespace=lab, service.name=x",
        )])
        .unwrap();
        assert_eq!(s.fallback_service_name, None);
        let s = settings(&[("OTEL_SDK_DISABLED", "TRUE"), ("OTEL_SERVICE_NAME", " ")]).unwrap();
        assert!(s.sdk_disabled);
        assert_eq!(s.fallback_service_name.as_deref(), Some("api"));
    }
}
