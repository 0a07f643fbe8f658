//! What each exercise's outcome looks like in a lab's traces and status: the criteria of the
//! workshop's scenario tests, as a pure function of what a student's lab shows.

use super::spans::Span;
use crate::crd::ComponentStatus;
use std::collections::{BTreeMap, BTreeSet};
use tracing_lab_config::{Role, contract, quote};

/// The exercises whose outcome a lab can be asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Exercise {
    /// Exercise 1: an order is one trace through the four services.
    BasicTracing,
    /// Exercise 5: a service was OOM-killed at its memory limit.
    SevereOom,
    /// Extra: faults on spans, as error spans with an exception and injected latency spans.
    FaultInjection,
    /// Extra: a hop that drops the trace context splits each order into two traces there.
    BrokenPropagation,
    /// Extra: the quote's lookups take their sum or their maximum; a timeout fails the quote.
    SynchronousHop,
}

/// Whether the outcome happened, and what shows it (or what to do next).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub done: bool,
    pub says: String,
}

impl Outcome {
    fn done(says: String) -> Self {
        Self { done: true, says }
    }

    fn not_yet(says: &str) -> Self {
        Self {
            done: false,
            says: says.to_owned(),
        }
    }
}

/// Spans by trace id.
fn traces(spans: &[Span]) -> BTreeMap<&str, Vec<&Span>> {
    let mut traces: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
    for span in spans {
        traces.entry(&span.trace_id).or_default().push(span);
    }
    traces
}

fn is_order_span(span: &Span, role: Role) -> bool {
    span.service == role.name() && span.name == role.order_span()
}

/// Exercise 1: the newest trace holding each service's order span, all for one order.
pub fn basic_tracing(spans: &[Span]) -> Outcome {
    let whole = traces(spans).into_iter().filter_map(|(id, trace)| {
        let orders: Vec<BTreeSet<&str>> = Role::ALL
            .iter()
            .map(|&role| {
                let of_role = trace.iter().filter(|s| is_order_span(s, role));
                of_role.filter_map(|s| s.attr("order.id")).collect()
            })
            .collect();
        let order = orders[0]
            .iter()
            .find(|order| orders.iter().all(|o| o.contains(*order)))?;
        let started = trace.iter().map(|s| s.start_unix_nanos).min()?;
        Some((started, id, order.to_string(), trace.len()))
    });
    match whole.max() {
        Some((_, id, order, spans)) => Outcome::done(format!(
            "order {order} is one trace, {id}: {spans} spans from create_order (api) to \
             analyze_order (analytics)"
        )),
        None => Outcome::not_yet(
            "no trace holds one order's create_order, process_order, notify_order and \
             analyze_order: send an order (Exercise 1, step 2), then ask again once analytics \
             has handled it",
        ),
    }
}

/// Extra, broken propagation: orders whose order spans are not all in one trace, and the
/// services at which a new trace begins.
pub fn broken_propagation(spans: &[Span]) -> Outcome {
    // Each order's trace at each role, in the chain's order.
    let mut orders: BTreeMap<&str, BTreeMap<usize, &str>> = BTreeMap::new();
    for span in spans {
        let role = Role::ALL.iter().position(|&r| is_order_span(span, r));
        if let (Some(role), Some(order)) = (role, span.attr("order.id")) {
            orders
                .entry(order)
                .or_default()
                .insert(role, &span.trace_id);
        }
    }
    let mut split = 0;
    let mut whole = 0;
    let mut where_new: BTreeMap<&str, usize> = BTreeMap::new();
    for hops in orders.values().filter(|hops| hops.len() > 1) {
        let starts: Vec<usize> = hops
            .iter()
            .zip(hops.iter().skip(1))
            .filter(|((_, a), (_, b))| a != b)
            .map(|(_, (role, _))| *role)
            .collect();
        if starts.is_empty() {
            whole += 1;
        }
        for role in &starts {
            *where_new.entry(Role::ALL[*role].name()).or_default() += 1;
        }
        split += usize::from(!starts.is_empty());
    }
    if split == 0 {
        return Outcome::not_yet(
            "every order seen in two or more services is one trace: apply \
             examples/broken-propagation.yaml and let its load generator send orders",
        );
    }
    let at: Vec<String> = where_new
        .iter()
        .map(|(service, n)| format!("{service} ({n})"))
        .collect();
    Outcome::done(format!(
        "{split} orders split into separate traces, {whole} whole; a new trace begins at {}: \
         that hop ignores the context its input carries",
        at.join(", ")
    ))
}

/// Extra, fault injection: error spans whose exception is an injected fault, and the spans of
/// injected latency.
pub fn fault_injection(spans: &[Span]) -> Outcome {
    let mut failed: BTreeMap<&str, usize> = BTreeMap::new();
    for span in spans.iter().filter(|s| s.error) {
        let injected = span.events.iter().any(|(name, attributes)| {
            name == "exception"
                && attributes.get("exception.type").and_then(|t| t.as_str())
                    == Some(contract::INJECTED_FAULT)
        });
        if injected {
            *failed.entry(&span.name).or_default() += 1;
        }
    }
    let mut delays: Vec<f64> = spans
        .iter()
        .filter(|s| s.name == contract::INJECTED_LATENCY_SPAN)
        .map(Span::duration_ms)
        .collect();
    delays.sort_by(f64::total_cmp);
    if failed.is_empty() && delays.is_empty() {
        return Outcome::not_yet(
            "no error span with an InjectedFault exception and no injected_latency span: apply \
             examples/fault-injection.yaml and let its load generator send orders",
        );
    }
    let failed: Vec<String> = failed
        .iter()
        .map(|(span, n)| format!("{n} {span}"))
        .collect();
    let delays = match delays.get(delays.len() / 2) {
        Some(median) => format!(
            "{} injected_latency spans, median {median:.0} ms",
            delays.len()
        ),
        None => "no injected_latency span".to_owned(),
    };
    Outcome::done(format!(
        "error spans with an InjectedFault exception: {}; {delays}",
        if failed.is_empty() {
            "none".to_owned()
        } else {
            failed.join(", ")
        }
    ))
}

/// Extra, a synchronous hop: each order's quote (its trace's `get_quote` span and the client
/// spans of its lookups), by how the lookups were made, and the lookups that failed.
pub fn synchronous_hop(spans: &[Span]) -> Outcome {
    // `quote.calls` → (get_quote, the lookups' sum, the longest lookup), in ms.
    let mut made: BTreeMap<&str, Vec<(f64, f64, f64)>> = BTreeMap::new();
    // `error.type` → failed lookups.
    let mut failed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failed_quotes = 0;
    for trace in traces(spans).values() {
        let Some(quote) = trace.iter().find(|s| s.name == quote::QUOTE_SPAN) else {
            continue;
        };
        let lookups = trace
            .iter()
            .filter(|s| s.name == quote::LOOKUP_SPAN && s.service == quote::CLIENT.name());
        if quote.error {
            failed_quotes += 1;
            for lookup in lookups.filter(|l| l.error) {
                *failed
                    .entry(lookup.attr("error.type").unwrap_or("unknown"))
                    .or_default() += 1;
            }
            continue;
        }
        let ms: Vec<f64> = lookups.map(|l| l.duration_ms()).collect();
        let calls = quote.attr("quote.calls").unwrap_or("unknown");
        made.entry(calls).or_default().push((
            quote.duration_ms(),
            ms.iter().sum(),
            ms.iter().copied().fold(0.0, f64::max),
        ));
    }
    if made.is_empty() && failed_quotes == 0 {
        return Outcome::not_yet(
            "no get_quote span: apply examples/synchronous-hop.yaml and let its load generator \
             send orders",
        );
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let mut says: Vec<String> = made
        .into_iter()
        .map(|(calls, quotes)| {
            let of = |f: fn(&(f64, f64, f64)) -> f64| median(quotes.iter().map(f).collect());
            format!(
                "{calls}: {} quotes, get_quote median {:.0} ms for lookups of {:.0} ms in all \
                 (the longest {:.0} ms)",
                quotes.len(),
                of(|q| q.0),
                of(|q| q.1),
                of(|q| q.2),
            )
        })
        .collect();
    if failed_quotes > 0 {
        let why: Vec<String> = failed
            .iter()
            .map(|(kind, n)| format!("{n} with error.type {kind}"))
            .collect();
        says.push(format!(
            "{failed_quotes} quotes failed, their lookups: {}",
            if why.is_empty() {
                "none failed".to_owned()
            } else {
                why.join(", ")
            }
        ));
    }
    Outcome::done(says.join("; "))
}

/// Exercise 5: a component the kernel killed at its memory limit, as the lab's status names it
/// now, or as its pods' last terminations say (`OOMKilled`).
pub fn severe_oom(
    components: &BTreeMap<String, ComponentStatus>,
    last_terminations: &[(String, String)],
) -> Outcome {
    let now = components
        .iter()
        .find(|(_, c)| c.reason.as_deref() == Some("OOMKilled"));
    if let Some((name, c)) = now {
        return Outcome::done(format!(
            "{name}: {}",
            c.message.as_deref().unwrap_or("OOMKilled")
        ));
    }
    let killed: Vec<&str> = last_terminations
        .iter()
        .filter(|(_, reason)| reason == "OOMKilled")
        .map(|(container, _)| container.as_str())
        .collect();
    if killed.is_empty() {
        return Outcome::not_yet(
            "no container of the lab was OOM-killed: apply examples/severe-oom.yaml and wait for \
             two severe orders at once in one processing pod",
        );
    }
    Outcome::done(format!(
        "OOMKilled before its last restart: {}",
        killed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn span(trace: &str, role: Role, order: &str) -> Span {
        Span {
            trace_id: trace.into(),
            span_id: format!("{trace}-{}", role.name()),
            service: role.name().into(),
            name: role.order_span().into(),
            error: false,
            start_unix_nanos: 1,
            end_unix_nanos: 2,
            attributes: [("order.id".to_owned(), json!(order))].into(),
            events: vec![],
        }
    }

    fn order(traces: [&str; 4], order: &str) -> Vec<Span> {
        Role::ALL
            .iter()
            .zip(traces)
            .map(|(&role, trace)| span(trace, role, order))
            .collect()
    }

    #[test]
    fn one_order_in_one_trace_is_basic_tracing() {
        let done = basic_tracing(&order(["t1"; 4], "o-1"));
        assert!(done.done, "{done:?}");
        assert!(
            done.says.contains("order o-1 is one trace, t1: 4 spans"),
            "{done:?}"
        );
        let broken = order(["t1", "t1", "t2", "t2"], "o-1");
        assert!(!basic_tracing(&broken).done);
        // Four services in one trace, but for two orders: not one order's trace.
        let mut mixed = order(["t1"; 4], "o-1");
        mixed[3] = span("t1", Role::Analytics, "o-2");
        assert!(!basic_tracing(&mixed).done);
        assert!(!basic_tracing(&[]).done);
    }

    #[test]
    fn a_new_trace_names_the_hop_that_dropped_the_context() {
        let mut spans = order(["t1", "t1", "t2", "t2"], "o-1");
        spans.extend(order(["t3", "t3", "t4", "t4"], "o-2"));
        let outcome = broken_propagation(&spans);
        assert!(outcome.done, "{outcome:?}");
        assert!(outcome.says.starts_with("2 orders split"), "{outcome:?}");
        assert!(
            outcome.says.contains("begins at notification (2)"),
            "{outcome:?}"
        );
        assert!(!broken_propagation(&order(["t1"; 4], "o-1")).done);
    }

    #[test]
    fn injected_faults_and_latency_show_on_spans() {
        let mut failed = span("t1", Role::Notification, "o-1");
        failed.error = true;
        failed.events = vec![(
            "exception".into(),
            [("exception.type".to_owned(), json!(contract::INJECTED_FAULT))].into(),
        )];
        let mut delay = span("t2", Role::Analytics, "o-2");
        delay.name = contract::INJECTED_LATENCY_SPAN.into();
        delay.end_unix_nanos = 500_000_001;
        let outcome = fault_injection(&[failed.clone(), delay]);
        assert!(outcome.done, "{outcome:?}");
        assert!(
            outcome
                .says
                .contains("1 notify_order; 1 injected_latency spans, median 500 ms"),
            "{outcome:?}"
        );
        // An error that was not injected is not the exercise's.
        failed.events.clear();
        assert!(!fault_injection(&[failed]).done);
    }

    #[test]
    fn quotes_are_told_apart_by_how_their_lookups_were_made() {
        let quote = |trace: &str, calls: &str, ms: u64, lookups: &[(u64, Option<&str>)]| {
            let mut spans = vec![Span {
                trace_id: trace.into(),
                span_id: format!("{trace}-quote"),
                service: "api".into(),
                name: quote::QUOTE_SPAN.into(),
                error: lookups.iter().any(|(_, e)| e.is_some()),
                start_unix_nanos: 0,
                end_unix_nanos: ms * 1_000_000,
                attributes: [("quote.calls".to_owned(), json!(calls))].into(),
                events: vec![],
            }];
            for (i, (ms, error)) in lookups.iter().enumerate() {
                let mut attributes = BTreeMap::new();
                if let Some(kind) = error {
                    attributes.insert("error.type".to_owned(), json!(kind));
                }
                let lookup = Span {
                    span_id: format!("{trace}-{i}"),
                    name: quote::LOOKUP_SPAN.into(),
                    error: error.is_some(),
                    end_unix_nanos: ms * 1_000_000,
                    attributes,
                    ..spans[0].clone()
                };
                // Analytics' answer has the same name: it is not the api's lookup.
                let answer = Span {
                    service: "analytics".into(),
                    end_unix_nanos: 1,
                    ..lookup.clone()
                };
                spans.extend([lookup, answer]);
            }
            spans
        };
        assert!(!synchronous_hop(&order(["t1"; 4], "o-1")).done);
        let mut spans = quote(
            "t1",
            "sequential",
            310,
            &[(100, None), (100, None), (105, None)],
        );
        spans.extend(quote(
            "t2",
            "parallel",
            106,
            &[(100, None), (100, None), (105, None)],
        ));
        spans.extend(quote(
            "t3",
            "parallel",
            501,
            &[(501, Some("timeout")), (501, Some("timeout"))],
        ));
        let outcome = synchronous_hop(&spans);
        assert!(outcome.done, "{outcome:?}");
        assert_eq!(
            outcome.says,
            "parallel: 1 quotes, get_quote median 106 ms for lookups of 305 ms in all (the longest \
             105 ms); sequential: 1 quotes, get_quote median 310 ms for lookups of 305 ms in all \
             (the longest 105 ms); 1 quotes failed, their lookups: 2 with error.type timeout"
        );
    }

    #[test]
    fn an_oom_kill_is_read_from_the_status_or_the_last_termination() {
        let mut components = BTreeMap::new();
        assert!(!severe_oom(&components, &[]).done);
        let earlier = [(
            "lab-processing-1/processing".to_owned(),
            "OOMKilled".to_owned(),
        )];
        assert!(severe_oom(&components, &earlier).done);
        components.insert(
            "processing".to_owned(),
            ComponentStatus {
                reason: Some("OOMKilled".into()),
                message: Some("OOMKilled (exit 137), 1 restarts".into()),
                ..Default::default()
            },
        );
        let outcome = severe_oom(&components, &[]);
        assert_eq!(outcome.says, "processing: OOMKilled (exit 137), 1 restarts");
    }
}
