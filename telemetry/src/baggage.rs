//! W3C baggage the lab puts on spans: a value set at the edge (by the client or the load
//! generator) travels with the trace context over HTTP and every Kafka hop, and becomes an
//! attribute of every span started in its context, in every service, so that Jaeger finds a
//! request's spans by it. Only the keys listed here, with their listed values: baggage comes from
//! clients, and nothing else of it (a name, an e-mail address) may reach a span.

use opentelemetry::Context;
use opentelemetry::KeyValue;
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::trace::Span as _;
use opentelemetry_sdk::trace::Span;

/// The customer's tier: which kind of customer sent the order.
pub const CUSTOMER_TIER: &str = "customer.tier";
/// Every tier a span may name.
pub const CUSTOMER_TIERS: [&str; 3] = ["free", "standard", "premium"];

/// The span attribute for one baggage entry, if the lab puts that entry on spans.
pub fn span_attribute(key: &str, value: &str) -> Option<KeyValue> {
    (key == CUSTOMER_TIER && CUSTOMER_TIERS.contains(&value))
        .then(|| KeyValue::new(CUSTOMER_TIER, value.to_owned()))
}

/// Sets the allowed baggage entries of a span's context as its attributes, as it starts.
pub(crate) fn set_on(span: &mut Span, cx: &Context) {
    for (key, (value, _)) in cx.baggage() {
        if let Some(attribute) = span_attribute(key.as_str(), value.as_str()) {
            span.set_attribute(attribute);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_keys_with_listed_values_reach_spans() {
        assert_eq!(
            span_attribute("customer.tier", "premium"),
            Some(KeyValue::new("customer.tier", "premium"))
        );
        assert_eq!(span_attribute("customer.tier", "alice@example.com"), None);
        assert_eq!(span_attribute("user.email", "free"), None);
        assert_eq!(span_attribute("Customer.Tier", "free"), None);
    }
}
