//! The publications a node sends to the broker, waiting their turn: bounded in count and in
//! bytes, so that a broker that is away costs at most the bound; past it, publishing fails
//! with an error the publisher sees (and a counter), never silently.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::{RoomName, history::HistoryLimits};

/// A publication waiting for the broker: its room, its envelope, and the room's history
/// bounds if the broker is to number and keep it.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub(crate) room: RoomName,
    pub(crate) envelope: Bytes,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only Redis keeps history
    pub(crate) history: Option<HistoryLimits>,
}

/// How many publications (and how many bytes of them) wait for a broker that is slow or
/// away, before publishing fails with [`HubError::Broker`](crate::HubError::Broker).
///
/// # Examples
///
/// ```
/// use socketry_hub::PublishBuffer;
///
/// let small = PublishBuffer::new(100, 1 << 20);
/// assert_eq!((small.messages, small.bytes), (100, 1 << 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishBuffer {
    /// At most this many publications wait (10,000 by default).
    pub messages: usize,
    /// At most this many bytes of envelopes wait (16 MiB by default).
    pub bytes: usize,
}

impl PublishBuffer {
    /// At most `messages` publications and `bytes` bytes of them wait.
    pub fn new(messages: usize, bytes: usize) -> Self {
        Self { messages, bytes }
    }
}

impl Default for PublishBuffer {
    fn default() -> Self {
        Self {
            messages: 10_000,
            bytes: 16 * 1024 * 1024,
        }
    }
}

/// The buffer is full: the publication was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the broker is unavailable and {messages} publications ({bytes} bytes) already wait for it"
)]
pub(crate) struct Full {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Queued>,
    bytes: usize,
    closed: bool,
}

#[derive(Debug)]
pub(crate) struct Outbound {
    state: Mutex<State>,
    ready: Notify,
    bound: PublishBuffer,
}

impl Outbound {
    pub(crate) fn new(bound: PublishBuffer) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            bound,
        }
    }

    /// Queues every item, or none if they do not all fit.
    pub(crate) fn push_all(&self, items: Vec<Queued>) -> Result<(), Full> {
        let size: usize = items.iter().map(|q| q.envelope.len()).sum();
        let mut state = self.state.lock();
        if state.closed
            || state.items.len() + items.len() > self.bound.messages
            || state.bytes + size > self.bound.bytes
        {
            return Err(Full {
                messages: state.items.len(),
                bytes: state.bytes,
            });
        }
        state.items.extend(items);
        state.bytes += size;
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// Waits for queued items and moves up to `max` of them into `batch`, in order; `false`
    /// once the queue is closed.
    pub(crate) async fn take(&self, max: usize, batch: &mut Vec<Queued>) -> bool {
        loop {
            // `notify_one` keeps a permit when nobody waits, so a push between the check and
            // the wait is not missed.
            {
                let mut state = self.state.lock();
                if state.closed {
                    return false;
                }
                if !state.items.is_empty() {
                    let n = state.items.len().min(max);
                    let taken: Vec<_> = state.items.drain(..n).collect();
                    state.bytes -= taken.iter().map(|q| q.envelope.len()).sum::<usize>();
                    batch.extend(taken);
                    return true;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Ends the queue: what waits is dropped and counted by the caller.
    pub(crate) fn close(&self) -> usize {
        let mut state = self.state.lock();
        state.closed = true;
        let dropped = state.items.len();
        state.items.clear();
        state.bytes = 0;
        drop(state);
        self.ready.notify_one();
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(len: usize) -> Queued {
        Queued {
            room: RoomName::new("r").unwrap(),
            envelope: Bytes::from(vec![0; len]),
            history: None,
        }
    }

    #[tokio::test]
    async fn a_full_buffer_refuses_the_whole_batch_and_takes_again_once_drained() {
        let outbound = Outbound::new(PublishBuffer {
            messages: 3,
            bytes: 100,
        });
        outbound.push_all(vec![item(10), item(10)]).unwrap();
        let full = outbound.push_all(vec![item(10), item(10)]).unwrap_err();
        assert_eq!((full.messages, full.bytes), (2, 20));
        assert!(
            outbound.push_all(vec![item(81)]).is_err(),
            "bytes bound too"
        );
        let mut batch = Vec::new();
        assert!(outbound.take(1, &mut batch).await);
        assert_eq!(batch.len(), 1);
        outbound.push_all(vec![item(10), item(10)]).unwrap();
        assert!(outbound.take(10, &mut batch).await);
        assert_eq!(batch.len(), 4);
        assert_eq!(outbound.close(), 0);
        assert!(!outbound.take(10, &mut batch).await);
    }
}
