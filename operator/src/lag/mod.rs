//! Kafka consumer lag of every lab, on a short period, into the lab's status.
//!
//! [`client`] speaks the Kafka protocol over one kept connection per lab, [`report`] turns the
//! broker's numbers into lag, trends and scaling advice (pure), [`monitor`] sweeps all labs. The
//! status it writes is the CRD's [`KafkaStatus`](crate::crd::KafkaStatus).

pub mod client;
pub mod monitor;
pub mod report;

pub use monitor::{Config, Monitor};
