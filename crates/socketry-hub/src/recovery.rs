//! Delivering numbered publications, and joining a room with recovery: what a member missed
//! is sent from the room's history before anything newer, with no gap and nothing twice.
//!
//! While a member recovers, the live publications of that room meant for it are held back
//! (bounded) instead of queued; once the history is read, the missed ones are queued, then
//! the held ones newer than what the history gave, all under the member's hold lock, so that
//! the next live publication queues after them.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use socketry::PreparedMessage;

use crate::{
    ConnId, History, HistoryRead, Hub, HubError, LostReason, Overflow, Position, Publication,
    PublishReport, Recovery, RoomName, hub::MemberState, rooms::Room,
};

/// How long a recovery waits for the broker's subscription and for the history read.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A room's live publications held back for a recovering member.
#[derive(Debug)]
pub(crate) struct Held {
    room: RoomName,
    publications: Vec<(u64, Arc<PreparedMessage>)>,
    overflowed: bool,
}

impl MemberState {
    fn hold(&self, room: &RoomName) {
        let mut held = self.held.lock();
        held.push(Held {
            room: room.clone(),
            publications: Vec::new(),
            overflowed: false,
        });
        self.holding.store(true, Ordering::Release);
    }

    /// Keeps a live publication back if the member is recovering `room`; `false` if it is
    /// to be queued as usual.
    fn held_back(
        &self,
        room: &str,
        offset: u64,
        message: &Arc<PreparedMessage>,
        max: usize,
    ) -> bool {
        if !self.holding.load(Ordering::Acquire) {
            return false;
        }
        let mut held = self.held.lock();
        let Some(held) = held.iter_mut().find(|h| &*h.room == room) else {
            return false;
        };
        if held.publications.len() < max {
            held.publications.push((offset, message.clone()));
        } else {
            held.overflowed = true;
        }
        true
    }
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
    /// history: numbers and keeps it, then delivers it, in the order of the numbers (one task
    /// at a time per room, outside the history's lock).
    pub(crate) fn publish_to_local_history(&self, publication: Publication) -> PublishReport {
        let Some(limits) = publication.history else {
            return self.deliver_local(&publication);
        };
        let store = self.inner.history.room(&publication.room, limits);
        {
            let mut history = store.lock();
            let position = history.append(publication.message.clone(), limits);
            history.pending.push_back((position, publication));
            if history.busy {
                return PublishReport::default(); // the task delivering takes it
            }
            history.busy = true;
        }
        let mut total = PublishReport::default();
        loop {
            let (position, publication) = {
                let mut history = store.lock();
                match history.pending.pop_front() {
                    Some(next) => next,
                    None => {
                        history.busy = false;
                        return total;
                    }
                }
            };
            let report = self.deliver_local(&publication.with_position(position));
            total.delivered += report.delivered;
            total.dropped += report.dropped;
            total.disconnected += report.disconnected;
        }
    }

    /// Delivers a numbered publication: formatted once with its position, queued for each
    /// member (held back for those recovering the room).
    pub(crate) fn deliver_positioned(
        &self,
        publication: &Publication,
        position: &Position,
    ) -> PublishReport {
        let Some(room) = self.room(&publication.room) else {
            return PublishReport::default();
        };
        let message = match &room.history {
            Some(history) => Arc::new(PreparedMessage::new(
                history.format(position, publication.message.message()),
            )),
            None => publication.message.clone(),
        };
        if let Err(err) = self.check(&message) {
            tracing::warn!(room = %publication.room, error = %err, "hub: publication not delivered");
            return PublishReport::default();
        }
        let (report, slow) = self.fan_out_positioned(
            &room,
            &publication.room,
            publication.except,
            publication.overflow,
            &message,
            position.offset(),
        );
        if !slow.is_empty() {
            self.settle(slow);
        }
        report
    }

    fn fan_out_positioned(
        &self,
        room: &Room,
        name: &str,
        except: Option<ConnId>,
        overflow: Option<Overflow>,
        message: &Arc<PreparedMessage>,
        offset: u64,
    ) -> (PublishReport, Vec<Arc<MemberState>>) {
        let mut report = PublishReport::default();
        let mut slow = Vec::new();
        let overflow = overflow.unwrap_or(self.inner.config.overflow);
        let bounds = self.bounds();
        let max_held = self.inner.config.max_queue_messages;
        {
            let members = room.members.read();
            for (id, member) in members.iter() {
                if except == Some(*id) || member.held_back(name, offset, message, max_held) {
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
        member.hold(&name);
        let joined = self.join_member(member, room);
        let read = match joined {
            Ok(true) => {
                // From here on, what reaches this node is held back: the history read after
                // the subscription holds everything before.
                let _ = tokio::time::timeout(RECOVERY_TIMEOUT, self.subscribed(room)).await;
                Some(self.read_history(&name, Some(&since)).await)
            }
            // Already a member: it missed nothing this could send.
            Ok(false) => None,
            Err(err) => {
                self.release(member, &name, &[], 0);
                return Err(err);
            }
        };
        let Some(read) = read else {
            self.release(member, &name, &[], 0);
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
                self.release(member, &name, &[], 0);
                return Ok(Recovery::Lost {
                    reason: LostReason::Unavailable,
                    current: None,
                });
            }
        };
        let current = read.current.clone();
        let top = current.as_ref().map_or(0, Position::offset);
        let same_epoch = current.as_ref().is_some_and(|c| c.epoch() == since.epoch());
        if !read.contiguous {
            self.release(member, &name, &[], top);
            let reason = if same_epoch {
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
        let overflowed = self.release(member, &name, &missed, top);
        if overflowed {
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

    /// Ends the hold on `room`: queues `missed`, then the held publications newer than
    /// `after`, and lets live publications through again, all under the hold lock. Returns
    /// whether the hold overflowed.
    fn release(
        &self,
        member: &Arc<MemberState>,
        room: &RoomName,
        missed: &[Arc<PreparedMessage>],
        after: u64,
    ) -> bool {
        let bounds = self.bounds();
        let overflow = self.inner.config.overflow;
        let (overflowed, slow) = {
            let mut all = member.held.lock();
            let Some(index) = all.iter().position(|h| h.room == *room) else {
                return false;
            };
            let held = all.swap_remove(index);
            let newer: Vec<Arc<PreparedMessage>> = (held.publications.into_iter())
                .filter(|(offset, _)| *offset > after)
                .map(|(_, message)| message)
                .collect();
            let mut slow = false;
            let mut queued = 0;
            for batch in [missed, &newer[..]] {
                if batch.is_empty() {
                    continue;
                }
                let pushed = member.outbox.push_all(batch, overflow, bounds);
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
            // Last, still under the lock: a publication that sees no hold queues after these.
            if all.is_empty() {
                member.holding.store(false, Ordering::Release);
            }
            (held.overflowed, slow)
        };
        if slow {
            self.settle(vec![member.clone()]);
        }
        overflowed
    }
}
