//! [`Broker`]: what carries publications between the hub and the other nodes.

use std::{fmt, sync::Arc};

use socketry::PreparedMessage;

use crate::{
    BoxFuture, BrokerStats, ConnId, HistoryRead, Hub, HubError, Overflow, Position, PublishReport,
    RoomName, history::HistoryLimits,
};

/// A message on its way to a room's members.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Publication {
    /// The room.
    pub room: RoomName,
    /// The message, framed once.
    pub message: Arc<PreparedMessage>,
    /// A member that does not get it (the sender, usually).
    pub except: Option<ConnId>,
    /// What happens where it does not fit; `None` is the hub's default.
    pub overflow: Option<Overflow>,
    /// Set by the hub for a room that keeps history: the broker numbers and keeps it.
    pub(crate) history: Option<HistoryLimits>,
    /// Its place in the room's history, once the broker numbered it.
    pub(crate) position: Option<Position>,
}

impl Publication {
    /// A publication of `message` to `room`.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketry::{Message, PreparedMessage};
    /// use socketry_hub::{Overflow, Publication, RoomName};
    ///
    /// let tick = Publication::new(RoomName::new("prices")?, PreparedMessage::new(Message::text("42.0")))
    ///     .overflow(Overflow::Drop);
    /// assert_eq!(tick.overflow, Some(Overflow::Drop));
    /// # Ok::<(), socketry_hub::HubError>(())
    /// ```
    pub fn new(room: RoomName, message: impl Into<Arc<PreparedMessage>>) -> Self {
        Self {
            room,
            message: message.into(),
            except: None,
            overflow: None,
            history: None,
            position: None,
        }
    }

    /// Its place in its room's history, for a room that keeps one (set by the broker that
    /// numbered it).
    pub fn position(&self) -> Option<&Position> {
        self.position.as_ref()
    }

    /// Whether its room keeps history: the broker must number it
    /// ([`with_position`](Self::with_position)) before it is delivered.
    pub fn keeps_history(&self) -> bool {
        self.history.is_some()
    }

    /// The publication numbered at `position`, for a broker that keeps history.
    #[must_use]
    pub fn with_position(mut self, position: Position) -> Self {
        self.position = Some(position);
        self
    }

    /// Every member but `conn` gets it.
    #[must_use]
    pub fn except(mut self, conn: ConnId) -> Self {
        self.except = Some(conn);
        self
    }

    /// Drops it for members whose queue is full instead of the hub's default policy (what
    /// Socket.IO calls `volatile`: for messages a slow client may miss, such as cursor
    /// positions).
    #[must_use]
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = Some(overflow);
        self
    }
}

/// Carries publications to every node that has members in their room. The default,
/// [`LocalBroker`], is one process: it delivers at once, in the publishing task.
///
/// A broker between nodes (Redis, NATS) sends the publication to the other nodes and hands
/// what arrives from them to [`Hub::deliver_local`]. The hub tells it which rooms this node
/// has members in ([`subscribe`](Self::subscribe), [`unsubscribe`](Self::unsubscribe)), after
/// the change and outside the hub's locks; calls for one room can race (a join and a leave at
/// once), so a broker reconciles with [`Hub::room_size`] rather than counting calls.
///
/// # Examples
///
/// A broker that delivers locally and logs each publication (one that forwards to other
/// nodes would also send it out here, and feed what arrives to [`Hub::deliver_local`]):
///
/// ```
/// use socketry_hub::{Broker, Hub, HubError, Publication, PublishReport};
///
/// #[derive(Debug)]
/// struct Logged;
///
/// impl Broker for Logged {
///     fn publish(&self, hub: &Hub, publication: Publication) -> Result<PublishReport, HubError> {
///         let report = hub.deliver_local(&publication);
///         println!("{}: {} delivered", publication.room, report.delivered);
///         Ok(report)
///     }
/// }
///
/// let hub = Hub::builder().broker(Logged).build();
/// hub.publish("news", "hello")?;
/// # Ok::<(), HubError>(())
/// ```
pub trait Broker: Send + Sync + fmt::Debug + 'static {
    /// Carries `publication` to its room's members on every node, this one included.
    ///
    /// # Errors
    ///
    /// [`HubError::Broker`] if it cannot be sent; nothing is delivered anywhere then.
    fn publish(&self, hub: &Hub, publication: Publication) -> Result<PublishReport, HubError>;

    /// Carries several publications, in order (by default one [`publish`](Self::publish)
    /// each; [`LocalBroker`] delivers consecutive ones to a room in one pass).
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish); the publications before the failing one went out.
    fn publish_batch(
        &self,
        hub: &Hub,
        publications: Vec<Publication>,
    ) -> Result<PublishReport, HubError> {
        let mut total = PublishReport::default();
        for publication in publications {
            let report = self.publish(hub, publication)?;
            total.delivered += report.delivered;
            total.dropped += report.dropped;
            total.disconnected += report.disconnected;
        }
        Ok(total)
    }

    /// Called once, when the hub is built: a broker that receives from other nodes keeps
    /// `hub.downgrade()` to deliver into it.
    fn attach(&self, hub: &Hub) {
        let _ = hub;
    }

    /// This node has its first member in `room`.
    fn subscribe(&self, room: &RoomName) {
        let _ = room;
    }

    /// This node's last member left `room`.
    fn unsubscribe(&self, room: &RoomName) {
        let _ = room;
    }

    /// Ready once publications to `room` from other nodes reach this node: the broker's
    /// subscription is confirmed ([`Hub::subscribed`]). At once for a single process.
    fn subscribed<'a>(&'a self, room: &'a str) -> BoxFuture<'a, ()> {
        let _ = room;
        Box::pin(std::future::ready(()))
    }

    /// Its counters, for a broker between nodes ([`Hub::broker_stats`]).
    fn stats(&self) -> Option<BrokerStats> {
        None
    }

    /// What `room`'s history holds after `since` (its current position, and the
    /// publications after `since` if it is of the current epoch), for a broker that keeps
    /// history: one that numbers the publications of rooms that keep it
    /// ([`Publication::keeps_history`]) and delivers them, on every node, in that order.
    ///
    /// # Errors
    ///
    /// [`HubError::Broker`] if the history cannot be read (by default: this broker keeps
    /// none).
    fn history<'a>(
        &'a self,
        hub: &'a Hub,
        room: &'a RoomName,
        since: Option<&'a Position>,
    ) -> BoxFuture<'a, Result<HistoryRead, HubError>> {
        let _ = (hub, room, since);
        Box::pin(std::future::ready(Err(HubError::Broker(
            "this broker keeps no history".into(),
        ))))
    }
}

/// The broker of one process: a publication reaches the room's members on this node, at once,
/// in order per publisher.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalBroker;

impl Broker for LocalBroker {
    fn publish(&self, hub: &Hub, publication: Publication) -> Result<PublishReport, HubError> {
        if publication.keeps_history() {
            return Ok(hub.publish_to_local_history(publication));
        }
        Ok(hub.deliver_local(&publication))
    }

    fn publish_batch(
        &self,
        hub: &Hub,
        publications: Vec<Publication>,
    ) -> Result<PublishReport, HubError> {
        if publications.iter().any(Publication::keeps_history) {
            let mut total = PublishReport::default();
            for publication in publications {
                let report = self.publish(hub, publication)?;
                total.delivered += report.delivered;
                total.dropped += report.dropped;
                total.disconnected += report.disconnected;
            }
            return Ok(total);
        }
        Ok(hub.deliver_local_batch(&publications))
    }

    fn history<'a>(
        &'a self,
        hub: &'a Hub,
        room: &'a RoomName,
        since: Option<&'a Position>,
    ) -> BoxFuture<'a, Result<HistoryRead, HubError>> {
        Box::pin(std::future::ready(Ok(hub.inner.history.read(room, since))))
    }
}
