//! The connection's deadlines: the closing handshake's timeout, keepalive pings and their
//! pongs, and the read and write deadlines the I/O layer sets for one operation.
//!
//! The core keeps them as instants and never reads a clock (quinn-proto's
//! `poll_timeout`/`handle_timeout`): a deadline that starts "now" is recorded as due and
//! turned into an instant by the next [`Connection::poll_timeout`](crate::Connection::poll_timeout),
//! which the I/O layer calls with its clock. The I/O layer sleeps until the answer and calls
//! [`Connection::handle_timeout`](crate::Connection::handle_timeout) when it passes.

use std::time::{Duration, Instant};

/// One deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    Off,
    /// Starts at the next `poll_timeout`, from its clock.
    Due,
    At(Instant),
}

impl Deadline {
    /// Turns a due deadline into an instant `after` from now.
    fn resolve(&mut self, now: &mut dyn FnMut() -> Instant, after: Duration) -> Option<Instant> {
        match *self {
            Self::Off => None,
            Self::Due => {
                let at = now().checked_add(after);
                *self = at.map_or(Self::Off, Self::At);
                at
            }
            Self::At(at) => Some(at),
        }
    }

    fn passed(self, now: Instant) -> bool {
        matches!(self, Self::At(at) if now >= at)
    }
}

/// The deadlines of one connection.
#[derive(Debug)]
pub(crate) struct Timers {
    /// The closing handshake gives up: from our close frame, the peer's, or a failure.
    pub(crate) close: Deadline,
    /// Keepalive: the next ping.
    pub(crate) ping: Deadline,
    /// Keepalive: the pong to the oldest unanswered ping is due by then.
    pub(crate) pong: Option<Instant>,
    /// The I/O layer's read deadline.
    pub(crate) read: Option<Instant>,
    /// The I/O layer's write deadline (read back by the writer only).
    pub(crate) write: Option<Instant>,
    /// A deadline of the reading side moved since the last `poll_timeout`: every change
    /// sets it.
    pub(crate) changed: bool,
    /// The answer of the last `next`, good until something changes.
    next: Option<Instant>,
}

impl Timers {
    pub(crate) fn new(keepalive: bool) -> Self {
        Self {
            close: Deadline::Off,
            ping: if keepalive {
                Deadline::Due
            } else {
                Deadline::Off
            },
            pong: None,
            read: None,
            write: None,
            changed: keepalive,
            next: None,
        }
    }

    /// Starts the close timeout, unless it runs already.
    pub(crate) fn start_close(&mut self) {
        if self.close == Deadline::Off {
            self.close = Deadline::Due;
            self.changed = true;
        }
    }

    /// The close timeout's instant, starting it from `now` if it is due. `changed` stays as
    /// it is: the task that sleeps on [`next`](Self::next) must still see the move.
    pub(crate) fn close_at(
        &mut self,
        mut now: impl FnMut() -> Instant,
        close_timeout: Duration,
    ) -> Option<Instant> {
        self.close.resolve(&mut now, close_timeout)
    }

    /// The next deadline of the reading side, starting due ones from `now`.
    #[inline]
    pub(crate) fn next(
        &mut self,
        mut now: impl FnMut() -> Instant,
        close_timeout: Duration,
        ping_interval: Option<Duration>,
    ) -> Option<Instant> {
        if !self.changed {
            // The hot path: nothing moved since the last answer.
            return self.next;
        }
        self.changed = false;
        let close = self.close.resolve(&mut now, close_timeout);
        let ping = match ping_interval {
            Some(interval) => self.ping.resolve(&mut now, interval),
            None => None,
        };
        self.next = [close, ping, self.pong, self.read]
            .into_iter()
            .flatten()
            .min();
        self.next
    }

    pub(crate) fn close_passed(&self, now: Instant) -> bool {
        self.close.passed(now)
    }

    pub(crate) fn ping_passed(&self, now: Instant) -> bool {
        self.ping.passed(now)
    }

    pub(crate) fn pong_passed(&self, now: Instant) -> bool {
        self.pong.is_some_and(|at| now >= at)
    }

    pub(crate) fn read_passed(&self, now: Instant) -> bool {
        self.read.is_some_and(|at| now >= at)
    }
}

/// The deadlines that passed, from [`Connection::handle_timeout`](crate::Connection::handle_timeout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Expired {
    /// The closing handshake timed out: the connection is [`Closed`](crate::State::Closed);
    /// close the transport without waiting for the peer any longer.
    pub close: bool,
    /// No pong came within the keepalive timeout: the connection failed with 1011 "keepalive
    /// timeout" (the close frame is queued).
    pub keepalive: bool,
    /// The read deadline passed (and was cleared); the connection is unaffected.
    pub read: bool,
}

impl Expired {
    /// Whether any deadline passed.
    pub fn any(&self) -> bool {
        self.close || self.keepalive || self.read
    }
}
