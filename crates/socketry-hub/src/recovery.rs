//! Delivering numbered publications, and joining a room with recovery: what a member missed
//! is sent from the room's history before anything newer, with no gap and nothing twice.
//!
//! While a member recovers, the live publications of that room meant for it are held back
//! (bounded) instead of queued; once the history is read, the missed ones are queued, then
//! the held ones newer than what the history gave, all under the member's hold lock, so that
//! the next live publication queues after them.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use socketry::PreparedMessage;

use crate::{
    ConnId, History, HistoryRead, Hub, HubError, LostReason, Overflow, Position, Publication,
    PublishReport, Recovery, RoomName, hub::MemberState, rooms::Room,
};

/// How long a recovery waits for the broker's subscription and for the history read.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// One recovery's hold on a room's live publications, or what stays of it after: the top of
/// the history it read, so that a live publication already sent from the history (it reached
/// the history before the read and this node after the release) is not sent again.
#[derive(Debug)]
pub(crate) struct Held {
    room: RoomName,
    state: HeldState,
}

#[derive(Debug)]
enum HeldState {
    /// A recovery in progress (`token` names it): live publications kept back, bounded.
    Holding {
        token: u64,
        publications: Vec<(Position, Arc<PreparedMessage>)>,
        overflowed: bool,
    },
    /// A recovery done: live publications of `epoch` up to `top` were sent from the history.
    /// Gone at the first one past it.
    Sent { epoch: Arc<str>, top: u64 },
}

/// Names each hold, so that two recoveries of one room by one member do not end each other's.
static HOLDS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread is delivering a `LocalBroker` history room's publications.
    static DELIVERING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as delivering until dropped, then puts back what was there (a nested
/// delivery, of another room from a formatter, must not clear the outer one's mark), on a
/// panic too.
struct Delivering(bool);

impl Delivering {
    fn enter() -> Self {
        Self(DELIVERING.replace(true))
    }
}

impl Drop for Delivering {
    fn drop(&mut self) {
        DELIVERING.set(self.0);
    }
}

impl MemberState {
    fn hold(&self, room: &RoomName) -> u64 {
        let token = HOLDS.fetch_add(1, Ordering::Relaxed);
        let mut held = self.held.lock();
        held.push(Held {
            room: room.clone(),
            state: HeldState::Holding {
                token,
                publications: Vec::new(),
                overflowed: false,
            },
        });
        self.holding.store(true, Ordering::Release);
        token
    }

    /// Keeps a live publication back if the member is recovering `room`, or drops it if a
    /// recovery sent it already; `false` if it is to be queued as usual.
    fn held_back(
        &self,
        room: &str,
        position: &Position,
        message: &Arc<PreparedMessage>,
        max: usize,
    ) -> bool {
        if !self.holding.load(Ordering::Acquire) {
            return false;
        }
        let mut all = self.held.lock();
        let mut kept = false;
        let mut sent_before = false;
        let mut passed = None;
        for (index, held) in all.iter_mut().enumerate() {
            if &*held.room != room {
                continue;
            }
            match &mut held.state {
                HeldState::Holding {
                    publications,
                    overflowed,
                    ..
                } => {
                    if publications.len() < max {
                        publications.push((position.clone(), message.clone()));
                    } else {
                        *overflowed = true;
                    }
                    kept = true;
                }
                HeldState::Sent { epoch, top } => {
                    if **epoch == *position.epoch() && position.offset() <= *top {
                        sent_before = true;
                    } else {
                        passed = Some(index);
                    }
                }
            }
        }
        if let Some(index) = passed {
            all.swap_remove(index);
            if all.is_empty() {
                self.holding.store(false, Ordering::Release);
            }
        }
        kept || sent_before
    }
}

impl MemberState {
    /// Forgets what recoveries of `room` sent (the member left it).
    pub(crate) fn forget_sent(&self, room: &str) {
        if !self.holding.load(Ordering::Acquire) {
            return;
        }
        let mut all = self.held.lock();
        all.retain(|h| &*h.room != room || matches!(h.state, HeldState::Holding { .. }));
        if all.is_empty() {
            self.holding.store(false, Ordering::Release);
        }
    }
}

/// Ends a hold when the recovery that made it is dropped before it ended the hold itself
/// (a caller's timeout or `select!`): otherwise the room's publications would stay held.
struct HoldGuard<'a> {
    hub: &'a Hub,
    member: &'a Arc<MemberState>,
    room: &'a RoomName,
    token: Option<u64>,
}

impl HoldGuard<'_> {
    /// Ends the hold with what the history gave: see [`Hub::release`].
    fn release(
        &mut self,
        missed: &[Arc<PreparedMessage>],
        top: Option<&Position>,
        recovered: bool,
    ) -> Released {
        match self.token.take() {
            Some(token) => {
                (self.hub).release(self.member, self.room, token, missed, top, recovered)
            }
            None => Released::default(),
        }
    }
}

impl Drop for HoldGuard<'_> {
    fn drop(&mut self) {
        self.release(&[], None, false);
    }
}

/// What ending a hold did.
#[derive(Debug, Default)]
struct Released {
    /// More live publications arrived than the hold keeps.
    overflowed: bool,
    /// The missed ones did not fit in the member's queue: none of them were queued.
    too_much: bool,
}

impl Hub {
    /// The history options of `room`: those of its room on this node, or those it would get.
    pub(crate) fn history_of(&self, room: &str) -> Option<History> {
        match self.room(room) {
            Some(local) => local.history.clone(),
            None => self.room_options(room).history,
        }
    }

    /// What [`LocalBroker`](crate::LocalBroker) does with a publication to a room that keeps
    /// history: numbers and keeps it, then delivers it, in the order of the numbers (one
    /// publisher at a time per room, outside the history's lock). The report counts what this
    /// call delivered, which may be another publisher's publication and not its own.
    pub(crate) fn publish_to_local_history(&self, publication: Publication) -> PublishReport {
        let Some(limits) = publication.history else {
            return self.deliver_local(&publication);
        };
        let store = self.inner.history.room(&publication.room, limits);
        let delivering = {
            let mut history = store.lock();
            let position = history.append(publication.message.clone(), limits);
            history.pending.push_back((position, publication));
            history.delivering.clone()
        };
        // One deliverer at a time per room, in the order of the numbers: a publisher that
        // finds one at work waits for it (what is pending is bounded by the publishers), then
        // delivers what is left. A publication made from user code called while delivering
        // (a formatter) does not wait, which could deadlock: it leaves its publication to
        // the deliverer at work, which looks again before it stops.
        let mut total = PublishReport::default();
        loop {
            let guard = if DELIVERING.get() {
                match delivering.try_lock() {
                    Some(guard) => guard,
                    None => return total,
                }
            } else {
                delivering.lock()
            };
            let delivering_here = Delivering::enter();
            let mut slow = Vec::new();
            loop {
                // Not in the `while let`: its lock would be held through the fan-out.
                let next = store.lock().pending.pop_front();
                let Some((position, publication)) = next else {
                    break;
                };
                let (report, made_slow) = self.fan_out_numbered(&publication, &position);
                total.delivered += report.delivered;
                total.dropped += report.dropped;
                total.disconnected += report.disconnected;
                slow.extend(made_slow);
            }
            drop(delivering_here);
            drop(guard);
            // Outside the lock: leaving rooms runs plug-ins and formatters.
            if !slow.is_empty() {
                self.settle(slow);
            }
            if store.lock().pending.is_empty() {
                return total;
            }
        }
    }

    /// Delivers a numbered publication: formatted once with its position, queued for each
    /// member (held back for those recovering the room).
    pub(crate) fn deliver_positioned(
        &self,
        publication: &Publication,
        position: &Position,
    ) -> PublishReport {
        let (report, slow) = self.fan_out_numbered(publication, position);
        if !slow.is_empty() {
            self.settle(slow);
        }
        report
    }

    /// [`deliver_positioned`](Self::deliver_positioned) but for settling the members made
    /// slow, which are returned.
    fn fan_out_numbered(
        &self,
        publication: &Publication,
        position: &Position,
    ) -> (PublishReport, Vec<Arc<MemberState>>) {
        let Some(room) = self.room(&publication.room) else {
            return (PublishReport::default(), Vec::new());
        };
        let message = match &room.history {
            Some(history) => Arc::new(PreparedMessage::new(
                history.format(position, publication.message.message()),
            )),
            None => publication.message.clone(),
        };
        if let Err(err) = self.check(&message) {
            tracing::warn!(room = %publication.room, error = %err, "hub: publication not delivered");
            return (PublishReport::default(), Vec::new());
        }
        self.fan_out_positioned(
            &room,
            &publication.room,
            publication.except,
            publication.overflow,
            &message,
            position,
        )
    }

    fn fan_out_positioned(
        &self,
        room: &Room,
        name: &str,
        except: Option<ConnId>,
        overflow: Option<Overflow>,
        message: &Arc<PreparedMessage>,
        position: &Position,
    ) -> (PublishReport, Vec<Arc<MemberState>>) {
        let mut report = PublishReport::default();
        let mut slow = Vec::new();
        let overflow = overflow.unwrap_or(self.inner.config.overflow);
        let bounds = self.bounds();
        let max_held = self.inner.config.max_queue_messages;
        {
            let members = room.members.read();
            for (id, member) in members.iter() {
                if except == Some(*id) || member.held_back(name, position, message, max_held) {
                    continue;
                }
                let pushed =
                    member
                        .outbox
                        .push_all(std::slice::from_ref(message), overflow, bounds);
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
        self.count(&report, 1);
        (report, slow)
    }

    /// Joins `member` to `room`, sending first what was published after `since`.
    pub(crate) async fn join_since(
        &self,
        member: &Arc<MemberState>,
        room: &str,
        since: Option<Position>,
    ) -> Result<Recovery, HubError> {
        let name = RoomName::new(room)?;
        let Some(history) = self.history_of(room) else {
            self.join_member(member, room)?;
            return Ok(Recovery::Fresh { current: None });
        };
        let Some(since) = since else {
            self.join_member(member, room)?;
            let current = self
                .read_history(&name, None)
                .await
                .ok()
                .and_then(|r| r.current);
            return Ok(Recovery::Fresh { current });
        };
        let mut hold = HoldGuard {
            hub: self,
            member,
            room: &name,
            token: Some(member.hold(&name)),
        };
        let read = match self.join_member(member, room)? {
            true => {
                // From here on, what reaches this node is held back: the history read after
                // the subscription holds everything before. Without the subscription, what
                // is published between the read and it would be missed.
                match tokio::time::timeout(RECOVERY_TIMEOUT, self.subscribed(room)).await {
                    Ok(()) => Some(self.read_history(&name, Some(&since)).await),
                    Err(_) => Some(Err(HubError::Broker(
                        "the room's broker subscription timed out".into(),
                    ))),
                }
            }
            // Already a member: it missed nothing this could send.
            false => None,
        };
        let Some(read) = read else {
            hold.release(&[], None, false);
            let current = self
                .read_history(&name, None)
                .await
                .ok()
                .and_then(|r| r.current);
            return Ok(Recovery::Fresh { current });
        };
        let read = match read {
            Ok(read) => read,
            Err(err) => {
                tracing::warn!(room, error = %err, "hub: history not read; recovery lost");
                hold.release(&[], None, false);
                return Ok(Recovery::Lost {
                    reason: LostReason::Unavailable,
                    current: None,
                });
            }
        };
        let current = read.current.clone();
        let same_epoch = current.as_ref().is_some_and(|c| c.epoch() == since.epoch());
        // A position past the top of its own epoch: the history went back (a server that
        // lost writes), so its offsets now name other publications.
        let behind = same_epoch
            && current
                .as_ref()
                .is_some_and(|c| c.offset() < since.offset());
        if !read.contiguous || behind {
            hold.release(&[], current.as_ref(), false);
            let reason = if same_epoch && !behind {
                LostReason::Trimmed
            } else {
                LostReason::EpochChanged
            };
            return Ok(Recovery::Lost { reason, current });
        }
        let missed: Vec<Arc<PreparedMessage>> = (read.items.iter())
            .map(|(position, message)| {
                Arc::new(PreparedMessage::new(history.format(position, message)))
            })
            .collect();
        let released = hold.release(&missed, current.as_ref(), true);
        if released.overflowed || released.too_much {
            return Ok(Recovery::Lost {
                reason: LostReason::TooMuch,
                current,
            });
        }
        Ok(Recovery::Recovered {
            missed: missed.len(),
        })
    }

    async fn read_history(
        &self,
        room: &RoomName,
        since: Option<&Position>,
    ) -> Result<HistoryRead, HubError> {
        match tokio::time::timeout(
            RECOVERY_TIMEOUT,
            self.inner.broker.history(self, room, since),
        )
        .await
        {
            Ok(read) => read,
            Err(_) => Err(HubError::Broker("history read timed out".into())),
        }
    }

    /// Ends the hold `token` on `room`: queues `missed` (all of them, or none if they do not
    /// fit in the member's queue), then the held publications newer than `top`, and lets
    /// live publications through again (after a recovery, but those up to `top`, sent
    /// already), all under the hold lock, so that the next live publication queues after
    /// these.
    fn release(
        &self,
        member: &Arc<MemberState>,
        room: &RoomName,
        token: u64,
        missed: &[Arc<PreparedMessage>],
        top: Option<&Position>,
        recovered: bool,
    ) -> Released {
        let bounds = self.bounds();
        let overflow = self.inner.config.overflow;
        let (released, slow) = {
            // Held across the hold lock (the order is joined, then held), so that a leave
            // (whose `forget_sent` runs under it) cannot come between: a member that left the
            // room gets no mark (it would stay for the member's life).
            let joined = member.joined.lock();
            let recovered = recovered && joined.rooms.iter().any(|name| name == room);
            let mut all = member.held.lock();
            let Some(index) = all.iter().position(|h| {
                h.room == *room
                    && matches!(h.state, HeldState::Holding { token: t, .. } if t == token)
            }) else {
                return Released::default();
            };
            let HeldState::Holding {
                publications,
                overflowed,
                ..
            } = all.swap_remove(index).state
            else {
                unreachable!("found holding above");
            };
            let newer: Vec<Arc<PreparedMessage>> = (publications.into_iter())
                .filter(|(position, _)| {
                    top.is_none_or(|top| {
                        position.epoch() != top.epoch() || position.offset() > top.offset()
                    })
                })
                .map(|(_, message)| message)
                .collect();
            let mut released = Released {
                overflowed,
                too_much: false,
            };
            let mut slow = false;
            let mut queued = 0;
            if !missed.is_empty() {
                match member.outbox.push_all_or_none(missed, bounds) {
                    Some(pushed) => queued += pushed,
                    None => released.too_much = true,
                }
            }
            if !newer.is_empty() {
                let pushed = member.outbox.push_all(&newer, overflow, bounds);
                queued += pushed.queued;
                member
                    .dropped
                    .fetch_add(pushed.dropped as u64, Ordering::Relaxed);
                slow |= pushed.disconnected;
            }
            self.count(
                &PublishReport {
                    delivered: queued,
                    ..PublishReport::default()
                },
                0,
            );
            // Also with nothing missed: a publication at the top may still be on its way.
            if let Some(top) = top.filter(|_| recovered && !released.too_much) {
                // One mark per room: the newest recovery's.
                all.retain(|h| h.room != *room || matches!(h.state, HeldState::Holding { .. }));
                all.push(Held {
                    room: room.clone(),
                    state: HeldState::Sent {
                        epoch: top.epoch_arc(),
                        top: top.offset(),
                    },
                });
            }
            // Last, still under the lock: a publication that sees no hold queues after these.
            if all.is_empty() {
                member.holding.store(false, Ordering::Release);
            }
            (released, slow)
        };
        if slow {
            self.settle(vec![member.clone()]);
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use socketry::Message;

    use super::*;
    use crate::{ClientInfo, HubConfig, RoomOptions};

    /// A hub whose rooms keep history, and a member of its room `r`.
    fn member_of_a_history_room() -> (Hub, Arc<MemberState>, RoomName) {
        let hub = Hub::new(HubConfig::default().room_options(|_| {
            RoomOptions::default().history(History::new(|_, message| message.clone()))
        }));
        let member = hub.register(ClientInfo::new("m"));
        hub.join_member(&member, "r").unwrap();
        (hub, member, RoomName::new("r").unwrap())
    }

    fn queued(hub: &Hub, member: &MemberState) -> usize {
        hub.buffered_amount(member.id).expect("a member")
    }

    #[test]
    fn a_live_publication_the_history_sent_already_is_not_sent_again() {
        let (hub, member, name) = member_of_a_history_room();
        let token = member.hold(&name);
        let one = Arc::new(PreparedMessage::new(Message::text("one")));
        let top = Position::new(1, "e");
        let released = hub.release(&member, &name, token, &[one], Some(&top), true);
        assert!(!released.too_much && !released.overflowed);
        let after_recovery = queued(&hub, &member);
        assert!(after_recovery > 0);
        // Offset 1 reaches this node only now (it was in the history the recovery read).
        let late = Publication::new(name.clone(), PreparedMessage::new(Message::text("one")));
        hub.deliver_positioned(&late, &top);
        assert_eq!(queued(&hub, &member), after_recovery, "sent twice");
        // The next one is queued, and then the mark is gone.
        let next = Publication::new(name, PreparedMessage::new(Message::text("two")));
        hub.deliver_positioned(&next, &Position::new(2, "e"));
        assert!(queued(&hub, &member) > after_recovery);
        assert!(!member.holding.load(Ordering::Acquire));
    }

    #[test]
    fn with_nothing_missed_the_top_still_on_its_way_is_not_sent_again_and_leaving_forgets() {
        let (hub, member, name) = member_of_a_history_room();
        // The client had seen up to 10, the top: nothing missed.
        let token = member.hold(&name);
        let top = Position::new(10, "e");
        hub.release(&member, &name, token, &[], Some(&top), true);
        let late = Publication::new(name, PreparedMessage::new(Message::text("ten")));
        hub.deliver_positioned(&late, &top);
        assert_eq!(queued(&hub, &member), 0, "sent twice");
        // Out of the room, the mark goes (it would make every later publication look).
        assert!(member.holding.load(Ordering::Acquire));
        hub.leave_member(&member, "r").unwrap();
        assert!(!member.holding.load(Ordering::Acquire));
    }

    #[test]
    fn a_formatter_that_publishes_to_another_room_then_its_own_does_not_deadlock() {
        let cell: Arc<std::sync::OnceLock<crate::WeakHub>> = Arc::default();
        let formatter_hub = cell.clone();
        let hub = Hub::new(HubConfig::default().room_options(move |_| {
            let formatter_hub = formatter_hub.clone();
            RoomOptions::default().history(History::new(move |_position, message| {
                if message.as_payload() == b"first"
                    && let Some(hub) = formatter_hub.get().and_then(crate::WeakHub::upgrade)
                {
                    // Another history room first: its delivery, nested in this one, must
                    // not leave this thread looking as if it delivered nothing.
                    hub.publish("other", "aside").unwrap();
                    hub.publish("r", "from the formatter").unwrap();
                }
                message.clone()
            }))
        }));
        cell.set(hub.downgrade()).unwrap();
        let member = hub.register(ClientInfo::new("m"));
        hub.join_member(&member, "r").unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let publisher = hub.clone();
        std::thread::spawn(move || {
            publisher.publish("r", "first").unwrap();
            let _ = done.send(());
        });
        finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("publishing deadlocked");
        // Both delivered, the formatter's after the first.
        let one = queued(&hub, &member);
        hub.publish("r", "third").unwrap();
        assert!(one > 0 && queued(&hub, &member) > one);
        assert_eq!(member.outbox.len(), 3);
    }

    #[test]
    fn a_recovery_dropped_midway_holds_nothing_back() {
        let (hub, member, name) = member_of_a_history_room();
        {
            let _hold = HoldGuard {
                hub: &hub,
                member: &member,
                room: &name,
                token: Some(member.hold(&name)),
            };
            // Dropped here, as a `join_since` future cancelled by the caller's timeout.
        }
        assert!(!member.holding.load(Ordering::Acquire));
        let live = Publication::new(name, PreparedMessage::new(Message::text("live")));
        hub.deliver_positioned(&live, &Position::new(1, "e"));
        assert!(queued(&hub, &member) > 0);
    }
}
