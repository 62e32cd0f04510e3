//! Rooms: joining, leaving, a connection's departure, and presence read from the rooms.
//!
//! Locks, always taken in this order: a member's `joined` list, then a shard of the room map
//! (briefly: to find or create a room), then a room's member map, then member outboxes
//! (publishers). No user code (room options, event formatters, the broker, the presence
//! store) runs under any of them.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
};

use dashmap::mapref::entry::Entry;
use indexmap::IndexMap;
use parking_lot::RwLock;
use socketry::PreparedMessage;

use crate::{
    ConnId, Hub, HubError, PresenceEntry, PresenceEvent, PresenceKind, Publication, RoomName,
    RoomOptions, hub::MemberState, options::EventFormatter, room_name,
};

/// A room with members on this node.
pub(crate) struct Room {
    pub(crate) members: RwLock<IndexMap<ConnId, Arc<MemberState>>>,
    /// The member count, readable without the lock.
    pub(crate) size: AtomicUsize,
    /// The version of its last join or leave (from the hub's clock, set under the write
    /// lock): presence events carry it, and a snapshot says up to which event it is current.
    version: AtomicU64,
    /// Set under the write lock when the last member leaves: a join that holds this room
    /// starts over with a new one.
    removed: AtomicBool,
    events: Option<EventFormatter>,
}

impl Room {
    fn new(options: RoomOptions) -> Self {
        Self {
            members: RwLock::new(IndexMap::new()),
            size: AtomicUsize::new(0),
            version: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            events: options.events,
        }
    }
}

/// A member taken out of a room.
struct Left {
    room: Arc<Room>,
    emptied: bool,
    version: u64,
}

/// The members of a room on this node, with the version of the room they are current to:
/// presence events with a version up to it are already in the list.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PresenceSnapshot {
    /// Joins and leaves the room has seen (0 for a room without members).
    pub version: u64,
    /// Its members.
    pub members: Vec<PresenceEntry>,
}

impl Hub {
    /// Adds `member` to `room`. `Ok(false)` if it was in it already.
    pub(crate) fn join_member(
        &self,
        member: &Arc<MemberState>,
        room: &str,
    ) -> Result<bool, HubError> {
        room_name::check(room)?;
        let inner = &self.inner;
        let mut options: Option<RoomOptions> = None;
        let (name, created, room_arc, version) = loop {
            // A room made now gets options from user code: asked before any lock is taken.
            let exists = inner
                .rooms
                .get(room)
                .is_some_and(|entry| !entry.value().removed.load(Ordering::Acquire));
            if options.is_none() && !exists {
                options = Some(self.room_options(room));
            }
            let mut joined = member.joined.lock();
            if joined.left {
                return Err(HubError::Gone(member.id));
            }
            if joined.rooms.iter().any(|name| &**name == room) {
                return Ok(false);
            }
            if joined.rooms.len() >= inner.config.max_rooms_per_member {
                return Err(HubError::TooManyRooms {
                    limit: inner.config.max_rooms_per_member,
                });
            }
            let name = RoomName::new(room)?;
            let (room_arc, created) = match inner.rooms.entry(name.clone()) {
                Entry::Occupied(entry) if !entry.get().removed.load(Ordering::Acquire) => {
                    (entry.get().clone(), false)
                }
                Entry::Occupied(mut entry) => {
                    let Some(options) = options.take() else {
                        continue;
                    };
                    let fresh = Arc::new(Room::new(options));
                    entry.insert(fresh.clone());
                    (fresh, true)
                }
                Entry::Vacant(entry) => {
                    let Some(options) = options.take() else {
                        continue;
                    };
                    let fresh = Arc::new(Room::new(options));
                    entry.insert(fresh.clone());
                    (fresh, true)
                }
            };
            // The map's shard is released: a fan-out holding this room's read lock delays
            // only this join, not the lookups of other rooms.
            let mut members = room_arc.members.write();
            if room_arc.removed.load(Ordering::Acquire) {
                continue; // emptied and removed since we found it: start over
            }
            members.insert(member.id, member.clone());
            room_arc.size.fetch_add(1, Ordering::Relaxed);
            let version = self.next_version(&room_arc);
            drop(members);
            joined.rooms.push(name.clone());
            break (name, created, room_arc, version);
        };
        inner.metrics.members.increment(1.0);
        if created {
            inner.metrics.rooms.increment(1.0);
            guarded("Broker::subscribe", || inner.broker.subscribe(&name));
        }
        let entry = PresenceEntry {
            conn: member.id,
            info: member.info.clone(),
        };
        guarded("Presence::joined", || inner.presence.joined(&name, &entry));
        tracing::debug!(conn = %member.id, room = %name, "hub: joined");
        let event = room_arc.events.clone();
        if let Some(event) =
            self.event_publication(event, PresenceKind::Join, name, member, version)
        {
            let slow = self.fan_out_room(&room_arc, &event);
            self.settle(slow);
        }
        Ok(true)
    }

    /// Takes `member` out of `room`. `Ok(false)` if it was not in it.
    pub(crate) fn leave_member(
        &self,
        member: &Arc<MemberState>,
        room: &str,
    ) -> Result<bool, HubError> {
        let (name, left) = {
            // Held while the room changes, so that a join of the same room waits for it.
            let mut joined = member.joined.lock();
            let Some(index) = joined.rooms.iter().position(|name| &**name == room) else {
                return Ok(false);
            };
            let name = joined.rooms.swap_remove(index);
            let left = self.detach(&name, member);
            (name, left)
        };
        if let Some((room, event)) = left.and_then(|left| self.after_leave(name, member, left)) {
            let slow = self.fan_out_room(&room, &event);
            self.settle(slow);
        }
        Ok(true)
    }

    /// Takes a member out of the hub and of every room; returns the leave events to send, with
    /// their rooms. Idempotent.
    pub(crate) fn remove(&self, member: &Arc<MemberState>) -> Vec<(Arc<Room>, Publication)> {
        let rooms = {
            let mut joined = member.joined.lock();
            if joined.left {
                return Vec::new();
            }
            joined.left = true;
            std::mem::take(&mut joined.rooms)
        };
        member.outbox.close();
        self.inner.conns.remove(&member.id);
        self.inner.metrics.connections.decrement(1.0);
        tracing::trace!(conn = %member.id, "hub: connection removed");
        // Out of every room first, then the user code: a panic there leaves no ghost behind.
        let lefts: Vec<_> = rooms
            .into_iter()
            .filter_map(|name| self.detach(&name, member).map(|left| (name, left)))
            .collect();
        lefts
            .into_iter()
            .filter_map(|(name, left)| self.after_leave(name, member, left))
            .collect()
    }

    /// Removes a member and sends the leave events (what a dropped [`Member`](crate::Member)
    /// does).
    pub(crate) fn remove_and_settle(&self, member: &Arc<MemberState>) {
        let mut slow = Vec::new();
        for (room, event) in self.remove(member) {
            slow.extend(self.fan_out_room(&room, &event));
        }
        self.settle(slow);
    }

    /// Takes `member` out of the room `name`: whether it was in it, and whether the room is
    /// gone with it. No user code.
    fn detach(&self, name: &RoomName, member: &Arc<MemberState>) -> Option<Left> {
        let inner = &self.inner;
        // The member is in this room, so the room is not removed and the map holds it.
        let room = inner.rooms.get(name).map(|entry| entry.value().clone())?;
        let (version, emptied) = {
            let mut members = room.members.write();
            members.swap_remove(&member.id)?;
            room.size.fetch_sub(1, Ordering::Relaxed);
            let version = self.next_version(&room);
            let emptied = members.is_empty();
            if emptied {
                room.removed.store(true, Ordering::Release);
            }
            (version, emptied)
        };
        if emptied {
            // Unless a join replaced it already.
            inner
                .rooms
                .remove_if(name, |_, current| Arc::ptr_eq(current, &room));
        }
        Some(Left {
            room,
            emptied,
            version,
        })
    }

    /// What follows a leave, outside the hub's locks: metrics, presence, the broker, the
    /// leave event to send.
    fn after_leave(
        &self,
        name: RoomName,
        member: &Arc<MemberState>,
        left: Left,
    ) -> Option<(Arc<Room>, Publication)> {
        let inner = &self.inner;
        inner.metrics.members.decrement(1.0);
        guarded("Presence::left", || inner.presence.left(&name, member.id));
        if left.emptied {
            inner.metrics.rooms.decrement(1.0);
            guarded("Broker::unsubscribe", || inner.broker.unsubscribe(&name));
        }
        tracing::debug!(conn = %member.id, room = %name, "hub: left");
        let events = left.room.events.clone();
        let event =
            self.event_publication(events, PresenceKind::Leave, name, member, left.version)?;
        Some((left.room, event))
    }

    /// The version of a change to `room`, made under its write lock (so a room's versions
    /// grow in the order of its changes), from the hub's one clock.
    fn next_version(&self, room: &Room) -> u64 {
        let version = self.inner.presence_clock.fetch_add(1, Ordering::Relaxed) + 1;
        room.version.store(version, Ordering::Relaxed);
        version
    }

    fn room_options(&self, room: &str) -> RoomOptions {
        let config = &self.inner.config;
        catch_unwind(AssertUnwindSafe(|| config.options_for(room))).unwrap_or_else(|_| {
            tracing::error!(
                room,
                "hub: the room options function panicked; defaults used"
            );
            RoomOptions::default()
        })
    }

    /// The members of `room` on every node (through the [`Presence`](crate::Presence) store).
    ///
    /// # Errors
    ///
    /// What the presence store returns ([`HubError::Broker`] for one across the network).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(hub: socketry_hub::Hub) -> Result<(), socketry_hub::HubError> {
    /// for entry in hub.presence("lobby").await? {
    ///     println!("{} is {} ({} bytes of data)", entry.conn, entry.info.user(), entry.info.data().len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn presence(&self, room: &str) -> Result<Vec<PresenceEntry>, HubError> {
        self.inner.presence.members(self, room).await
    }

    /// How many members `room` has on every node (through the [`Presence`](crate::Presence)
    /// store).
    ///
    /// # Errors
    ///
    /// As [`presence`](Self::presence).
    pub async fn presence_count(&self, room: &str) -> Result<usize, HubError> {
        self.inner.presence.count(self, room).await
    }

    /// The members of `room` on this node.
    pub fn local_members(&self, room: &str) -> Vec<PresenceEntry> {
        self.local_presence(room).members
    }

    /// The members of `room` on this node and the version of the room they are current to.
    /// With presence events (which carry the version of the change they report), a client
    /// that applies only events newer than its snapshot sees every change once, whatever the
    /// order in which the snapshot and the events reach it.
    ///
    /// # Examples
    ///
    /// ```
    /// let hub = socketry_hub::Hub::default();
    /// let snapshot = hub.local_presence("lobby");
    /// assert_eq!((snapshot.version, snapshot.members.len()), (0, 0));
    /// ```
    pub fn local_presence(&self, room: &str) -> PresenceSnapshot {
        let Some(room) = self
            .inner
            .rooms
            .get(room)
            .map(|entry| entry.value().clone())
        else {
            return PresenceSnapshot::default();
        };
        let members = room.members.read();
        PresenceSnapshot {
            version: room.version.load(Ordering::Relaxed),
            members: members
                .values()
                .map(|member| PresenceEntry {
                    conn: member.id,
                    info: member.info.clone(),
                })
                .collect(),
        }
    }

    /// How many members `room` has on this node: one atomic read, whatever the size.
    ///
    /// # Examples
    ///
    /// ```
    /// let hub = socketry_hub::Hub::default();
    /// assert_eq!(hub.room_size("lobby"), 0);
    /// ```
    pub fn room_size(&self, room: &str) -> usize {
        self.inner
            .rooms
            .get(room)
            .map_or(0, |entry| entry.value().size.load(Ordering::Relaxed))
    }

    /// The rooms that have members on this node.
    #[cfg(any(feature = "redis", feature = "nats"))]
    pub(crate) fn local_rooms(&self) -> Vec<RoomName> {
        self.inner
            .rooms
            .iter()
            .filter(|entry| entry.value().size.load(Ordering::Relaxed) > 0)
            .map(|entry| entry.key().clone())
            .collect()
    }

    /// The room `room`, if it has members on this node.
    pub(crate) fn room(&self, room: &str) -> Option<Arc<Room>> {
        self.inner
            .rooms
            .get(room)
            .map(|entry| entry.value().clone())
    }
}

/// Runs code the hub does not own (a broker, a presence store); a panic there is logged, and
/// the hub's state stays whole.
fn guarded(what: &'static str, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        tracing::error!(what, "hub: a plug-in panicked; the hub goes on");
    }
}

impl Hub {
    /// The event publication for a join or a leave, if the room asks for events (user code,
    /// called outside every lock; a panic there sends nothing).
    fn event_publication(
        &self,
        format: Option<EventFormatter>,
        kind: PresenceKind,
        room: RoomName,
        member: &MemberState,
        version: u64,
    ) -> Option<Publication> {
        let format = format?;
        let event = PresenceEvent {
            kind,
            room: &room,
            conn: member.id,
            info: &member.info,
            version,
        };
        let message = match catch_unwind(AssertUnwindSafe(|| format(&event))) {
            Ok(message) => message?,
            Err(_) => {
                tracing::error!(room = %room, "hub: the presence event formatter panicked");
                return None;
            }
        };
        let message = PreparedMessage::new(message);
        if let Err(err) = self.check(&message) {
            tracing::error!(room = %room, error = %err, "hub: presence event not sent");
            return None;
        }
        Some(Publication::new(room, message).except(member.id))
    }
}
