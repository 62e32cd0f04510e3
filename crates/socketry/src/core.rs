//! [`Core`]: the connection state the I/O layer keeps beside the protocol, and the poll
//! functions that move bytes between a transport and the protocol. `WebSocket` drives it
//! directly; the split halves drive it under a lock.
//!
//! Deadlines live in the protocol core ([`Connection::poll_timeout`]); each task that drives
//! them owns one [`Timer`] and re-arms it whenever the answer moves.

use std::{
    future::Future,
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, Waker, ready},
};

use socketry_proto::extensions::deflate::{Deflate, DeflateParams};
use socketry_proto::{CloseFrame, Connection, Incoming, Message, MessageRef, Role, State};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};

use crate::{Error, Timeout, WebSocketConfig, closer::CloseWatch, pool};

/// A transport: what every connection runs over.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin + ?Sized> Io for T {}

/// How many queued chunks one vectored write hands to the transport.
const MAX_IO_SLICES: usize = 64;
/// Reads never ask for more than this at once (unless the configured read size is larger).
const MAX_READ_SIZE: usize = 256 * 1024;

/// How received data messages are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Whole messages.
    Whole,
    /// Frame by frame.
    Fragments,
    /// Whole messages, a small one lent where it lies ([`Received::Lendable`]).
    Lend,
}

/// The time as the protocol core sees it: tokio's clock (paused in tests that pause it).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// The one sleep of a task that waits on a connection's deadlines; made on first use.
#[derive(Debug, Default)]
pub(crate) struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
    armed: Armed,
}

/// What a [`Timer`] is set for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Armed {
    /// Never synced with the deadlines: the first poll must look them up, even when no
    /// deadline moved since another task last did.
    #[default]
    Fresh,
    Off,
    At(std::time::Instant),
}

impl Timer {
    /// Whether nothing is armed and the deadlines were looked up before.
    #[inline]
    fn is_idle(&self) -> bool {
        self.armed == Armed::Off
    }

    /// Whether polling it now would find nothing to do: the deadlines were looked up before
    /// and none is armed, or the armed one has not fired yet (a keepalive's next ping, say).
    #[inline]
    fn is_quiet(&self) -> bool {
        match self.armed {
            Armed::Off => true,
            Armed::At(_) => self.sleep.as_ref().is_some_and(|sleep| !sleep.is_elapsed()),
            Armed::Fresh => false,
        }
    }

    /// Ready once `deadline` passed; otherwise wakes the task then. No deadline: pending,
    /// with no wakeup of its own.
    pub(crate) fn poll_until(
        &mut self,
        deadline: Option<std::time::Instant>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let Some(deadline) = deadline else {
            // Disarmed: the sleep may still wake the task once, which is harmless.
            self.armed = Armed::Off;
            return Poll::Pending;
        };
        let at = tokio::time::Instant::from_std(deadline);
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if self.armed != Armed::At(deadline) {
            sleep.as_mut().reset(at);
            self.armed = Armed::At(deadline);
        }
        sleep.as_mut().poll(cx)
    }
}

/// What the deadlines decided, on the reading side.
enum Deadlines {
    /// None passed; the timer wakes the task at the next.
    Waiting,
    /// The closing handshake timed out: close the transport now.
    CloseTimedOut,
    /// The read deadline or the keepalive passed.
    Failed(Timeout),
}

/// Steps of closing the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// Write what is queued (the close frame).
    Flush,
    /// A client waits for the server to end TCP first (RFC 6455 §7.1.1).
    AwaitEof,
    /// Shut the write side down.
    Shutdown,
}

/// What a receive hands out: an incoming message or fragment, or the peer's close frame that
/// the application answers itself (its close handler) before the transport is closed.
#[derive(Debug)]
pub(crate) enum Received {
    Incoming(Incoming),
    CloseToAnswer(Option<socketry_proto::CloseFrame>),
    /// ([`Mode::Lend`]) A small whole message is buffered, for
    /// [`Connection::with_small_message`] to lend.
    Lendable,
}

/// Everything but the transport.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) conn: Connection,
    pub(crate) config: WebSocketConfig,
    pub(crate) protocol: Option<String>,
    /// The peer's close or the error that ended the connection, handed out once the transport
    /// is closed (kept here so that a cancelled receive loses nothing).
    ending: Option<Result<Message, Error>>,
    /// The peer's close waits for the application's reply (a close handler is set).
    close_to_answer: bool,
    /// The transport reached end of file.
    read_eof: bool,
    /// Closing the transport, once started.
    closing: Option<Closing>,
    /// The transport is closed: receiving yields nothing more.
    done: bool,
    /// Bytes were written since the transport was last flushed.
    unflushed: bool,
    /// How much the next read asks for.
    read_size: usize,
    /// Split: give other tasks the lock between slices of inflation.
    pub(crate) yield_between_slices: bool,
    /// The transport closed with bytes still queued: they were dropped.
    pub(crate) lost_writes: bool,
    /// A lending receive's replies filled the queue: the next one waits for room first.
    pub(crate) owes_room: bool,
    /// Made by the first [`Closer`](crate::Closer); dropped once its request was acted on.
    close_watch: Option<Box<CloseWatch>>,
    /// After that: the request that was acted on, for later `closer()` calls (whose closers
    /// then report it, and whose requests change nothing: the first one won).
    spent_closer: Option<crate::Closer>,
}

impl Core {
    pub(crate) fn new(
        role: Role,
        config: WebSocketConfig,
        leftover: &[u8],
        protocol: Option<String>,
        deflate: Option<DeflateParams>,
    ) -> Self {
        let mut conn = Connection::new(role, *config.protocol());
        conn.set_queue_limit(config.get_write_buffer_size());
        if let (Some(params), Some(preferences)) = (deflate, config.get_compression()) {
            conn.set_deflate(Some(Deflate::new(role, params, preferences)));
        }
        conn.receive_data(leftover);
        conn.set_write_buffer_source(Some(pool::take));
        Self {
            conn,
            config,
            protocol,
            ending: None,
            close_to_answer: false,
            read_eof: false,
            closing: None,
            done: false,
            unflushed: false,
            read_size: config.get_read_buffer_size(),
            yield_between_slices: false,
            lost_writes: false,
            owes_room: false,
            close_watch: None,
            spent_closer: None,
        }
    }

    /// Whether the transport is closed.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The protocol state; `Closed` as soon as the transport ended or failed.
    pub(crate) fn state(&self) -> State {
        self.conn.state()
    }

    /// Changes the settings of a running connection (the close timeout, say).
    pub(crate) fn set_config(&mut self, config: WebSocketConfig) {
        self.conn.set_config(*config.protocol());
        self.conn.set_queue_limit(config.get_write_buffer_size());
        self.config = config;
    }

    /// Queues a message, taking a pooled write buffer if the queue has none.
    pub(crate) fn queue(&mut self, message: Message) -> Result<(), Error> {
        match message {
            // A close sent as a message is a close the owner starts: a pending request's
            // frame goes out instead, as with `start_close`.
            Message::Close(frame) if self.close_watch.is_some() => self.start_close(frame),
            message => self.queue_now(message),
        }
    }

    fn queue_now(&mut self, message: Message) -> Result<(), Error> {
        pool::lend(self.conn.outgoing_mut());
        self.conn.send(message)?;
        Ok(())
    }

    /// Runs `f` on the protocol to queue frames, with a pooled write buffer.
    pub(crate) fn queue_with(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<(), socketry_proto::Error>,
    ) -> Result<(), Error> {
        pool::lend(self.conn.outgoing_mut());
        f(&mut self.conn)?;
        Ok(())
    }

    /// Starts the closing handshake: queue our close frame (which starts the close timeout).
    pub(crate) fn start_close(
        &mut self,
        frame: Option<socketry_proto::CloseFrame>,
    ) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        if frame.as_ref().is_some_and(|f| !f.code.is_valid()) {
            // Refused whatever else is pending, as the caller's docs promise.
            return Err(Error::InvalidMessage("close code may not be sent"));
        }
        // A request not acted on yet came first: its frame is the one to send.
        let requested = self.take_close_request(None);
        self.queue_now(Message::Close(requested.or(frame)))
    }

    /// Whether a [`Closer`](crate::Closer) waits to be acted on.
    pub(crate) fn has_close_watch(&self) -> bool {
        self.close_watch.is_some()
    }

    /// Whether a [`Closer`](crate::Closer)'s request waits to be acted on (a closer without
    /// a request needs nothing from a poll).
    #[inline]
    pub(crate) fn has_close_request(&self) -> bool {
        self.close_watch
            .as_ref()
            .is_some_and(|watch| watch.is_requested())
    }

    /// A [`Closer`](crate::Closer) for this connection.
    pub(crate) fn closer(&mut self) -> crate::Closer {
        if let Some(spent) = &self.spent_closer {
            return spent.clone();
        }
        self.close_watch.get_or_insert_default().closer()
    }

    /// Registers `waker` as the task a [`Closer`](crate::Closer)'s request wakes, without
    /// acting on one; whether one is pending (see [`CloseWatch::register_only`]).
    pub(crate) fn register_close_waker(&mut self, waker: &Waker) -> bool {
        self.close_watch
            .as_mut()
            .is_some_and(|watch| watch.register_only(waker))
    }

    /// Starts the close a [`Closer`](crate::Closer) requested, if one did; registers `cx`'s
    /// task (the one to wake for a request) first. Every poll calls it: without closers, it
    /// costs one branch.
    #[inline]
    pub(crate) fn poll_close_request(&mut self, cx: Option<&Context<'_>>) {
        if self.close_watch.is_some() {
            self.act_on_close_request(cx);
        }
    }

    /// The frame of a request not acted on yet (the watch is done with then), registering
    /// `cx`'s task first.
    fn take_close_request(&mut self, cx: Option<&Context<'_>>) -> Option<CloseFrame> {
        let frame = self.close_watch.as_mut()?.take_request(cx)?;
        self.spent_closer = self.close_watch.take().map(|watch| watch.closer());
        Some(frame)
    }

    #[inline(never)]
    fn act_on_close_request(&mut self, cx: Option<&Context<'_>>) {
        let Some(frame) = self.take_close_request(cx) else {
            return;
        };
        // The owner may have started (or finished) a close of its own: that one stands. The
        // code was checked by `Closer::close`, so this cannot fail.
        if self.state() == State::Open {
            let _ = self.start_close(Some(frame));
        }
    }

    /// Sends the application's reply to the peer's close (from its close handler).
    pub(crate) fn answer_close(&mut self, reply: Option<&socketry_proto::CloseFrame>) {
        pool::lend(self.conn.outgoing_mut());
        self.conn.reply_to_close(reply);
    }

    /// Polls the reading side's deadlines: acts on those that passed and arms `timer` for the
    /// next.
    #[inline]
    fn poll_deadlines(&mut self, timer: &mut Timer, cx: &mut Context<'_>) -> Deadlines {
        // The common case, no deadline armed and none moved, costs a few loads.
        if timer.is_idle() && !self.conn.timeout_changed() {
            return Deadlines::Waiting;
        }
        self.poll_armed_deadlines(timer, cx)
    }

    fn poll_armed_deadlines(&mut self, timer: &mut Timer, cx: &mut Context<'_>) -> Deadlines {
        // A few rounds at most: each passed deadline is acted on and cleared or moved.
        for _ in 0..4 {
            let deadline = self.conn.poll_timeout(now);
            if timer.poll_until(deadline, cx).is_pending() {
                return Deadlines::Waiting;
            }
            pool::lend(self.conn.outgoing_mut());
            let expired = self.conn.handle_timeout(now());
            if expired.keepalive {
                return Deadlines::Failed(Timeout::Keepalive);
            }
            if expired.close {
                return Deadlines::CloseTimedOut;
            }
            if expired.read {
                return Deadlines::Failed(Timeout::Read);
            }
        }
        cx.waker().wake_by_ref();
        Deadlines::Waiting
    }

    /// A small whole message already buffered, when nothing else needs attention (no deadline
    /// passed or moved, no close under way): what [`poll_recv`](Self::poll_recv)'s loop would
    /// hand out first, without the loop.
    #[inline(always)]
    pub(crate) fn buffered_small_message(&mut self, timer: &Timer) -> Option<Message> {
        if self.may_skip_poll(timer) {
            self.conn.next_small_message()
        } else {
            None
        }
    }

    /// Whether a message already buffered may be handed out without a poll: nothing else
    /// needs attention (no deadline passed or moved, no close under way).
    #[inline(always)]
    pub(crate) fn may_skip_poll(&self, timer: &Timer) -> bool {
        self.conn.has_input()
            && self.ending.is_none()
            && self.closing.is_none()
            && !self.done
            && timer.is_quiet()
            && !self.conn.timeout_changed()
    }

    /// Lends `f` the small message at the head of the read buffer with the replies to it
    /// ([`Connection::with_small_message`]); `f` back if there is none. The first reply takes
    /// a pooled write buffer (the protocol's write buffer source), so a message answered with
    /// nothing, or an `f` that unwinds before it replies, leaves none lent.
    #[inline]
    pub(crate) fn lend<R, F>(&mut self, f: F) -> Result<R, F>
    where
        F: FnOnce(MessageRef<'_>, &mut crate::Replies<'_>) -> R,
    {
        let queued = self.conn.outgoing().len();
        // `f` stays here until the message is lent, so that a refusal hands it back.
        let mut f = Some(f);
        let lent = self.conn.with_small_message(|message, replies| {
            let f = f.take().expect("lent once");
            f(message, &mut crate::Replies::queue(replies.reborrow()))
        });
        match lent {
            Ok(result) => {
                self.note_replies(queued);
                Ok(result)
            }
            Err(_) => Err(f.take().expect("a refused lend does not call f")),
        }
    }

    /// After a lent message's replies (the queue held `queued` bytes before them): replies
    /// that filled the queue owe a wait for room, which the next lending receive makes first,
    /// as the next [`feed`](crate::WebSocket::feed) would.
    #[inline]
    fn note_replies(&mut self, queued: usize) {
        let len = self.conn.outgoing().len();
        if len > queued && len >= self.config.get_write_buffer_size() {
            self.owes_room = true;
        }
    }

    /// [`lend`](Self::lend) for a message that was not lent but handed out owned.
    pub(crate) fn lend_owned<R>(
        &mut self,
        message: &Message,
        f: impl FnOnce(MessageRef<'_>, &mut crate::Replies<'_>) -> R,
    ) -> R {
        let queued = self.conn.outgoing().len();
        let replies = self.conn.replies_to(message);
        let result = f(
            MessageRef::from(message),
            &mut crate::Replies::queue(replies),
        );
        self.note_replies(queued);
        result
    }

    /// Receives the next message or fragment; once the connection ended, closes the transport
    /// and hands out the peer's close or the error, then `None`. A read timeout is handed out
    /// as an error and leaves the connection as it was.
    pub(crate) fn poll_recv(
        &mut self,
        io: &mut dyn Io,
        timer: &mut Timer,
        cx: &mut Context<'_>,
        mode: Mode,
    ) -> Poll<Option<Result<Received, Error>>> {
        // The second and later of a pipelined batch, without the loop.
        if mode == Mode::Whole
            && let Some(message) = self.buffered_small_message(timer)
        {
            return Poll::Ready(Some(Ok(Received::Incoming(Incoming::Control(message)))));
        }
        while !self.done {
            if self.ending.is_none() && self.closing.is_none() {
                match ready!(self.poll_next(io, timer, cx, mode)) {
                    Ok(Some(received)) => return Poll::Ready(Some(Ok(received))),
                    Ok(None) => {}
                    Err(err @ Error::Timeout(Timeout::Read)) => return Poll::Ready(Some(Err(err))),
                    Err(err) => self.ending = Some(Err(err)),
                }
            }
            if std::mem::take(&mut self.close_to_answer)
                && let Some(Ok(Message::Close(frame))) = &self.ending
            {
                return Poll::Ready(Some(Ok(Received::CloseToAnswer(frame.clone()))));
            }
            if let Err(err) = ready!(self.poll_close_transport(io, timer, cx)) {
                return Poll::Ready(Some(Err(err)));
            }
        }
        Poll::Ready(
            self.ending
                .take()
                .map(|ending| ending.map(|m| Received::Incoming(Incoming::Control(m)))),
        )
    }

    /// Reads and decodes until something is complete, writing queued replies meanwhile.
    /// `Ok(None)` means the connection ended without anything to hand out but `ending`.
    fn poll_next(
        &mut self,
        io: &mut dyn Io,
        timer: &mut Timer,
        cx: &mut Context<'_>,
        mode: Mode,
    ) -> Poll<Result<Option<Received>, Error>> {
        loop {
            match self.poll_deadlines(timer, cx) {
                Deadlines::Waiting => {}
                // The peer never answered our close frame: no more waiting on it.
                Deadlines::CloseTimedOut => {
                    self.abandon(io, cx);
                    return Poll::Ready(Ok(None));
                }
                Deadlines::Failed(timeout) => return Poll::Ready(Err(Error::Timeout(timeout))),
            }
            // (Nothing buffered, the usual state before a read: no need to ask.)
            let next = match mode {
                _ if !self.conn.has_input() => Ok(None),
                Mode::Lend if self.conn.has_small_message() => {
                    return Poll::Ready(Ok(Some(Received::Lendable)));
                }
                Mode::Whole | Mode::Lend => {
                    self.conn.next_message().map(|m| m.map(Incoming::Control))
                }
                Mode::Fragments => self.conn.next_fragment(),
            };
            match next {
                Ok(Some(Incoming::Control(message @ Message::Close(_)))) => {
                    self.close_to_answer = self.conn.close_reply_owed();
                    self.ending = Some(Ok(message));
                    return Poll::Ready(Ok(None));
                }
                Ok(Some(incoming)) => return Poll::Ready(Ok(Some(Received::Incoming(incoming)))),
                Ok(None) if self.conn.state() == State::Closed => return Poll::Ready(Ok(None)),
                // A large compressed frame inflates a slice per call. Split, the lock is
                // released between slices (yield), so the writer is never held up for long.
                Ok(None) if self.conn.has_pending_work() => {
                    if self.yield_between_slices {
                        // A real yield (to the back of the scheduler's queue): re-polled at
                        // once, this task would take the lock again before a writer blocked
                        // on it even woke.
                        let mut yielded = std::pin::pin!(tokio::task::yield_now());
                        if yielded.as_mut().poll(cx).is_ready() {
                            cx.waker().wake_by_ref();
                        }
                        return Poll::Pending;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(err) => return Poll::Ready(Err(err.into())),
            }
            // Nothing complete is buffered: before waiting for the peer, write what is queued
            // (replies to pings, the close reply, keepalive pings, messages the application
            // fed). Writing here rather than before each message hands out every message a
            // read brought first, so that the replies to them leave in one write. A transport
            // that is not writable does not hold up reading: reading goes on whatever is
            // queued (two peers that both send while both read would deadlock otherwise), and
            // pongs coalesce above the write buffer size, so a ping flood cannot grow the queue.
            if let Poll::Ready(Err(err)) = self.poll_write_queued(io, cx) {
                return Poll::Ready(Err(err.into()));
            }
            if self.read_eof {
                self.conn.receive_eof();
                return Poll::Ready(Err(Error::AbnormalClosure));
            }
            match self.poll_read(io, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(err)) => {
                    self.conn.receive_eof();
                    return Poll::Ready(Err(err.into()));
                }
                // Reading and writing cannot move a deadline of ours; another task can (a
                // close queued by the writer): then arm the timer for it before sleeping.
                Poll::Pending if self.conn.timeout_changed() => {}
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_read(&mut self, io: &mut dyn Io, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let max = MAX_READ_SIZE.max(self.config.get_read_buffer_size());
        let remainder = self.conn.bytes_wanted();
        let (len, capacity) = self.conn.read_buffer_len();
        if capacity == 0 {
            self.conn.set_read_buffer(pool::take());
        }
        let (_, capacity) = self.conn.read_buffer_len();
        // Inside a frame, room grows with what has arrived of it (at most doubling), never
        // with what its header announces: a peer that announces a large frame and stalls
        // holds about twice what it sent. At a frame boundary, the adaptive read size.
        let want = if remainder > 0 {
            remainder
                .min(len.max(self.config.get_read_buffer_size()))
                .min(max)
        } else {
            self.read_size
        };
        if capacity - len < want / 2 {
            self.conn.reserve_read(want);
        }
        let (len, capacity) = self.conn.read_buffer_len();
        let room = capacity - len;
        let read = self
            .conn
            .read_into(|mut buf| tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, &mut buf));
        let n = match read {
            Poll::Ready(result) => result?,
            Poll::Pending => {
                // Idle: hold no read buffer while waiting (a large one is freed, a small one
                // pooled for the next connection that has bytes to read); stalled inside a
                // frame, about what arrived of it.
                if let Some(buf) = self.conn.take_read_buffer() {
                    pool::give(buf);
                } else {
                    self.conn
                        .compact_read_buffer(self.config.get_read_buffer_size());
                }
                return Poll::Pending;
            }
        };
        if n == 0 {
            self.read_eof = true;
        } else if n == room {
            self.read_size = (self.read_size * 2).min(max);
        } else if n < self.read_size / 4 && (remainder == 0 || n != remainder) {
            // A short read says the peer sends little at once, unless it was exactly the tail
            // of a frame: shrinking on that would split the next large message over two reads
            // again (16 KiB echoes took 1.5 reads each).
            self.read_size = (self.read_size / 2).max(self.config.get_read_buffer_size());
        }
        Poll::Ready(Ok(()))
    }

    /// Writes what is queued, then ends the transport, bounded by the close timeout. A read
    /// deadline that passes meanwhile is handed out; the next poll goes on closing.
    fn poll_close_transport(
        &mut self,
        io: &mut dyn Io,
        timer: &mut Timer,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        while !self.done {
            let step = *self.closing.get_or_insert(Closing::Flush);
            let progress = match step {
                Closing::Flush => self.poll_write_queued(io, cx).map_ok(|()| {
                    if self.conn.role() == Role::Client && !self.read_eof {
                        Closing::AwaitEof
                    } else {
                        Closing::Shutdown
                    }
                }),
                Closing::AwaitEof => {
                    let mut scratch = [0u8; 256];
                    let mut buf = ReadBuf::new(&mut scratch);
                    let read = Pin::new(&mut *io).poll_read(cx, &mut buf);
                    let eof = buf.filled().is_empty();
                    read.map_ok(|()| {
                        self.read_eof = eof;
                        if eof {
                            Closing::Shutdown
                        } else {
                            Closing::AwaitEof
                        }
                    })
                }
                Closing::Shutdown => Pin::new(&mut *io).poll_shutdown(cx).map_ok(|()| {
                    self.done = true;
                    Closing::Shutdown
                }),
            };
            match progress {
                Poll::Ready(Ok(next)) => self.closing = Some(next),
                // A failed transport is as closed as it gets.
                Poll::Ready(Err(_)) => self.done = true,
                Poll::Pending => match self.poll_deadlines(timer, cx) {
                    Deadlines::Waiting => return Poll::Pending,
                    Deadlines::CloseTimedOut => self.abandon(io, cx),
                    Deadlines::Failed(timeout) => return Poll::Ready(Err(Error::Timeout(timeout))),
                },
            }
        }
        self.finish();
        Poll::Ready(Ok(()))
    }

    /// The transport is closed: drop what was received and what is still queued.
    fn finish(&mut self) {
        self.done = true;
        self.conn.receive_eof();
        self.conn.discard_received();
        if !self.conn.outgoing().is_empty() {
            self.lost_writes = true;
            self.conn.outgoing_mut().discard();
        }
        pool::reclaim(self.conn.outgoing_mut());
    }

    /// What a write that waited learns once the transport is closed: whether its bytes went.
    pub(crate) fn closed_write_result(&self) -> Option<Result<(), Error>> {
        self.done.then(|| {
            if self.lost_writes {
                Err(Error::AlreadyClosed)
            } else {
                Ok(())
            }
        })
    }

    /// Ends the transport without waiting for the peer any longer (the close timed out, or a
    /// close that nobody drives ran out of time): one try to write what is queued and to shut
    /// the write side down, and the connection is over, whatever the transport answers. (A
    /// TLS shutdown that cannot be written at once sends its FIN when the socket is dropped.)
    pub(crate) fn abandon(&mut self, io: &mut dyn Io, cx: &mut Context<'_>) {
        if self.done {
            return;
        }
        let _ = self.poll_write_queued(io, cx);
        let _ = Pin::new(&mut *io).poll_shutdown(cx);
        self.finish();
    }

    /// When a write gives up on the closing handshake: its timeout bounds a writer too, once
    /// the close started (a peer that stopped reading would hold it for ever otherwise).
    pub(crate) fn close_deadline(&mut self) -> Option<std::time::Instant> {
        if self.conn.state() == State::Open {
            return None;
        }
        self.conn.close_deadline_from(now)
    }

    /// Whether a message may be queued without waiting: the connection is not over and the
    /// queue is below the write buffer size (what [`poll_room`](Self::poll_room) waits for).
    #[inline]
    pub(crate) fn has_room(&self) -> bool {
        !self.done
            && self.conn.state() == State::Open
            && self.conn.outgoing().len() < self.config.get_write_buffer_size()
    }

    /// Waits until the queue is below the write buffer bound.
    pub(crate) fn poll_room(
        &mut self,
        io: &mut dyn Io,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        if self.conn.state() != State::Open {
            // No message may follow the close frame. One try to write what is queued (the
            // close frame, which the poll that found a `Closer`'s request may just have
            // queued), so that a caller that gives up on the refusal usually leaves nothing
            // unwritten; not a wait: a peer that does not read must not hold the caller, and
            // a failed transport must not answer every later call with its error.
            let _ = self.poll_write_queued(io, cx);
            return Poll::Ready(Err(Error::AlreadyClosed));
        }
        if self.conn.outgoing().len() >= self.config.get_write_buffer_size() {
            ready!(self.poll_write_queued(io, cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// The wait for room that replies which filled the queue owe (see `owes_room`): as
    /// [`poll_room`](Self::poll_room), while the connection's own deadlines run (keepalive,
    /// the close timeout) and bounded by the write deadline when one is set. `Ok` once there
    /// is room or a close started (no reply may follow it) or timed out (the receive then
    /// hands out the end).
    pub(crate) fn poll_replies_room(
        &mut self,
        io: &mut dyn Io,
        timer: &mut Timer,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        // A few rounds at most: each passed deadline is acted on and cleared or moved.
        for _ in 0..4 {
            match self.poll_room(io, cx) {
                Poll::Ready(Err(Error::AlreadyClosed)) => return Poll::Ready(Ok(())),
                Poll::Ready(result) => return Poll::Ready(result),
                Poll::Pending => {}
            }
            let write_at = self.conn.write_deadline();
            let at = self
                .conn
                .poll_timeout(now)
                .into_iter()
                .chain(write_at)
                .min();
            if timer.poll_until(at, cx).is_pending() {
                return Poll::Pending;
            }
            if write_at.is_some_and(|at| at <= now()) {
                return Poll::Ready(Err(Error::Timeout(Timeout::Write)));
            }
            pool::lend(self.conn.outgoing_mut());
            let expired = self.conn.handle_timeout(now());
            if expired.keepalive {
                return Poll::Ready(Err(Error::Timeout(Timeout::Keepalive)));
            }
            if expired.close {
                self.abandon(io, cx);
                return Poll::Ready(Ok(()));
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Writes every queued byte and flushes the transport. A transport that failed ends the
    /// connection ([`State::Closed`]): later sends fail with [`Error::AlreadyClosed`].
    #[inline]
    pub(crate) fn poll_write_queued(
        &mut self,
        io: &mut dyn Io,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        // Nothing to write, as before most reads: no call.
        if self.done || (self.conn.outgoing().is_empty() && !self.unflushed) {
            return Poll::Ready(Ok(()));
        }
        self.poll_write_some(io, cx)
    }

    fn poll_write_some(&mut self, io: &mut dyn Io, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = ready!(self.poll_write_all(io, cx));
        if result.is_err() {
            self.conn.receive_eof();
        }
        Poll::Ready(result)
    }

    fn poll_write_all(&mut self, io: &mut dyn Io, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.conn.outgoing().is_empty() {
            let out = self.conn.outgoing();
            // One run (the usual case: small frames are copied together) needs no slice array.
            let n = if !out.is_contiguous() && io.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); MAX_IO_SLICES];
                let count = out.chunks_vectored(&mut slices);
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]))?
            } else {
                ready!(Pin::new(&mut *io).poll_write(cx, out.chunk()))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.conn.outgoing_mut().advance(n);
            self.unflushed = true;
        }
        pool::reclaim(self.conn.outgoing_mut());
        if self.unflushed {
            ready!(Pin::new(&mut *io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}
