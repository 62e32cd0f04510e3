//! Which rooms a node's broker connection should be subscribed to, and which it is.
//!
//! The hub says when a room gets its first local member and loses its last; those calls can
//! race, so they only mark the room *dirty*, and the subscriber task decides from the hub's
//! own count ([`Hub::room_size`](crate::Hub::room_size)) whether to subscribe. State, not a
//! queue of commands: its size is at most the number of rooms, whatever the churn, and
//! nothing is recorded while no connection is up (the next one starts from the hub's rooms).

use std::collections::HashSet;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::RoomName;

#[derive(Debug, Default)]
struct State {
    /// A connection is up: marks are recorded (while none is, the next one starts from the
    /// hub's rooms, so marks would only grow the set).
    connected: bool,
    dirty: HashSet<RoomName>,
    confirmed: HashSet<RoomName>,
}

#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    state: Mutex<State>,
    /// Wakes the subscriber task: rooms are dirty, the connection went down, or the broker
    /// is shutting down.
    pub(crate) changed: Notify,
    confirmed_changed: Notify,
}

impl Subscriptions {
    pub(crate) fn mark_dirty(&self, room: &RoomName) {
        let mut state = self.state.lock();
        if !state.connected {
            return;
        }
        state.dirty.insert(room.clone());
        drop(state);
        self.changed.notify_one();
    }

    /// A connection is up: marks count from now on.
    pub(crate) fn connected(&self) {
        self.state.lock().connected = true;
    }

    pub(crate) fn take_dirty(&self) -> Vec<RoomName> {
        self.state.lock().dirty.drain().collect()
    }

    /// The broker confirmed these subscriptions (or their end).
    pub(crate) fn confirm(&self, subscribed: &[RoomName], unsubscribed: &[RoomName]) {
        let mut state = self.state.lock();
        state.confirmed.extend(subscribed.iter().cloned());
        for room in unsubscribed {
            state.confirmed.remove(room);
        }
        drop(state);
        self.confirmed_changed.notify_waiters();
    }

    /// The connection is gone: nothing is subscribed until it is back.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn lost(&self) {
        let mut state = self.state.lock();
        state.connected = false;
        state.dirty.clear();
        state.confirmed.clear();
        drop(state);
        self.confirmed_changed.notify_waiters();
    }

    /// The connection is down but will come back with its subscriptions (a client that
    /// restores them itself): nothing counts as subscribed meanwhile; marks are kept.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn unconfirm_all(&self) {
        self.state.lock().confirmed.clear();
        self.confirmed_changed.notify_waiters();
    }

    pub(crate) fn is_confirmed(&self, room: &str) -> bool {
        self.state.lock().confirmed.contains(room)
    }

    /// Waits until `room`'s subscription is confirmed.
    pub(crate) async fn wait_confirmed(&self, room: &str) {
        loop {
            let notified = self.confirmed_changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a confirmation in between is not missed.
            notified.as_mut().enable();
            if self.is_confirmed(room) {
                return;
            }
            notified.await;
        }
    }
}
