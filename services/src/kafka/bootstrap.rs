//! Kafka's bootstrap servers, checked once where they are read.

use std::fmt;
use std::str::FromStr;

/// `host:port[,host:port…]`: where librdkafka connects first, and the broker a producer's spans
/// name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    servers: String,
    first: (String, u16),
}

impl Bootstrap {
    /// The list as given: librdkafka's `bootstrap.servers`.
    pub fn servers(&self) -> &str {
        &self.servers
    }

    /// The first server, as `server.address` and `server.port`.
    pub fn first(&self) -> (&str, u16) {
        (&self.first.0, self.first.1)
    }
}

impl FromStr for Bootstrap {
    type Err = String;

    fn from_str(servers: &str) -> Result<Self, String> {
        let host_port = |server: &str| {
            let (host, port) = server.trim().rsplit_once(':')?;
            let port = port.parse::<u16>().ok().filter(|port| *port > 0)?;
            (!host.is_empty()).then(|| (host.to_owned(), port))
        };
        let mut parsed = servers.split(',').map(host_port);
        match parsed.next().flatten() {
            Some(first) if parsed.all(|server| server.is_some()) => Ok(Self {
                servers: servers.to_owned(),
                first,
            }),
            _ => Err("expected a comma-separated list of host:port".into()),
        }
    }
}

impl fmt::Display for Bootstrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.servers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_server_is_the_one_spans_name() {
        let bootstrap: Bootstrap = "lab-kafka:9092, other:9093".parse().unwrap();
        assert_eq!(bootstrap.first(), ("lab-kafka", 9092));
        assert_eq!(bootstrap.servers(), "lab-kafka:9092, other:9093");
    }

    #[test]
    fn every_server_needs_a_host_and_a_port() {
        for servers in [
            "",
            "kafka",
            ":9092",
            "kafka:",
            "kafka:0",
            "a:9092,b:0",
            "a:9092,",
            "a:70000",
        ] {
            assert!(servers.parse::<Bootstrap>().is_err(), "{servers:?}");
        }
    }
}
