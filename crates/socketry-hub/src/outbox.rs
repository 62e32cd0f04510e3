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

    /// How many messages wait (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.lock().items.len()
    }

    /// Queues all of `messages` if they fit under `bounds` with what is queued, else none:
    /// the count queued, or `None` (the member is left as it was).
    pub(crate) fn push_all_or_none(
        &self,
        messages: &[Arc<PreparedMessage>],
        bounds: Bounds,
    ) -> Option<usize> {
        let size: usize = messages.iter().map(|m| m.server_frame().len()).sum();
        let mut queue = self.queue.lock();
        if queue.state != State::Open {
            return Some(0);
        }
        let count = queue.items.len() + queue.in_flight_messages;
        if count + messages.len() > bounds.messages || queue.bytes + size > bounds.bytes {
            return None;
        }
        queue.items.extend(messages.iter().cloned());
        queue.bytes += size;
        let waker = queue.waker.take();
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
        Some(messages.len())
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
    /// none. The batch counts against the bounds until the next drain or
    /// [`written`](Self::written): a drain retires the batch before it, which the writer has
    /// written (one lock per write, not two).
    pub(crate) fn poll_drain(
        &self,
        cx: &Context<'_>,
        batch: &mut VecDeque<Arc<PreparedMessage>>,
    ) -> Poll<Drained> {
        debug_assert!(batch.is_empty());
        let mut queue = self.queue.lock();
        retire(&mut queue);
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
        retire(&mut self.queue.lock());
        release(batch);
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

    /// Frees what is queued (its writer ended: nobody will write it).
    pub(crate) fn clear(&self) {
        let freed = {
            let mut queue = self.queue.lock();
            queue.bytes = queue.in_flight_bytes;
            mem::take(&mut queue.items)
        };
        drop(freed);
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

/// Empties a written batch, outside the queue's lock: the last reference to a large message
/// may be freed here.
pub(crate) fn release(batch: &mut VecDeque<Arc<PreparedMessage>>) {
    batch.clear();
    if batch.capacity() > KEEP_CAPACITY {
        *batch = VecDeque::new();
    }
}

/// The batch in flight is written: it no longer counts against the bounds.
fn retire(queue: &mut Queue) {
    queue.bytes -= queue.in_flight_bytes;
    queue.in_flight_bytes = 0;
    queue.in_flight_messages = 0;
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

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        task::Wake,
    };

    use socketry::Message;

    use super::*;

    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn message(len: usize) -> Arc<PreparedMessage> {
        Arc::new(PreparedMessage::new(Message::binary(vec![0u8; len])))
    }

    const BOUNDS: Bounds = Bounds {
        bytes: 1000,
        messages: 4,
    };

    #[test]
    fn a_batch_that_overflows_midway_frees_the_queue_and_ends_the_busy_wait() {
        let outbox = Outbox::new();
        let busy = Arc::new(Counting::default());
        // The writer took one batch (in flight) and waits for its write.
        let first = message(100);
        assert_eq!(
            outbox.push(&first, Overflow::Disconnect, BOUNDS),
            Pushed::Queued
        );
        let mut batch = VecDeque::new();
        let busy_waker = Waker::from(busy.clone());
        let cx = Context::from_waker(&busy_waker);
        assert_eq!(
            outbox.poll_drain(&cx, &mut batch),
            Poll::Ready(Drained::Batch)
        );
        assert!(outbox.poll_interrupt(&cx).is_pending());
        // Three more fit (four messages with the one in flight); the fourth overflows.
        let messages: Vec<_> = (0..5).map(|_| message(100)).collect();
        let pushed = outbox.push_all(&messages, Overflow::Disconnect, BOUNDS);
        assert!(pushed.disconnected);
        assert_eq!(
            pushed.queued, 0,
            "what the batch queued went with the queue"
        );
        assert_eq!(
            outbox.buffered_amount(),
            first.server_frame().len(),
            "only the batch in flight"
        );
        assert_eq!(busy.0.load(Ordering::SeqCst), 1);
        assert!(outbox.is_slow());
        // Later pushes find it gone; the writer's next look says slow, and retires the batch.
        assert_eq!(
            outbox.push(&first, Overflow::Disconnect, BOUNDS),
            Pushed::Gone
        );
        release(&mut batch);
        assert_eq!(
            outbox.poll_drain(&cx, &mut batch),
            Poll::Ready(Drained::Slow)
        );
        assert_eq!(outbox.buffered_amount(), 0);
    }

    #[test]
    fn an_overflow_wakes_an_idle_writer_and_the_next_drain_retires_the_written_batch() {
        let outbox = Outbox::new();
        let idle = Arc::new(Counting::default());
        let idle_waker = Waker::from(idle.clone());
        let cx = Context::from_waker(&idle_waker);
        let first = message(100);
        outbox.push(&first, Overflow::Disconnect, BOUNDS);
        let mut batch = VecDeque::new();
        assert_eq!(
            outbox.poll_drain(&cx, &mut batch),
            Poll::Ready(Drained::Batch)
        );
        // Written: the next drain retires it and parks the writer.
        release(&mut batch);
        assert!(outbox.poll_drain(&cx, &mut batch).is_pending());
        assert_eq!(outbox.buffered_amount(), 0);
        let messages: Vec<_> = (0..5).map(|_| message(100)).collect();
        assert!(
            outbox
                .push_all(&messages, Overflow::Disconnect, BOUNDS)
                .disconnected,
            "four fit, the fifth overflows"
        );
        assert_eq!(idle.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            outbox.poll_drain(&cx, &mut batch),
            Poll::Ready(Drained::Slow)
        );
    }

    #[test]
    fn the_drop_policy_skips_what_does_not_fit_and_keeps_what_does_in_order() {
        let outbox = Outbox::new();
        let big = message(600);
        let small = message(100);
        let batch = [big.clone(), big, small.clone(), small];
        let pushed = outbox.push_all(&batch, Overflow::Drop, BOUNDS);
        // 600 fits, the second 600 would make 1200 > 1000, the two small ones fit.
        assert_eq!(
            (pushed.queued, pushed.dropped, pushed.disconnected),
            (3, 1, false)
        );
        let mut drained = VecDeque::new();
        let waker = Waker::from(Arc::new(Counting::default()));
        let _ = outbox.poll_drain(&Context::from_waker(&waker), &mut drained);
        let sizes: Vec<_> = drained.iter().map(|m| m.message().len()).collect();
        assert_eq!(sizes, [600, 100, 100]);
    }

    #[test]
    fn a_push_wakes_an_idle_writer_once_per_burst_and_never_a_busy_one() {
        let outbox = Outbox::new();
        let idle = Arc::new(Counting::default());
        let busy = Arc::new(Counting::default());
        let idle_waker = Waker::from(idle.clone());
        let mut batch = VecDeque::new();
        assert!(
            outbox
                .poll_drain(&Context::from_waker(&idle_waker), &mut batch)
                .is_pending()
        );
        for _ in 0..3 {
            outbox.push(&message(10), Overflow::Disconnect, BOUNDS);
        }
        assert_eq!(idle.0.load(Ordering::SeqCst), 1, "one wake for the burst");
        let _ = outbox.poll_drain(&Context::from_waker(&idle_waker), &mut batch);
        // Busy writing: only the interrupt waker is registered; pushes do not wake it.
        let busy_waker = Waker::from(busy.clone());
        assert!(
            outbox
                .poll_interrupt(&Context::from_waker(&busy_waker))
                .is_pending()
        );
        outbox.push(&message(10), Overflow::Disconnect, BOUNDS);
        assert_eq!(busy.0.load(Ordering::SeqCst), 0);
        outbox.close();
        assert_eq!(
            busy.0.load(Ordering::SeqCst),
            1,
            "leaving ends the busy wait"
        );
    }
}
