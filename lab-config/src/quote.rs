//! The synchronous hop: before it takes an order, the api asks analytics over HTTP for the three
//! parts of a quote, inside the order's request. Which role asks and which answers is fixed here;
//! how (one after another or all at once, with what timeout) and how the answers behave is the
//! lab's setting.

use crate::Role;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The role that asks for quotes.
pub const CLIENT: Role = Role::Api;
/// The role that answers them, at `GET /quote/{part}` on its HTTP port.
pub const SERVER: Role = Role::Analytics;
/// The route the server answers on, as it appears in `http.route` and the spans' names.
pub const ROUTE: &str = "/quote/{part}";
/// The span holding one order's lookups, in the client.
pub const QUOTE_SPAN: &str = "get_quote";
/// The name of a lookup's spans, client and server alike (`{method} {route}`).
pub const LOOKUP_SPAN: &str = "GET /quote/{part}";
/// The lookups of one quote, each one HTTP call.
pub const PARTS: [&str; 3] = ["price", "stock", "shipping"];
/// The longest `timeoutMs`: a quote of sequential lookups then takes at most 30 s, which the load
/// generator waits for.
pub const MAX_TIMEOUT_MS: u64 = 10_000;

/// How the api makes a quote's lookups.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Calls {
    /// One after another, stopping at the first that fails: the quote takes the sum of its lookups.
    #[default]
    Sequential,
    /// All at once: the quote takes as long as its slowest lookup.
    Parallel,
}

impl Calls {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sequential => "sequential",
            Self::Parallel => "parallel",
        }
    }
}

/// The synchronous hop from the api to analytics. Off by default: the lab is asynchronous.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuoteSettings {
    /// The api asks analytics for a quote (price, stock, shipping: three HTTP calls) before it
    /// takes each order.
    #[serde(default)]
    pub enabled: bool,
    /// `Sequential` (the quote takes the sum of its lookups) or `Parallel` (their maximum).
    #[serde(default)]
    pub calls: Calls,
    /// The api gives up on a lookup after this many milliseconds. A lookup that fails or times
    /// out fails the order, as a caller without a fallback does: the api answers 504 (timed
    /// out), 502 (analytics answered an error) or 503 (analytics unreachable) and takes nothing.
    #[serde(default = "default_timeout_ms")]
    #[schemars(range(min = 1, max = 10000))]
    pub timeout_ms: u64,
    /// How long analytics takes to answer one lookup, in milliseconds. Above `timeoutMs` every
    /// quote times out.
    #[serde(default = "default_lookup_ms")]
    #[schemars(range(max = 60000))]
    pub lookup_ms: u64,
    /// Fraction of lookups analytics fails with HTTP 500 (0..=1).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub error_rate: f64,
}

fn default_timeout_ms() -> u64 {
    1000
}
fn default_lookup_ms() -> u64 {
    50
}

impl Default for QuoteSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            calls: Calls::default(),
            timeout_ms: default_timeout_ms(),
            lookup_ms: default_lookup_ms(),
            error_rate: 0.0,
        }
    }
}

impl QuoteSettings {
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(1..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            p.push(format!(
                "quote.timeoutMs must be 1..={MAX_TIMEOUT_MS}, got {}",
                self.timeout_ms
            ));
        }
        if self.lookup_ms > 60_000 {
            p.push(format!(
                "quote.lookupMs must be at most 60000, got {}",
                self.lookup_ms
            ));
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            p.push(format!(
                "quote.errorRate must be 0..=1, got {}",
                self.error_rate
            ));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_span_is_named_by_its_method_and_route() {
        assert_eq!(LOOKUP_SPAN, format!("GET {ROUTE}"));
    }

    #[test]
    fn out_of_range_settings_are_named() {
        let bad = QuoteSettings {
            timeout_ms: 0,
            lookup_ms: 60_001,
            error_rate: 1.5,
            ..Default::default()
        };
        let problems = bad.problems().join("; ");
        for field in ["quote.timeoutMs", "quote.lookupMs", "quote.errorRate"] {
            assert!(problems.contains(field), "{problems}");
        }
        assert!(QuoteSettings::default().problems().is_empty());
    }
}
