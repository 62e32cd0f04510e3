//! A broker's counters: what it sent, refused, lost and received, and whether it is connected.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use metrics::{Counter, Gauge, counter, gauge};

use crate::metrics::names;

/// What a broker between nodes did so far ([`Hub::broker_stats`](crate::Hub::broker_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStats {
    /// Publications the broker's server acknowledged (Redis), or that were handed to the
    /// client (NATS, whose core protocol acknowledges nothing).
    pub published: u64,
    /// Publications refused because the publish buffer was full (the publisher got an error).
    pub rejected: u64,
    /// Publications that were sent when the connection failed, or waited when the broker
    /// was dropped: they may not have reached the other nodes.
    pub lost: u64,
    /// Publications that arrived from other nodes.
    pub received: u64,
    /// Envelopes that arrived malformed and were skipped.
    pub invalid: u64,
    /// Times the subscriber connection was lost and dialled again (what other nodes
    /// published meanwhile did not reach this node).
    pub reconnects: u64,
    /// Messages the broker's client dropped because this node read a room too slowly (NATS
    /// slow-consumer events, one per message; a lower bound, as the client can drop events).
    pub slow_consumer_events: u64,
    /// Whether the subscriber connection is up now.
    pub connected: bool,
}

#[derive(Debug)]
pub(crate) struct StatCounters {
    published: AtomicU64,
    rejected: AtomicU64,
    lost: AtomicU64,
    received: AtomicU64,
    invalid: AtomicU64,
    reconnects: AtomicU64,
    slow_consumer_events: AtomicU64,
    connected: AtomicBool,
    metrics: Handles,
}

#[derive(Debug)]
struct Handles {
    published: Counter,
    rejected: Counter,
    lost: Counter,
    received: Counter,
    invalid: Counter,
    reconnects: Counter,
    slow_consumer_events: Counter,
    connected: Gauge,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Stat {
    Published,
    Rejected,
    Lost,
    Received,
    Invalid,
    Reconnects,
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    SlowConsumerEvents,
}

impl StatCounters {
    /// Counters whose metrics carry the label `broker = kind`.
    pub(crate) fn new(kind: &'static str) -> Self {
        let label = [("broker", kind)];
        Self {
            published: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            received: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            slow_consumer_events: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            metrics: Handles {
                published: counter!(names::BROKER_PUBLISHED, &label),
                rejected: counter!(names::BROKER_REJECTED, &label),
                lost: counter!(names::BROKER_LOST, &label),
                received: counter!(names::BROKER_RECEIVED, &label),
                invalid: counter!(names::BROKER_INVALID, &label),
                reconnects: counter!(names::BROKER_RECONNECTS, &label),
                slow_consumer_events: counter!(names::BROKER_SLOW_CONSUMER_EVENTS, &label),
                connected: gauge!(names::BROKER_CONNECTED, &label),
            },
        }
    }

    pub(crate) fn add(&self, stat: Stat, n: u64) {
        if n == 0 {
            return;
        }
        let (atomic, metric) = match stat {
            Stat::Published => (&self.published, &self.metrics.published),
            Stat::Rejected => (&self.rejected, &self.metrics.rejected),
            Stat::Lost => (&self.lost, &self.metrics.lost),
            Stat::Received => (&self.received, &self.metrics.received),
            Stat::Invalid => (&self.invalid, &self.metrics.invalid),
            Stat::Reconnects => (&self.reconnects, &self.metrics.reconnects),
            Stat::SlowConsumerEvents => (
                &self.slow_consumer_events,
                &self.metrics.slow_consumer_events,
            ),
        };
        atomic.fetch_add(n, Ordering::Relaxed);
        metric.increment(n);
    }

    pub(crate) fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
        self.metrics.connected.set(if up { 1.0 } else { 0.0 });
    }

    pub(crate) fn snapshot(&self) -> BrokerStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BrokerStats {
            published: get(&self.published),
            rejected: get(&self.rejected),
            lost: get(&self.lost),
            received: get(&self.received),
            invalid: get(&self.invalid),
            reconnects: get(&self.reconnects),
            slow_consumer_events: get(&self.slow_consumer_events),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}
