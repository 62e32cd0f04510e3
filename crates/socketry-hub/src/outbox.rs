//! A member's bounded outbound queue, shared by the publishers (who push) and the member's
//! writer (who drains it).
//!
//! Publishers hold a room's member list while they push, so a push is a short lock of this
//! queue and nothing more: no allocation beyond the queue's growth, no copy (an `Arc`), no
//! system call. The writer takes everything queued at once and writes it as one batch.

use std::{
    collections::VecDeque,
    mem,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use parking_lot::Mutex;
use socketry::PreparedMessage;

use crate::Overflow;

/// The queue's bounds, copied from the hub's config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) bytes: usize,
    pub(crate) messages: usize,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    Dropped,
    /// This push overflowed the queue under [`Overflow::Disconnect`]: the member is now slow.
    Disconnected,
    /// The member was already gone (closed, or disconnected as slow before).
    Gone,
}

/// Why a write in progress should stop waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupt {
    /// The member overflowed: close it with the slow code.
    Slow,
    /// The member left the hub: what is queued gets a last deadline.
    Closed,
}

/// What a push of several messages did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PushedAll {
    pub(crate) queued: usize,
    pub(crate) dropped: usize,
    /// A message overflowed the queue under [`Overflow::Disconnect`]: the member is now slow.
    pub(crate) disconnected: bool,
}

/// What the writer gets when it asks for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drained {
    /// The batch was filled with every queued message.
    Batch,
    /// The member overflowed: close it with the slow code.
    Slow,
    /// The member left the hub and nothing is queued.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Slow,
    Closed,
}

#[derive(Debug)]
struct Queue {
    items: VecDeque<Arc<PreparedMessage>>,
    /// Bytes queued plus bytes in the batch the writer is writing.
    bytes: usize,
    /// Messages in the batch the writer is writing.
    in_flight_messages: usize,
    in_flight_bytes: usize,
    state: State,
    /// The idle writer's waker. Absent means a wake is pending or the writer is running: a
    /// push wakes only when it finds one, so a burst wakes the writer once.
    waker: Option<Waker>,
    /// The busy writer's waker, for the end of its wait: woken only when the member turns
    /// slow or leaves, never by a push.
    interrupt: Option<Waker>,
}

/// A member's outbound queue.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
}

/// A batch smaller than this keeps its buffer between batches; a larger one gives it back,
/// so an idle member holds little.
const KEEP_CAPACITY: usize = 64;

impl Outbox {
    pub(crate) fn new() -> Self {
        Self {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                bytes: 0,
                in_flight_messages: 0,
                in_flight_bytes: 0,
                state: State::Open,
                waker: None,
                interrupt: None,
            }),
        }
    }

    /// Queues `message`, or applies `overflow` if it does not fit.
    pub(crate) fn push(
        &self,
        message: &Arc<PreparedMessage>,
        overflow: Overflow,
        bounds: Bounds,
    ) -> Pushed {
        let pushed = self.push_all(std::slice::from_ref(message), overflow, bounds);
        if pushed.queued > 0 {
            Pushed::Queued
        } else if pushed.dropped > 0 {
            Pushed::Dropped
        } else if pushed.disconnected {
            Pushed::Disconnected
        } else {
            Pushed::Gone
        }
    }

    /// Queues `messages` in order under one lock, applying `overflow` to each that does not
    /// fit (under [`Overflow::Disconnect`], the first that does not fit ends it).
    pub(crate) fn push_all(
        &self,
        messages: &[Arc<PreparedMessage>],
        overflow: Overflow,
        bounds: Bounds,
    ) -> PushedAll {
        let mut pushed = PushedAll::default();
        let mut queue = self.queue.lock();
        if queue.state != State::Open {
            return pushed;
        }
        for message in messages {
            let size = message.server_frame().len();
            let count = queue.items.len() + queue.in_flight_messages;
            if count < bounds.messages && queue.bytes + size <= bounds.bytes {
                queue.items.push_back(message.clone());
                queue.bytes += size;
                pushed.queued += 1;
                continue;
            }
            match overflow {
                Overflow::Drop => pushed.dropped += 1,
                Overflow::Disconnect => {
                    queue.state = State::Slow;
                    let freed = mem::take(&mut queue.items);
                    queue.bytes = queue.in_flight_bytes;
                    let wakers = (queue.waker.take(), queue.interrupt.take());
                    drop(queue);
                    drop(freed);
                    wake(wakers);
                    pushed.queued = 0;
                    pushed.disconnected = true;
                    return pushed;
                }
            }
        }
        let waker = if pushed.queued > 0 {
            queue.waker.take()
        } else {
            None
        };
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
        pushed
    }

    /// Moves every queued message into `batch` (which must be empty), or says why there are
    /// none. The batch counts against the bounds until [`written`](Self::written).
    pub(crate) fn poll_drain(
        &self,
        cx: &Context<'_>,
        batch: &mut VecDeque<Arc<PreparedMessage>>,
    ) -> Poll<Drained> {
        debug_assert!(batch.is_empty());
        let mut queue = self.queue.lock();
        match queue.state {
            State::Slow => return Poll::Ready(Drained::Slow),
            State::Closed if queue.items.is_empty() => return Poll::Ready(Drained::Closed),
            State::Open | State::Closed => {}
        }
        if queue.items.is_empty() {
            register(&mut queue.waker, cx);
            return Poll::Pending;
        }
        mem::swap(&mut queue.items, batch);
        queue.in_flight_messages = batch.len();
        queue.in_flight_bytes = queue.bytes;
        Poll::Ready(Drained::Batch)
    }

    /// Ready once the member is disconnected as slow or leaves the hub (while its writer is
    /// busy writing).
    pub(crate) fn poll_interrupt(&self, cx: &Context<'_>) -> Poll<Interrupt> {
        let mut queue = self.queue.lock();
        match queue.state {
            State::Slow => Poll::Ready(Interrupt::Slow),
            State::Closed => Poll::Ready(Interrupt::Closed),
            State::Open => {
                register(&mut queue.interrupt, cx);
                Poll::Pending
            }
        }
    }

    /// The batch taken by the last drain is on the wire: it no longer counts.
    pub(crate) fn written(&self, batch: &mut VecDeque<Arc<PreparedMessage>>) {
        {
            let mut queue = self.queue.lock();
            queue.bytes -= queue.in_flight_bytes;
            queue.in_flight_bytes = 0;
            queue.in_flight_messages = 0;
        }
        // Outside the lock: the last reference to a large message may be freed here.
        batch.clear();
        if batch.capacity() > KEEP_CAPACITY {
            *batch = VecDeque::new();
        }
    }

    /// The member left: its writer sends what is queued, then ends.
    pub(crate) fn close(&self) {
        let mut queue = self.queue.lock();
        if queue.state == State::Open {
            queue.state = State::Closed;
        }
        let wakers = (queue.waker.take(), queue.interrupt.take());
        drop(queue);
        wake(wakers);
    }

    /// Whether the member overflowed.
    pub(crate) fn is_slow(&self) -> bool {
        self.queue.lock().state == State::Slow
    }

    /// Bytes queued and being written.
    pub(crate) fn buffered_amount(&self) -> usize {
        self.queue.lock().bytes
    }
}

fn wake((idle, busy): (Option<Waker>, Option<Waker>)) {
    if let Some(waker) = idle {
        waker.wake();
    }
    if let Some(waker) = busy {
        waker.wake();
    }
}

/// Stores the task's waker unless the same one is there.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}
