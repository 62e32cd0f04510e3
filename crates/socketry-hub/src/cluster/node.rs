//! What a broker between nodes keeps whatever carries its messages: the hub it serves, the
//! publish buffer, the rooms to subscribe, the counters, and the shutdown signal; and the two
//! halves every such broker has: forwarding this node's publications, delivering the others'.

use std::{sync::OnceLock, time::Duration};

use bytes::Bytes;
use tokio::sync::watch;

use super::{Outbound, PublishBuffer, Queued, Stat, StatCounters, Subscriptions, envelope};
use crate::{Hub, HubError, Publication, RoomName, WeakHub};

#[derive(Debug)]
pub(crate) struct NodeLink {
    pub(crate) outbound: Outbound,
    pub(crate) subs: Subscriptions,
    pub(crate) stats: StatCounters,
    hub: OnceLock<WeakHub>,
    shutdown: watch::Sender<bool>,
    /// The reconnection backoff's first and longest wait.
    pub(crate) backoff: (Duration, Duration),
    kind: &'static str,
}

impl NodeLink {
    pub(crate) fn new(
        kind: &'static str,
        buffer: PublishBuffer,
        backoff: (Duration, Duration),
    ) -> Self {
        Self {
            outbound: Outbound::new(buffer),
            subs: Subscriptions::default(),
            stats: StatCounters::new(kind),
            hub: OnceLock::new(),
            shutdown: watch::channel(false).0,
            backoff,
            kind,
        }
    }

    /// Binds the link to its hub, once.
    ///
    /// # Panics
    ///
    /// If it already serves a hub.
    pub(crate) fn attach(&self, hub: &Hub) {
        assert!(
            self.hub.set(hub.downgrade()).is_ok(),
            "a {} broker serves one hub",
            self.kind
        );
    }

    pub(crate) fn hub(&self) -> Option<Hub> {
        self.hub.get().and_then(WeakHub::upgrade)
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Sleeps `delay`; `false` if the broker shut down meanwhile.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) async fn pause(&self, delay: Duration) -> bool {
        let mut shutdown = self.shutdown_signal();
        tokio::select! {
            () = tokio::time::sleep(delay) => !self.is_shut_down(),
            () = shut_down(&mut shutdown) => false,
        }
    }

    /// The broker is dropped: its tasks end; what waits to be sent counts as lost.
    pub(crate) fn close(&self) {
        self.shutdown.send_replace(true);
        let dropped = self.outbound.close();
        self.stats.add(Stat::Lost, dropped as u64);
    }

    /// Queues this node's publications for the other nodes, all or none.
    pub(crate) fn forward(&self, hub: &Hub, publications: &[Publication]) -> Result<(), HubError> {
        let items = publications
            .iter()
            .map(|p| Queued {
                room: p.room.clone(),
                envelope: envelope::encode(hub.node(), p),
                history: p.history,
            })
            .collect::<Vec<_>>();
        let count = items.len() as u64;
        self.outbound.push_all(items).map_err(|full| {
            self.stats.add(Stat::Rejected, count);
            tracing::warn!(broker = self.kind, error = %full, "hub: publication refused");
            HubError::Broker(Box::new(full))
        })
    }

    /// Delivers an envelope that arrived for `room` to this node's members.
    pub(crate) fn deliver(&self, room: RoomName, payload: Bytes) {
        let Some(hub) = self.hub() else { return };
        // This node delivered its own publications when they were made: skipped before they
        // are framed. (Numbered ones come back to their node too: they are delivered
        // everywhere in the order the broker numbered them.)
        if envelope::origin(&payload) == Some(hub.node()) {
            return;
        }
        match envelope::decode(room, payload) {
            Ok(publication) => {
                self.stats.add(Stat::Received, 1);
                hub.deliver_local(&publication);
            }
            Err(err) => {
                self.stats.add(Stat::Invalid, 1);
                tracing::warn!(broker = self.kind, error = %err, "hub: malformed envelope skipped");
            }
        }
    }
}

/// Ready once the broker shuts down (the guard `wait_for` returns is not kept: it must not be
/// held across an await).
pub(crate) async fn shut_down(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await;
}

/// Implements [`Broker`](crate::Broker) for a broker between nodes that has a `link()` (its
/// [`NodeLink`]) and a `start()` (spawns its tasks once the link is bound to the hub): this
/// node's publications are queued for the others first (all or none), then delivered here.
macro_rules! broker_over_link {
    ($broker:ty) => {
        impl $crate::Broker for $broker {
            fn publish(
                &self,
                hub: &$crate::Hub,
                mut publication: $crate::Publication,
            ) -> Result<$crate::PublishReport, $crate::HubError> {
                if !self.numbers_history() {
                    publication.history = None;
                }
                self.link()
                    .forward(hub, std::slice::from_ref(&publication))?;
                // A numbered publication comes back from the broker, here as everywhere.
                if publication.history.is_some() {
                    return Ok($crate::PublishReport::default());
                }
                Ok(hub.deliver_local(&publication))
            }

            fn publish_batch(
                &self,
                hub: &$crate::Hub,
                mut publications: Vec<$crate::Publication>,
            ) -> Result<$crate::PublishReport, $crate::HubError> {
                if !self.numbers_history() {
                    for publication in &mut publications {
                        publication.history = None;
                    }
                }
                self.link().forward(hub, &publications)?;
                if publications.iter().any(|p| p.history.is_some()) {
                    publications.retain(|p| p.history.is_none());
                }
                Ok(hub.deliver_local_batch(&publications))
            }

            fn history<'a>(
                &'a self,
                _hub: &'a $crate::Hub,
                room: &'a $crate::RoomName,
                since: Option<&'a $crate::Position>,
            ) -> $crate::BoxFuture<'a, Result<$crate::HistoryRead, $crate::HubError>> {
                self.read_history(room, since)
            }

            fn attach(&self, hub: &$crate::Hub) {
                self.link().attach(hub);
                self.start();
            }

            fn subscribe(&self, room: &$crate::RoomName) {
                self.link().subs.mark_dirty(room);
            }

            fn unsubscribe(&self, room: &$crate::RoomName) {
                self.link().subs.mark_dirty(room);
            }

            fn subscribed<'a>(&'a self, room: &'a str) -> $crate::BoxFuture<'a, ()> {
                Box::pin(self.link().subs.wait_confirmed(room))
            }

            fn stats(&self) -> Option<$crate::BrokerStats> {
                Some(self.link().stats.snapshot())
            }
        }

        impl Drop for $broker {
            fn drop(&mut self) {
                self.link().close();
            }
        }
    };
}
pub(crate) use broker_over_link;
