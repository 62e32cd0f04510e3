//! Presence: who is in a room, the events when that changes, and the [`Presence`] store
//! behind it.

use std::{fmt, future::Future, pin::Pin, sync::Arc};

use bytes::Bytes;

use crate::{ConnId, Hub, HubError, RoomName};

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
    /// The room's version after this change: the count of its joins and leaves on this node.
    /// A client that took a [`PresenceSnapshot`](crate::PresenceSnapshot) applies only the
    /// events newer than it (and, per connection, newer than the last one it applied), so a
    /// join that overtakes a leave on the way does no harm.
    pub version: u64,
}

/// Where presence lives: the in-process store by default ([`LocalPresence`], the hub's own
/// rooms), a shared store (Redis, say) when a cluster must see every node's members.
///
/// The hub calls [`joined`](Self::joined) and [`left`](Self::left) after each change, outside
/// its locks; calls for one room may come from several tasks at once, and the two calls for
/// one connection can arrive in either order when a join races the connection's end: key
/// entries by connection, and let them expire.
pub trait Presence: Send + Sync + fmt::Debug + 'static {
    /// `entry` joined `room` on this node.
    fn joined(&self, room: &RoomName, entry: &PresenceEntry) {
        let _ = (room, entry);
    }

    /// `conn` left `room` on this node.
    fn left(&self, room: &RoomName, conn: ConnId) {
        let _ = (room, conn);
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
