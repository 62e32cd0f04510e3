//! Presence: who is in a room, the events when that changes, and the [`Presence`] store
//! behind it.

use std::{collections::VecDeque, fmt, future::Future, pin::Pin, sync::Arc};

use bytes::Bytes;

use crate::{ConnId, Hub, HubError, RoomName, rooms::Room};

/// A future the [`Presence`] and [`Broker`](crate::Broker) traits return (boxed, so that the
/// hub holds them as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the application says about a connection, shown in presence: a user id and any bytes
/// (JSON, say). Set once, when the connection enters the hub.
///
/// # Examples
///
/// ```
/// use socketry_hub::ClientInfo;
///
/// let info = ClientInfo::new("alice").with_data(r#"{"avatar":"a.png"}"#);
/// assert_eq!(info.user(), "alice");
/// assert_eq!(&info.data()[..], br#"{"avatar":"a.png"}"#);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    user: Arc<str>,
    data: Bytes,
}

impl ClientInfo {
    /// Info naming `user` (empty for an anonymous connection).
    pub fn new(user: impl AsRef<str>) -> Self {
        Self {
            user: Arc::from(user.as_ref()),
            data: Bytes::new(),
        }
    }

    /// Adds application data.
    #[must_use]
    pub fn with_data(mut self, data: impl Into<Bytes>) -> Self {
        self.data = data.into();
        self
    }

    /// The user id.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The application data.
    pub fn data(&self) -> &Bytes {
        &self.data
    }
}

impl fmt::Debug for ClientInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientInfo")
            .field("user", &self.user)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// One member of a room, as presence lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PresenceEntry {
    /// The connection.
    pub conn: ConnId,
    /// What the application said about it.
    pub info: Arc<ClientInfo>,
    /// A version no older than the join that put it there, from the clock of the
    /// connection's node: compare it only with the versions of this connection's events
    /// ([`PresenceEvent::version`]). In what [`Presence::joined`] and [`Presence::left`] get,
    /// the version of that very change.
    pub version: u64,
}

impl PresenceEntry {
    /// An entry, for a [`Presence`] store that reads its members back from storage.
    pub fn new(conn: ConnId, info: Arc<ClientInfo>, version: u64) -> Self {
        Self {
            conn,
            info,
            version,
        }
    }
}

/// Whether a presence event is a join or a leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceKind {
    /// The connection joined the room.
    Join,
    /// The connection left the room (by itself, or because it ended).
    Leave,
}

/// A join or a leave, for a room whose [`RoomOptions`](crate::RoomOptions) ask for events.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PresenceEvent<'a> {
    /// Join or leave.
    pub kind: PresenceKind,
    /// The room.
    pub room: &'a RoomName,
    /// The connection that joined or left.
    pub conn: ConnId,
    /// What the application said about it.
    pub info: &'a ClientInfo,
    /// The version of this change, from the clock of the connection's node (which grows
    /// with every join and leave there). A client keeps, per room and connection, the
    /// highest version it has seen, from a snapshot's entries ([`PresenceEntry::version`])
    /// or from events, and applies only what is newer: then snapshot and events combine
    /// into the room's members whichever arrives first (events may come out of order, as
    /// when a shared store writes a node's members again; this rule makes that harmless).
    pub version: u64,
}

/// Where presence lives: the in-process store by default ([`LocalPresence`], the hub's own
/// rooms), a shared store (`RedisPresence`, say) when a cluster must see every node's members.
///
/// The hub calls [`joined`](Self::joined) and [`left`](Self::left) after each change, outside
/// its locks. Calls for one room may come from several tasks at once; the calls for one
/// connection come one at a time, in the order of their versions.
///
/// Join and leave events: a store that is local to the node lets the hub send them to the
/// room's members at once (the default). A shared store returns `true` from
/// [`announces`](Self::announces) and sends each event itself with [`Hub::announce`] once
/// the change is recorded where every node reads, in the order it got the changes: then a
/// member on any node that reads presence after joining, and applies the events as
/// [`PresenceEvent::version`] says, ends up with exactly the room's members.
pub trait Presence: Send + Sync + fmt::Debug + 'static {
    /// Called once, when the hub is built (a store keeps a [`Hub::downgrade`] to announce
    /// through).
    fn attach(&self, hub: &Hub) {
        let _ = hub;
    }

    /// `entry` joined `room` on this node (`entry.version` is the change's).
    fn joined(&self, room: &RoomName, entry: &PresenceEntry) {
        let _ = (room, entry);
    }

    /// `entry` left `room` on this node (`entry.version` is the change's).
    fn left(&self, room: &RoomName, entry: &PresenceEntry) {
        let _ = (room, entry);
    }

    /// Whether this store sends the join and leave events itself, with [`Hub::announce`],
    /// after it recorded the change (`false` by default: the hub sends them at once).
    fn announces(&self) -> bool {
        false
    }

    /// Called by [`Hub::shutdown`]: finishes what is pending (a shared store writes this
    /// node's last changes and tells the others it is gone). Nothing by default.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// The members of `room`.
    fn members<'a>(
        &'a self,
        hub: &'a Hub,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PresenceEntry>, HubError>>;

    /// How many members `room` has.
    fn count<'a>(&'a self, hub: &'a Hub, room: &'a str) -> BoxFuture<'a, Result<usize, HubError>>;
}

/// A join or a leave waiting to reach the [`Presence`] store and the room, in its member's
/// order.
pub(crate) struct Change {
    pub(crate) kind: PresenceKind,
    pub(crate) room: RoomName,
    /// The room it changed (not whatever room has its name by the time it is sent).
    pub(crate) room_arc: Arc<Room>,
    pub(crate) version: u64,
}

/// A member's changes not yet handed on, and whether a task is handing them on: pushed
/// under the member's `joined` lock (so in version order), handed on outside it, by one
/// task at a time.
#[derive(Default)]
pub(crate) struct ChangeQueue {
    pub(crate) pending: VecDeque<Change>,
    pub(crate) busy: bool,
}

impl fmt::Debug for ChangeQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeQueue")
            .field("pending", &self.pending.len())
            .field("busy", &self.busy)
            .finish()
    }
}

/// Presence of one process: the hub's own rooms, read where they are.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalPresence;

impl Presence for LocalPresence {
    fn members<'a>(
        &'a self,
        hub: &'a Hub,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PresenceEntry>, HubError>> {
        Box::pin(async move { Ok(hub.local_members(room)) })
    }

    fn count<'a>(&'a self, hub: &'a Hub, room: &'a str) -> BoxFuture<'a, Result<usize, HubError>> {
        Box::pin(async move { Ok(hub.room_size(room)) })
    }
}
