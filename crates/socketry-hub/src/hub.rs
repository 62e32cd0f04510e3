//! [`Hub`]: the rooms of one process and the publishing into them.

use std::{
    fmt,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use dashmap::DashMap;
use parking_lot::Mutex;
use socketry::{CloseCode, ControlHandle, Message, PreparedMessage};
use tokio::sync::Notify;

use crate::{
    Broker, BrokerStats, ClientInfo, ConnId, HubConfig, HubError, LocalBroker, LocalPresence,
    Member, NodeId, Overflow, Presence, Publication, RoomName,
    history::LocalHistory,
    id::IdSource,
    metrics::Metrics,
    outbox::{Bounds, Outbox, Pushed},
    presence::ChangeQueue,
    recovery::Held,
    rooms::Room,
};

/// What one publication did on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishReport {
    /// Deliveries: a message queued for a member (a batch of 3 to 2 members counts 6).
    pub delivered: usize,
    /// Deliveries not made because a member's queue was full under [`Overflow::Drop`].
    pub dropped: usize,
    /// Members disconnected as slow by this publication ([`Overflow::Disconnect`]). What a
    /// batch had queued for such a member before it overflowed is freed with its queue, and
    /// not counted in `delivered`.
    pub disconnected: usize,
}

impl PublishReport {
    fn add(&mut self, pushed: Pushed) {
        match pushed {
            Pushed::Queued => self.delivered += 1,
            Pushed::Dropped => self.dropped += 1,
            Pushed::Disconnected => self.disconnected += 1,
            Pushed::Gone => {}
        }
    }
}

/// What a message to one connection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// The connection's queue took it.
    Queued,
    /// Its queue was full under [`Overflow::Drop`].
    Dropped,
    /// Its queue was full under [`Overflow::Disconnect`]: it is being disconnected as slow.
    Disconnected,
}

/// Counters of a hub since it was built (also exported through the `metrics` facade).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Connections in the hub now.
    pub connections: usize,
    /// Rooms with at least one member now.
    pub rooms: usize,
    /// Publications delivered on this node.
    pub publications: u64,
    /// Messages queued for members.
    pub deliveries: u64,
    /// Messages not queued because a member's queue was full ([`Overflow::Drop`]).
    pub drops: u64,
    /// Members disconnected as slow.
    pub slow_disconnects: u64,
}

/// One connection's state in the hub, shared by its [`Member`] handle, its writer and the
/// rooms it is in.
#[derive(Debug)]
pub(crate) struct MemberState {
    pub(crate) id: ConnId,
    pub(crate) info: Arc<ClientInfo>,
    pub(crate) outbox: Outbox,
    pub(crate) joined: Mutex<Joined>,
    /// Its joins and leaves on their way to the presence store and the rooms, in order.
    pub(crate) changes: Mutex<ChangeQueue>,
    /// Live publications held back while it recovers rooms ([`Member::join_since`]), and
    /// whether any room is being recovered (read before the lock is taken).
    pub(crate) held: Mutex<Vec<Held>>,
    pub(crate) holding: AtomicBool,
    pub(crate) dropped: AtomicU64,
    /// Closes the connection from outside ([`Hub::disconnect`]): set by `attach`, taken when
    /// the writer task ends (it keeps the transport alive).
    pub(crate) control: Mutex<Option<ControlHandle>>,
    /// The writer task ended (what [`WriterHandle::finish`](crate::WriterHandle::finish)
    /// waits for).
    pub(crate) writer_done: AtomicBool,
    pub(crate) writer_done_notify: Notify,
    /// A close to send once the queue is written ([`Hub::disconnect`]), and whether the writer
    /// ended (then whoever asks for the close sends it).
    pub(crate) closing: Mutex<Closing>,
}

#[derive(Debug, Default)]
pub(crate) struct Closing {
    pub(crate) frame: Option<(CloseCode, String)>,
    pub(crate) writer_ended: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Joined {
    pub(crate) rooms: Vec<RoomName>,
    /// It left the hub: no more joins.
    pub(crate) left: bool,
}

/// Rooms whose history one process keeps at most (quiet ones are forgotten first).
const MAX_LOCAL_HISTORY_ROOMS: usize = 100_000;

pub(crate) struct HubInner {
    pub(crate) config: HubConfig,
    bounds: Bounds,
    ids: IdSource,
    pub(crate) rooms: DashMap<RoomName, Arc<Room>>,
    pub(crate) conns: DashMap<ConnId, Arc<MemberState>>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) presence: Arc<dyn Presence>,
    publications: AtomicU64,
    deliveries: AtomicU64,
    drops: AtomicU64,
    slow_disconnects: AtomicU64,
    /// Versions of presence changes: one clock for every room, so that a room made again
    /// under an old name never goes back to versions its clients have seen.
    pub(crate) presence_clock: AtomicU64,
    pub(crate) metrics: Metrics,
    /// The history of rooms that keep one, for [`LocalBroker`].
    pub(crate) history: LocalHistory,
}

/// Rooms, presence and broadcast for the connections of one process, bounded per connection.
///
/// A connection enters the hub with [`attach`](Self::attach), which takes its writer half:
/// from then on everything sent to it goes through its bounded queue, and a task of the hub
/// writes the queue to the socket, a backlog in one write. Publishing frames the message
/// once ([`PreparedMessage`]); each member costs a reference count and a queue slot.
///
/// Cheap to clone (shared). Publishing and presence go through a [`Broker`] and a
/// [`Presence`] store, in-process by default ([`HubBuilder`] plugs in others).
///
/// # Examples
///
/// ```no_run
/// use socketry::Message;
/// use socketry_hub::{ClientInfo, Hub};
///
/// # async fn run(ws: socketry::WebSocket<tokio::net::TcpStream>) -> Result<(), Box<dyn std::error::Error>> {
/// let hub = Hub::default();
/// let (mut reader, writer) = ws.split();
/// let member = hub.attach(writer, ClientInfo::new("alice"));
/// member.join("lobby")?;
/// while let Some(message) = reader.recv().await {
///     if let Message::Text(text) = message? {
///         member.publish("lobby", Message::Text(text))?; // every member, alice too
///     }
/// }
/// # Ok(()) }
/// # let _ = run;
/// ```
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

/// A hub that does not keep it alive, for a broker to deliver into ([`Hub::downgrade`]).
#[derive(Clone, Debug)]
pub struct WeakHub(Weak<HubInner>);

impl WeakHub {
    /// The hub, if it is still alive.
    pub fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

/// Builds a [`Hub`] with a configuration, a [`Broker`] and a [`Presence`] store.
///
/// # Examples
///
/// ```
/// use socketry_hub::{Hub, HubConfig, LocalBroker, LocalPresence};
///
/// let hub = Hub::builder()
///     .config(HubConfig::default().max_queue_messages(1024))
///     .broker(LocalBroker)
///     .presence(LocalPresence)
///     .build();
/// assert_eq!(hub.stats().connections, 0);
/// ```
#[derive(Debug, Default)]
#[must_use = "call build() to make the hub"]
pub struct HubBuilder {
    config: HubConfig,
    broker: Option<Arc<dyn Broker>>,
    presence: Option<Arc<dyn Presence>>,
}

impl HubBuilder {
    /// Limits and policies.
    pub fn config(mut self, config: HubConfig) -> Self {
        self.config = config;
        self
    }

    /// What carries publications (the default is [`LocalBroker`]).
    pub fn broker(mut self, broker: impl Broker) -> Self {
        self.broker = Some(Arc::new(broker));
        self
    }

    /// Where presence lives (the default is [`LocalPresence`]).
    pub fn presence(mut self, presence: impl Presence) -> Self {
        self.presence = Some(Arc::new(presence));
        self
    }

    /// The hub.
    pub fn build(self) -> Hub {
        let bounds = Bounds {
            bytes: self.config.max_queue_bytes,
            messages: self.config.max_queue_messages,
        };
        let hub = Hub {
            inner: Arc::new(HubInner {
                config: self.config,
                bounds,
                ids: IdSource::new(NodeId::random()),
                rooms: DashMap::new(),
                conns: DashMap::new(),
                broker: self.broker.unwrap_or_else(|| Arc::new(LocalBroker)),
                presence: self.presence.unwrap_or_else(|| Arc::new(LocalPresence)),
                publications: AtomicU64::new(0),
                deliveries: AtomicU64::new(0),
                drops: AtomicU64::new(0),
                slow_disconnects: AtomicU64::new(0),
                presence_clock: AtomicU64::new(0),
                metrics: Metrics::new(),
                history: LocalHistory::new(MAX_LOCAL_HISTORY_ROOMS),
            }),
        };
        hub.inner.broker.attach(&hub);
        hub.inner.presence.attach(&hub);
        hub
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(HubConfig::default())
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("node", &self.inner.ids.node())
            .field("connections", &self.inner.conns.len())
            .field("rooms", &self.inner.rooms.len())
            .field("broker", &self.inner.broker)
            .field("presence", &self.inner.presence)
            .finish()
    }
}

/// What a message argument can be: a [`Message`] (framed here), or a [`PreparedMessage`]
/// framed already (shared as it is).
#[derive(Debug, Clone)]
pub struct Outgoing(pub(crate) Arc<PreparedMessage>);

impl From<Message> for Outgoing {
    fn from(message: Message) -> Self {
        Self(Arc::new(PreparedMessage::new(message)))
    }
}

impl From<PreparedMessage> for Outgoing {
    fn from(message: PreparedMessage) -> Self {
        Self(Arc::new(message))
    }
}

impl From<Arc<PreparedMessage>> for Outgoing {
    fn from(message: Arc<PreparedMessage>) -> Self {
        Self(message)
    }
}

impl From<&str> for Outgoing {
    fn from(text: &str) -> Self {
        Message::text(text).into()
    }
}

impl From<String> for Outgoing {
    fn from(text: String) -> Self {
        Message::text(text).into()
    }
}

impl Hub {
    /// A hub of one process with `config`.
    pub fn new(config: HubConfig) -> Self {
        Self::builder().config(config).build()
    }

    /// A builder, to plug in a [`Broker`] or a [`Presence`] store.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// This hub's node id (the prefix of its connection ids).
    pub fn node(&self) -> NodeId {
        self.inner.ids.node()
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// A handle that does not keep the hub alive.
    pub fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.inner))
    }

    /// Ends this node's part in a shared presence store, once the server has stopped
    /// serving (after axum's graceful shutdown, say): a Redis store (`RedisPresence`)
    /// writes the leaves of the connections that just closed and ends its lease, so the other nodes see this node's members leave now
    /// rather than a TTL later. Call it before the process exits (the runtime must still
    /// run); what changes after it reaches this node only. Does nothing with the default
    /// store.
    ///
    /// ```no_run
    /// # async fn run(hub: socketry_hub::Hub) {
    /// // ... serve until a signal, then:
    /// hub.shutdown().await;
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        self.inner.presence.shutdown().await;
    }

    /// Waits until publications to `room` from other nodes reach this node: a member that
    /// joined is subscribed at the broker a moment later, not at once. Ready at once with
    /// the default [`LocalBroker`]; with a broker between nodes, it waits while the broker is
    /// away, and for a room without members on this node (which has no subscription), so
    /// bound it with a timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn run(member: socketry_hub::Member, hub: socketry_hub::Hub) -> Result<(), socketry_hub::HubError> {
    /// member.join("lobby")?;
    /// hub.subscribed("lobby").await;
    /// // Publications to "lobby" on every node now reach this member.
    /// # Ok(()) }
    /// ```
    pub async fn subscribed(&self, room: &str) {
        self.inner.broker.subscribed(room).await;
    }

    /// The broker's counters, when it is one between nodes ([`BrokerStats`]).
    pub fn broker_stats(&self) -> Option<BrokerStats> {
        self.inner.broker.stats()
    }

    /// Adds a connection whose queue someone else drains (the writer task of
    /// [`attach`](Self::attach)).
    pub(crate) fn register(&self, info: ClientInfo) -> Arc<MemberState> {
        let state = Arc::new(MemberState {
            id: self.inner.ids.next(),
            info: Arc::new(info),
            outbox: Outbox::new(),
            joined: Mutex::default(),
            changes: Mutex::default(),
            held: Mutex::default(),
            holding: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            control: Mutex::new(None),
            writer_done: AtomicBool::new(false),
            writer_done_notify: Notify::new(),
            closing: Mutex::default(),
        });
        self.inner.conns.insert(state.id, state.clone());
        self.inner.metrics.connections.increment(1.0);
        tracing::trace!(conn = %state.id, user = state.info.user(), "hub: connection added");
        state
    }

    pub(crate) fn member(&self, state: Arc<MemberState>) -> Member {
        Member {
            hub: self.clone(),
            state,
        }
    }

    /// Publishes `message` to every member of `room` (through the broker: on every node).
    /// A room without members takes it and delivers it to nobody.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidRoomName`]; [`HubError::Broker`] if the broker cannot carry it.
    ///
    /// # Examples
    ///
    /// ```
    /// let hub = socketry_hub::Hub::default();
    /// let report = hub.publish("news", "nobody listens yet")?;
    /// assert_eq!(report.delivered, 0);
    /// # Ok::<(), socketry_hub::HubError>(())
    /// ```
    pub fn publish(
        &self,
        room: &str,
        message: impl Into<Outgoing>,
    ) -> Result<PublishReport, HubError> {
        self.publish_with(Publication::new(RoomName::new(room)?, message.into().0))
    }

    /// Publishes `message` to every member of `room` but `except` (the sender, usually).
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(hub: &socketry_hub::Hub, member: &socketry_hub::Member) -> Result<(), socketry_hub::HubError> {
    /// // What Member::publish_to_others does:
    /// hub.publish_except("lobby", member.id(), "someone else is typing")?;
    /// # Ok(()) }
    /// ```
    pub fn publish_except(
        &self,
        room: &str,
        except: ConnId,
        message: impl Into<Outgoing>,
    ) -> Result<PublishReport, HubError> {
        self.publish_with(Publication::new(RoomName::new(room)?, message.into().0).except(except))
    }

    /// Publishes a [`Publication`]: with a member left out, or another overflow policy.
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketry_hub::{Hub, Overflow, Publication, RoomName};
    ///
    /// let hub = Hub::default();
    /// // A cursor position: a slow client may miss it rather than be disconnected.
    /// let cursor = Publication::new(RoomName::new("doc:42")?, socketry::PreparedMessage::new("x=10".into()))
    ///     .overflow(Overflow::Drop);
    /// hub.publish_with(cursor)?;
    /// # Ok::<(), socketry_hub::HubError>(())
    /// ```
    pub fn publish_with(&self, mut publication: Publication) -> Result<PublishReport, HubError> {
        self.check(&publication.message)?;
        publication.history = self.history_of(&publication.room).map(|h| h.limits);
        self.inner.broker.publish(self, publication)
    }

    pub(crate) fn bounds(&self) -> Bounds {
        self.inner.bounds
    }

    /// Only data messages that fit in a member's queue are published: a control message would
    /// reach each member as a control frame (a close closing the whole room), and one larger
    /// than the queue bound would disconnect every member as slow.
    pub(crate) fn check(&self, message: &PreparedMessage) -> Result<(), HubError> {
        if message.message().is_control() {
            return Err(HubError::ControlMessage);
        }
        let size = message.server_frame().len();
        let limit = self.inner.bounds.bytes;
        if size > limit {
            return Err(HubError::TooLarge { size, limit });
        }
        Ok(())
    }

    /// Closes connection `conn` with `code` and `reason` and takes it out of the hub (a kick,
    /// a ban, a logout elsewhere). What was queued for it is written first, if it can be
    /// within [`HubConfig::slow_close_timeout`]; the closing handshake then has as long.
    ///
    /// # Errors
    ///
    /// [`HubError::Gone`] for a connection not in the hub; [`HubError::Connection`] for a code
    /// that may not be sent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(hub: &socketry_hub::Hub, conn: socketry_hub::ConnId) -> Result<(), socketry_hub::HubError> {
    /// hub.disconnect(conn, socketry::CloseCode::from(4003), "banned")?;
    /// # Ok(()) }
    /// ```
    pub fn disconnect(&self, conn: ConnId, code: CloseCode, reason: &str) -> Result<(), HubError> {
        let state = self.state_of(conn)?;
        self.disconnect_member(&state, code, reason)
    }

    pub(crate) fn disconnect_member(
        &self,
        state: &Arc<MemberState>,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), HubError> {
        if !code.is_valid() {
            return Err(HubError::Connection(socketry::Error::InvalidMessage(
                "close code that may not be sent",
            )));
        }
        // The writer sends what is queued, then the close; if it ended already, we send it.
        let send_now = {
            let mut closing = state.closing.lock();
            if closing.writer_ended {
                true
            } else {
                closing.frame = Some((code, reason.to_owned()));
                false
            }
        };
        self.remove_and_settle(state);
        let control = if send_now {
            state.control.lock().clone()
        } else {
            None
        };
        if let Some(control) = control {
            control.start_close(code, reason)?;
        }
        Ok(())
    }

    /// Sends `message` to one connection of this node, under the hub's overflow policy.
    ///
    /// # Errors
    ///
    /// [`HubError::Gone`] if the connection is not in the hub.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketry_hub::{ConnId, Hub, HubError};
    ///
    /// let hub = Hub::default();
    /// let nobody = ConnId::from_parts(hub.node(), 42);
    /// assert!(matches!(hub.send_to(nobody, "hello"), Err(HubError::Gone(_))));
    /// ```
    pub fn send_to(
        &self,
        conn: ConnId,
        message: impl Into<Outgoing>,
    ) -> Result<Delivery, HubError> {
        let state = self
            .inner
            .conns
            .get(&conn)
            .map(|entry| entry.value().clone())
            .ok_or(HubError::Gone(conn))?;
        self.send_to_member(&state, &message.into().0, self.inner.config.overflow)
    }

    pub(crate) fn send_to_member(
        &self,
        state: &Arc<MemberState>,
        message: &Arc<PreparedMessage>,
        overflow: Overflow,
    ) -> Result<Delivery, HubError> {
        self.check(message)?;
        let pushed = state.outbox.push(message, overflow, self.inner.bounds);
        let mut report = PublishReport::default();
        report.add(pushed);
        self.count(&report, 0);
        match pushed {
            Pushed::Queued => Ok(Delivery::Queued),
            Pushed::Dropped => {
                state.dropped.fetch_add(1, Ordering::Relaxed);
                Ok(Delivery::Dropped)
            }
            Pushed::Disconnected => {
                self.settle(vec![state.clone()]);
                Ok(Delivery::Disconnected)
            }
            Pushed::Gone => Err(HubError::Gone(state.id)),
        }
    }

    /// Delivers `publication` to this node's members of its room: what a [`Broker`] calls,
    /// for publications of this node and for those that arrive from others.
    pub fn deliver_local(&self, publication: &Publication) -> PublishReport {
        if let Some(position) = &publication.position {
            return self.deliver_positioned(publication, position);
        }
        if let Err(err) = self.check(&publication.message) {
            tracing::warn!(room = %publication.room, error = %err, "hub: publication not delivered");
            return PublishReport::default();
        }
        let (report, slow) = self.fan_out(publication);
        if !slow.is_empty() {
            self.settle(slow);
        }
        report
    }

    /// Queues the publication for each member; returns the members it made slow.
    pub(crate) fn fan_out(
        &self,
        publication: &Publication,
    ) -> (PublishReport, Vec<Arc<MemberState>>) {
        self.fan_out_many(
            &publication.room,
            publication.except,
            publication.overflow,
            std::slice::from_ref(&publication.message),
        )
    }

    /// Queues messages for one room's members: one pass over the members, one lock of each
    /// member's queue for all of them. Returns the members made slow.
    fn fan_out_many(
        &self,
        room: &str,
        except: Option<ConnId>,
        overflow: Option<Overflow>,
        messages: &[Arc<PreparedMessage>],
    ) -> (PublishReport, Vec<Arc<MemberState>>) {
        match self.room(room) {
            Some(room) => self.fan_out_to(&room, except, overflow, messages),
            None => {
                self.count(&PublishReport::default(), messages.len() as u64);
                (PublishReport::default(), Vec::new())
            }
        }
    }

    /// A presence event to the room it is about (this very room, not whatever room has its
    /// name by now): returns the members it made slow.
    pub(crate) fn fan_out_room(&self, room: &Room, event: &Publication) -> Vec<Arc<MemberState>> {
        let messages = std::slice::from_ref(&event.message);
        self.fan_out_to(room, event.except, event.overflow, messages)
            .1
    }

    fn fan_out_to(
        &self,
        room: &Room,
        except: Option<ConnId>,
        overflow: Option<Overflow>,
        messages: &[Arc<PreparedMessage>],
    ) -> (PublishReport, Vec<Arc<MemberState>>) {
        let mut report = PublishReport::default();
        let mut slow = Vec::new();
        let overflow = overflow.unwrap_or(self.inner.config.overflow);
        let bounds = self.inner.bounds;
        {
            let members = room.members.read();
            for (id, member) in members.iter() {
                if except == Some(*id) {
                    continue;
                }
                let pushed = member.outbox.push_all(messages, overflow, bounds);
                report.delivered += pushed.queued;
                if pushed.dropped > 0 {
                    report.dropped += pushed.dropped;
                    member
                        .dropped
                        .fetch_add(pushed.dropped as u64, Ordering::Relaxed);
                }
                if pushed.disconnected {
                    report.disconnected += 1;
                    slow.push(member.clone());
                }
            }
        }
        self.count(&report, messages.len() as u64);
        (report, slow)
    }

    /// Delivers publications to this node's members: consecutive ones to the same room (with
    /// the same exception and policy) in one pass over its members (what [`LocalBroker`]
    /// does for [`publish_batch`](Self::publish_batch)).
    pub fn deliver_local_batch(&self, publications: &[Publication]) -> PublishReport {
        let mut total = PublishReport::default();
        let mut slow = Vec::new();
        let mut messages = Vec::new();
        let mut rest = publications;
        while let Some(first) = rest.first() {
            let same = rest
                .iter()
                .take_while(|p| {
                    p.room == first.room && p.except == first.except && p.overflow == first.overflow
                })
                .count();
            let (group, next) = rest.split_at(same);
            rest = next;
            messages.clear();
            for publication in group {
                match self.check(&publication.message) {
                    Ok(()) => messages.push(publication.message.clone()),
                    Err(err) => {
                        tracing::warn!(room = %publication.room, error = %err, "hub: publication not delivered")
                    }
                }
            }
            let (report, made_slow) =
                self.fan_out_many(&first.room, first.except, first.overflow, &messages);
            total.delivered += report.delivered;
            total.dropped += report.dropped;
            total.disconnected += report.disconnected;
            slow.extend(made_slow);
        }
        if !slow.is_empty() {
            self.settle(slow);
        }
        total
    }

    /// Publishes several messages to `room` at once: each member's queue takes them in one
    /// step, in order (cheaper per message than one [`publish`](Self::publish) each, for a
    /// burst: a feed's ticks, what one read from a client brought).
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish), for the first message that fails the checks (nothing is
    /// published then).
    ///
    /// # Examples
    ///
    /// ```
    /// let hub = socketry_hub::Hub::default();
    /// let report = hub.publish_batch("ticks", ["1", "2", "3"])?;
    /// assert_eq!(report.delivered, 0); // nobody in the room yet
    /// # Ok::<(), socketry_hub::HubError>(())
    /// ```
    pub fn publish_batch<M: Into<Outgoing>>(
        &self,
        room: &str,
        messages: impl IntoIterator<Item = M>,
    ) -> Result<PublishReport, HubError> {
        let room = RoomName::new(room)?;
        let history = self.history_of(&room).map(|h| h.limits);
        let publications = messages
            .into_iter()
            .map(|message| {
                let message = message.into().0;
                self.check(&message)?;
                let mut publication = Publication::new(room.clone(), message);
                publication.history = history;
                Ok(publication)
            })
            .collect::<Result<Vec<_>, HubError>>()?;
        self.inner.broker.publish_batch(self, publications)
    }

    pub(crate) fn count(&self, report: &PublishReport, publications: u64) {
        let inner = &self.inner;
        if publications > 0 {
            inner
                .publications
                .fetch_add(publications, Ordering::Relaxed);
            inner.metrics.publications.increment(publications);
        }
        if report.delivered > 0 {
            inner
                .deliveries
                .fetch_add(report.delivered as u64, Ordering::Relaxed);
            inner.metrics.deliveries.increment(report.delivered as u64);
        }
        if report.dropped > 0 {
            inner
                .drops
                .fetch_add(report.dropped as u64, Ordering::Relaxed);
            inner.metrics.drops.increment(report.dropped as u64);
        }
        if report.disconnected > 0 {
            inner
                .slow_disconnects
                .fetch_add(report.disconnected as u64, Ordering::Relaxed);
            inner
                .metrics
                .slow_disconnects
                .increment(report.disconnected as u64);
        }
    }

    /// Removes members made slow, and whoever their leave events make slow in turn: a loop,
    /// not a recursion, however long the chain.
    pub(crate) fn settle(&self, mut slow: Vec<Arc<MemberState>>) {
        while let Some(member) = slow.pop() {
            tracing::info!(
                conn = %member.id,
                user = member.info.user(),
                "hub: slow member disconnected (its queue overflowed)"
            );
            slow.extend(self.remove(&member));
        }
    }

    /// Adds connection `conn` to `room` (from any task: an admin command, say).
    /// `Ok(false)` if it was in it already.
    ///
    /// # Errors
    ///
    /// [`HubError::Gone`] for a connection not in the hub; as [`Member::join`].
    pub fn join(&self, conn: ConnId, room: &str) -> Result<bool, HubError> {
        let state = self.state_of(conn)?;
        self.join_member(&state, room)
    }

    /// Takes connection `conn` out of `room`. `Ok(false)` if it was not in it.
    ///
    /// # Errors
    ///
    /// [`HubError::Gone`] for a connection not in the hub.
    pub fn leave(&self, conn: ConnId, room: &str) -> Result<bool, HubError> {
        let state = self.state_of(conn)?;
        self.leave_member(&state, room)
    }

    fn state_of(&self, conn: ConnId) -> Result<Arc<MemberState>, HubError> {
        self.inner
            .conns
            .get(&conn)
            .map(|entry| entry.value().clone())
            .ok_or(HubError::Gone(conn))
    }

    /// Bytes queued for connection `conn` and not yet written to its socket; `None` if it is
    /// not in the hub.
    pub fn buffered_amount(&self, conn: ConnId) -> Option<usize> {
        self.state_of(conn)
            .ok()
            .map(|state| state.outbox.buffered_amount())
    }

    /// Counters since the hub was built.
    pub fn stats(&self) -> HubStats {
        let inner = &self.inner;
        HubStats {
            connections: inner.conns.len(),
            rooms: inner.rooms.len(),
            publications: inner.publications.load(Ordering::Relaxed),
            deliveries: inner.deliveries.load(Ordering::Relaxed),
            drops: inner.drops.load(Ordering::Relaxed),
            slow_disconnects: inner.slow_disconnects.load(Ordering::Relaxed),
        }
    }
}

impl MemberState {
    pub(crate) fn rooms(&self) -> Vec<RoomName> {
        self.joined.lock().rooms.clone()
    }
}
