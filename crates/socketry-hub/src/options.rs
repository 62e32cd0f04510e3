//! [`HubConfig`], [`RoomOptions`] and [`Overflow`]: the hub's limits and policies.

use std::{fmt, sync::Arc, time::Duration};

use socketry::Message;

use crate::{History, presence::PresenceEvent};

/// What happens to a publication that does not fit in a member's outbound queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// The member is disconnected with [`SLOW_CLOSE_CODE`](crate::SLOW_CLOSE_CODE): its queue is
    /// freed at once, it leaves every room, and its connection is closed (the default, as
    /// Centrifugo's `DisconnectSlow`).
    #[default]
    Disconnect,
    /// This member does not get this message; the others do, and so does this member
    /// once it catches up (Socket.IO's `volatile`, uWebSockets' `DROPPED`). Counted per member
    /// and in the hub's drops.
    Drop,
}

/// Turns a presence event into the message the room's other members get, or `None` to send
/// nothing. Called outside the hub's locks.
pub type EventFormatter = Arc<dyn Fn(&PresenceEvent<'_>) -> Option<Message> + Send + Sync>;

/// The options of one room, chosen when it is created (its first member joins) by the
/// function given to [`HubConfig::room_options`].
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct RoomOptions {
    pub(crate) events: Option<EventFormatter>,
    pub(crate) history: Option<History>,
}

impl RoomOptions {
    /// Sends join and leave events to the room's other members, as the messages `format`
    /// makes. The default is no events.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketry_hub::{HubConfig, PresenceKind, RoomOptions};
    ///
    /// let config = HubConfig::default().room_options(|room| {
    ///     if room.starts_with("chat:") {
    ///         RoomOptions::default().presence_events(|event| {
    ///             let verb = match event.kind {
    ///                 PresenceKind::Join => "joined",
    ///                 PresenceKind::Leave => "left",
    ///             };
    ///             Some(format!("{} {verb}", event.info.user()).into())
    ///         })
    ///     } else {
    ///         RoomOptions::default()
    ///     }
    /// });
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn presence_events(
        mut self,
        format: impl Fn(&PresenceEvent<'_>) -> Option<Message> + Send + Sync + 'static,
    ) -> Self {
        self.events = Some(Arc::new(format));
        self
    }

    /// Keeps the room's last publications and numbers them ([`History`]), so that a member
    /// that comes back with the last [`Position`](crate::Position) it saw gets what it
    /// missed ([`Member::join_since`](crate::Member::join_since)). The hub's broker keeps
    /// the history: in this process for [`LocalBroker`](crate::LocalBroker), in Redis
    /// Streams for `RedisBroker`. Every member, on every node, gets a room's publications in
    /// the order of their positions.
    #[must_use]
    pub fn history(mut self, history: History) -> Self {
        self.history = Some(history);
        self
    }
}

impl fmt::Debug for RoomOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomOptions")
            .field("presence_events", &self.events.is_some())
            .field("history", &self.history)
            .finish()
    }
}

type RoomOptionsFn = Arc<dyn Fn(&str) -> RoomOptions + Send + Sync>;

/// The hub's limits and policies. Every queue the hub keeps has a bound here.
///
/// # Examples
///
/// ```
/// use socketry_hub::{Hub, HubConfig, Overflow};
///
/// let hub = Hub::new(
///     HubConfig::default()
///         .max_queue_bytes(256 * 1024)
///         .overflow(Overflow::Drop),
/// );
/// # drop(hub);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct HubConfig {
    pub(crate) max_queue_bytes: usize,
    pub(crate) max_queue_messages: usize,
    pub(crate) overflow: Overflow,
    pub(crate) max_rooms_per_member: usize,
    pub(crate) slow_close_timeout: Duration,
    pub(crate) room_options: Option<RoomOptionsFn>,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            max_queue_bytes: 1024 * 1024,
            max_queue_messages: 4096,
            overflow: Overflow::Disconnect,
            max_rooms_per_member: 1024,
            slow_close_timeout: Duration::from_secs(1),
            room_options: None,
        }
    }
}

impl HubConfig {
    /// The most bytes (of encoded frames) a member's outbound queue holds, counting the batch
    /// being written to its socket. The default value is 1 MiB (Centrifugo's
    /// `client.queue_max_size`). A single message larger than this never fits.
    #[must_use]
    pub fn max_queue_bytes(mut self, bytes: usize) -> Self {
        self.max_queue_bytes = bytes.max(1);
        self
    }

    /// The most messages a member's outbound queue holds, counting the batch being written.
    /// The default value is 4096.
    #[must_use]
    pub fn max_queue_messages(mut self, messages: usize) -> Self {
        self.max_queue_messages = messages.max(1);
        self
    }

    /// What happens when a publication does not fit, unless the publication says otherwise.
    /// The default is [`Overflow::Disconnect`].
    #[must_use]
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// The most rooms one member is in at once. The default value is 1024.
    #[must_use]
    pub fn max_rooms_per_member(mut self, rooms: usize) -> Self {
        self.max_rooms_per_member = rooms;
        self
    }

    /// How long the writer of a connection that leaves the hub may still take: a member
    /// disconnected as slow gets this long to answer the close frame before its socket is
    /// shut, and one whose [`Member`](crate::Member) was dropped this long to take what was
    /// queued for it. The default value is 1 second: a slow peer is unlikely to answer, and
    /// its connection holds memory until then.
    #[must_use]
    pub fn slow_close_timeout(mut self, timeout: Duration) -> Self {
        self.slow_close_timeout = timeout;
        self
    }

    /// Chooses each room's options when the room is created (called with its name, outside
    /// the hub's locks). The default gives every room [`RoomOptions::default`].
    #[must_use]
    pub fn room_options(
        mut self,
        options: impl Fn(&str) -> RoomOptions + Send + Sync + 'static,
    ) -> Self {
        self.room_options = Some(Arc::new(options));
        self
    }

    /// The byte bound of a member's queue.
    pub fn get_max_queue_bytes(&self) -> usize {
        self.max_queue_bytes
    }

    /// The message bound of a member's queue.
    pub fn get_max_queue_messages(&self) -> usize {
        self.max_queue_messages
    }

    /// The default overflow policy.
    pub fn get_overflow(&self) -> Overflow {
        self.overflow
    }

    /// The most rooms one member is in at once.
    pub fn get_max_rooms_per_member(&self) -> usize {
        self.max_rooms_per_member
    }

    /// How long the writer of a connection leaving the hub may still take.
    pub fn get_slow_close_timeout(&self) -> Duration {
        self.slow_close_timeout
    }

    pub(crate) fn options_for(&self, room: &str) -> RoomOptions {
        self.room_options
            .as_ref()
            .map_or_else(RoomOptions::default, |options| options(room))
    }
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("max_queue_bytes", &self.max_queue_bytes)
            .field("max_queue_messages", &self.max_queue_messages)
            .field("overflow", &self.overflow)
            .field("max_rooms_per_member", &self.max_rooms_per_member)
            .field("slow_close_timeout", &self.slow_close_timeout)
            .field("room_options", &self.room_options.is_some())
            .finish()
    }
}
