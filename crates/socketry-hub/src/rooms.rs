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
    ConnId, Hub, HubError, PresenceEntry, PresenceEvent, PresenceKind, Publication, PublishReport,
    RoomName, RoomOptions, hub::MemberState, options::EventFormatter, presence::Change, room_name,
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
    pub(crate) history: Option<crate::History>,
}

impl Room {
    fn new(options: RoomOptions) -> Self {
        Self {
            members: RwLock::new(IndexMap::new()),
            size: AtomicUsize::new(0),
            version: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            events: options.events,
            history: options.history,
        }
    }
}

/// A member taken out of a room.
struct Left {
    emptied: bool,
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
        let (name, created) = loop {
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
            member.changes.lock().pending.push_back(Change {
                kind: PresenceKind::Join,
                room: name.clone(),
                room_arc,
                version,
            });
            break (name, created);
        };
        inner.metrics.members.increment(1.0);
        if created {
            inner.metrics.rooms.increment(1.0);
            guarded("Broker::subscribe", || inner.broker.subscribe(&name));
        }
        tracing::debug!(conn = %member.id, room = %name, "hub: joined");
        let slow = self.hand_on_changes(member);
        self.settle(slow);
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
        if let Some(left) = left {
            self.after_leave(&name, member, left);
        }
        let slow = self.hand_on_changes(member);
        self.settle(slow);
        Ok(true)
    }

    /// Takes a member out of the hub and of every room, and hands on the leaves; returns
    /// the members their events made slow. Idempotent.
    pub(crate) fn remove(&self, member: &Arc<MemberState>) -> Vec<Arc<MemberState>> {
        let lefts: Vec<_> = {
            let mut joined = member.joined.lock();
            if joined.left {
                return Vec::new();
            }
            joined.left = true;
            member.outbox.close();
            // Out of every room under the lock (no user code), so that the leaves queue
            // behind any change of this member still on its way.
            std::mem::take(&mut joined.rooms)
                .into_iter()
                .filter_map(|name| self.detach(&name, member).map(|left| (name, left)))
                .collect()
        };
        self.inner.conns.remove(&member.id);
        self.inner.metrics.connections.decrement(1.0);
        tracing::trace!(conn = %member.id, "hub: connection removed");
        for (name, left) in lefts {
            self.after_leave(&name, member, left);
        }
        self.hand_on_changes(member)
    }

    /// Removes a member and sends the leave events (what a dropped [`Member`](crate::Member)
    /// does).
    pub(crate) fn remove_and_settle(&self, member: &Arc<MemberState>) {
        let slow = self.remove(member);
        self.settle(slow);
    }

    /// Takes `member` out of the room `name` (under its `joined` lock) and queues the leave:
    /// whether it was in it, and whether the room is gone with it. No user code.
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
        member.forget_sent(name);
        member.changes.lock().pending.push_back(Change {
            kind: PresenceKind::Leave,
            room: name.clone(),
            room_arc: room,
            version,
        });
        Some(Left { emptied })
    }

    /// What follows a leave, outside the hub's locks: metrics and the broker.
    fn after_leave(&self, name: &RoomName, member: &Arc<MemberState>, left: Left) {
        let inner = &self.inner;
        inner.metrics.members.decrement(1.0);
        if left.emptied {
            inner.metrics.rooms.decrement(1.0);
            guarded("Broker::unsubscribe", || inner.broker.unsubscribe(name));
        }
        tracing::debug!(conn = %member.id, room = %name, "hub: left");
    }

    /// Hands a member's queued joins and leaves on to the presence store and (unless the
    /// store announces them itself) to the rooms' members, in the order they were made:
    /// one task at a time per member, outside every lock. Returns the members the events
    /// made slow.
    fn hand_on_changes(&self, member: &MemberState) -> Vec<Arc<MemberState>> {
        {
            let mut queue = member.changes.lock();
            if queue.busy {
                return Vec::new(); // the task handing them on takes ours too
            }
            queue.busy = true;
        }
        /// Lets the next caller hand changes on if a panic (in a fan-out) ends this one.
        struct Busy<'a>(&'a MemberState);
        impl Drop for Busy<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.changes.lock().busy = false;
                }
            }
        }
        let _busy = Busy(member);
        let mut slow = Vec::new();
        loop {
            let change = {
                let mut queue = member.changes.lock();
                match queue.pending.pop_front() {
                    Some(change) => change,
                    None => {
                        queue.busy = false;
                        return slow;
                    }
                }
            };
            slow.extend(self.hand_on(member, change));
        }
    }

    fn hand_on(&self, member: &MemberState, change: Change) -> Vec<Arc<MemberState>> {
        let presence = &self.inner.presence;
        let entry = PresenceEntry::new(member.id, member.info.clone(), change.version);
        match change.kind {
            PresenceKind::Join => {
                guarded("Presence::joined", || presence.joined(&change.room, &entry))
            }
            PresenceKind::Leave => {
                guarded("Presence::left", || presence.left(&change.room, &entry))
            }
        }
        if presence.announces() {
            return Vec::new();
        }
        let events = change.room_arc.events.clone();
        match self.event_publication(events, change.kind, change.room, &entry) {
            Some(event) => self.fan_out_room(&change.room_arc, &event),
            None => Vec::new(),
        }
    }

    /// The version of a change to `room`, made under its write lock (so a room's versions
    /// grow in the order of its changes), from the hub's one clock.
    fn next_version(&self, room: &Room) -> u64 {
        let version = self.inner.presence_clock.fetch_add(1, Ordering::AcqRel) + 1;
        room.version.store(version, Ordering::Relaxed);
        version
    }

    pub(crate) fn room_options(&self, room: &str) -> RoomOptions {
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
        // One version for every entry: the snapshot is whole as of the room's last change,
        // so each member joined at that version or before.
        let version = room.version.load(Ordering::Relaxed);
        PresenceSnapshot {
            version,
            members: members
                .values()
                .map(|member| PresenceEntry::new(member.id, member.info.clone(), version))
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
    /// Sends the event of a join or a leave that a shared [`Presence`](crate::Presence)
    /// store has recorded (one whose [`announces`](crate::Presence::announces) is `true`)
    /// to the room's members on every node, through the broker, if the room's
    /// [`RoomOptions`] ask for events. The formatter runs here, in the caller's task.
    ///
    /// # Errors
    ///
    /// What [`publish_with`](Self::publish_with) returns.
    pub fn announce(
        &self,
        kind: PresenceKind,
        room: &RoomName,
        entry: &PresenceEntry,
    ) -> Result<PublishReport, HubError> {
        match self.event_for(kind, room, entry) {
            // Through the broker, but outside the room's history: presence is state, read
            // afresh on reconnection, not replayed.
            Some(event) => {
                self.check(&event.message)?;
                self.inner.broker.publish(self, event)
            }
            None => Ok(PublishReport::default()),
        }
    }

    /// As [`announce`](Self::announce), to this node's members only: for a change no node
    /// announced (a node that died, found by the others).
    pub fn announce_local(
        &self,
        kind: PresenceKind,
        room: &RoomName,
        entry: &PresenceEntry,
    ) -> PublishReport {
        match self.event_for(kind, room, entry) {
            Some(event) => self.deliver_local(&event),
            None => PublishReport::default(),
        }
    }

    /// The event for a change, formatted as the room's options say (those of the room on
    /// this node, or the ones it would get).
    fn event_for(
        &self,
        kind: PresenceKind,
        room: &RoomName,
        entry: &PresenceEntry,
    ) -> Option<Publication> {
        let format = match self.room(room) {
            Some(local) => local.events.clone(),
            None => self.room_options(room).events,
        };
        self.event_publication(format, kind, room.clone(), entry)
    }

    /// A version newer than every one this node has given out, for a store that writes
    /// its members again (after its record was lost).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn next_presence_version(&self) -> u64 {
        self.inner.presence_clock.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The event publication for a join or a leave, if the room asks for events (user code,
    /// called outside every lock; a panic there sends nothing).
    fn event_publication(
        &self,
        format: Option<EventFormatter>,
        kind: PresenceKind,
        room: RoomName,
        entry: &PresenceEntry,
    ) -> Option<Publication> {
        let format = format?;
        let event = PresenceEvent {
            kind,
            room: &room,
            conn: entry.conn,
            info: &entry.info,
            version: entry.version,
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
        Some(Publication::new(room, message).except(entry.conn))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use parking_lot::Mutex;

    use super::*;
    use crate::{BoxFuture, ClientInfo, Presence};

    /// Writes down every call, in the order the calls came.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<(ConnId, PresenceKind, u64)>>);

    impl Presence for Arc<Recorder> {
        fn joined(&self, _: &RoomName, entry: &PresenceEntry) {
            // Slow, so that the connection's end comes while the join is on its way.
            std::thread::sleep(std::time::Duration::from_micros(50));
            (self.0.lock()).push((entry.conn, PresenceKind::Join, entry.version));
        }

        fn left(&self, _: &RoomName, entry: &PresenceEntry) {
            (self.0.lock()).push((entry.conn, PresenceKind::Leave, entry.version));
        }

        fn members<'a>(
            &'a self,
            hub: &'a Hub,
            room: &'a str,
        ) -> BoxFuture<'a, Result<Vec<PresenceEntry>, HubError>> {
            Box::pin(async move { Ok(hub.local_members(room)) })
        }

        fn count<'a>(
            &'a self,
            hub: &'a Hub,
            room: &'a str,
        ) -> BoxFuture<'a, Result<usize, HubError>> {
            Box::pin(async move { Ok(hub.room_size(room)) })
        }
    }

    #[test]
    fn a_join_racing_the_connections_end_reaches_the_store_before_the_leave() {
        let recorder = Arc::new(Recorder::default());
        let hub = Hub::builder().presence(recorder.clone()).build();
        let barrier = Barrier::new(2);
        for _ in 0..500 {
            let member = hub.register(ClientInfo::new("racer"));
            std::thread::scope(|s| {
                s.spawn(|| {
                    barrier.wait();
                    let _ = hub.join_member(&member, "r");
                });
                barrier.wait();
                hub.remove_and_settle(&member);
            });
        }
        // Per connection, the calls came in the order of their versions, and a connection
        // that joined left after it.
        let calls = recorder.0.lock();
        let mut last: std::collections::HashMap<ConnId, (PresenceKind, u64)> = Default::default();
        for &(conn, kind, version) in calls.iter() {
            if let Some(&(_, before)) = last.get(&conn) {
                assert!(
                    version > before,
                    "{conn}: {kind:?} v{version} after v{before}"
                );
            }
            last.insert(conn, (kind, version));
        }
        assert!(last.values().all(|(kind, _)| *kind == PresenceKind::Leave));
        assert_eq!(hub.room_size("r"), 0);
    }
}
