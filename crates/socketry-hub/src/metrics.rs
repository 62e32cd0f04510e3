//! The hub's gauges and counters, through the `metrics` facade: any exporter installed before
//! the hub is built receives them.

use metrics::{Counter, Gauge, Unit, counter, describe_counter, describe_gauge, gauge};

/// Metric names, for dashboards.
pub mod names {
    /// Gauge: connections in the hub.
    pub const CONNECTIONS: &str = "socketry_hub_connections";
    /// Gauge: rooms with at least one member.
    pub const ROOMS: &str = "socketry_hub_rooms";
    /// Gauge: room memberships (a connection in three rooms counts three).
    pub const MEMBERS: &str = "socketry_hub_members";
    /// Counter: publications delivered locally.
    pub const PUBLICATIONS: &str = "socketry_hub_publications_total";
    /// Counter: messages queued for a member (its rate is deliveries per second).
    pub const DELIVERIES: &str = "socketry_hub_deliveries_total";
    /// Counter: messages a member did not get because its queue was full ([`Overflow::Drop`](crate::Overflow::Drop)).
    pub const DROPS: &str = "socketry_hub_drops_total";
    /// Counter: members disconnected as slow ([`Overflow::Disconnect`](crate::Overflow::Disconnect)).
    pub const SLOW_DISCONNECTS: &str = "socketry_hub_slow_disconnects_total";
    /// Counter (label `broker`): publications a broker between nodes accepted.
    pub const BROKER_PUBLISHED: &str = "socketry_hub_broker_published_total";
    /// Counter (label `broker`): publications refused because the publish buffer was full.
    pub const BROKER_REJECTED: &str = "socketry_hub_broker_rejected_total";
    /// Counter (label `broker`): publications that may not have reached the other nodes
    /// (in flight when the connection failed).
    pub const BROKER_LOST: &str = "socketry_hub_broker_lost_total";
    /// Counter (label `broker`): publications received from other nodes.
    pub const BROKER_RECEIVED: &str = "socketry_hub_broker_received_total";
    /// Counter (label `broker`): malformed envelopes skipped.
    pub const BROKER_INVALID: &str = "socketry_hub_broker_invalid_total";
    /// Counter (label `broker`): connections to the broker lost and dialled again.
    pub const BROKER_RECONNECTS: &str = "socketry_hub_broker_reconnects_total";
    /// Counter (label `broker`): times the broker's client dropped messages because this
    /// node read a room too slowly (NATS slow-consumer events).
    pub const BROKER_SLOW_CONSUMER_EVENTS: &str = "socketry_hub_broker_slow_consumer_events_total";
    /// Gauge (label `broker`): 1 while the subscriber connection is up.
    pub const BROKER_CONNECTED: &str = "socketry_hub_broker_connected";
}

#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) connections: Gauge,
    pub(crate) rooms: Gauge,
    pub(crate) members: Gauge,
    pub(crate) publications: Counter,
    pub(crate) deliveries: Counter,
    pub(crate) drops: Counter,
    pub(crate) slow_disconnects: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        describe_gauge!(names::CONNECTIONS, Unit::Count, "connections in the hub");
        describe_gauge!(names::ROOMS, Unit::Count, "rooms with members");
        describe_gauge!(names::MEMBERS, Unit::Count, "room memberships");
        describe_counter!(names::PUBLICATIONS, Unit::Count, "publications delivered");
        describe_counter!(
            names::DELIVERIES,
            Unit::Count,
            "messages queued for members"
        );
        describe_counter!(
            names::DROPS,
            Unit::Count,
            "messages dropped for full queues"
        );
        describe_counter!(
            names::SLOW_DISCONNECTS,
            Unit::Count,
            "members disconnected as slow"
        );
        Self {
            connections: gauge!(names::CONNECTIONS),
            rooms: gauge!(names::ROOMS),
            members: gauge!(names::MEMBERS),
            publications: counter!(names::PUBLICATIONS),
            deliveries: counter!(names::DELIVERIES),
            drops: counter!(names::DROPS),
            slow_disconnects: counter!(names::SLOW_DISCONNECTS),
        }
    }
}
