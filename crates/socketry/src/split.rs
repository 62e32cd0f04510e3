//! [`WebSocketReader`], [`WebSocketWriter`] and [`ControlHandle`]: one connection used from
//! several tasks.
//!
//! The halves share the connection behind a mutex that is held only for one poll, never
//! across an `.await`, and never while user code runs (the handlers run in the reader's task
//! after the lock is released). Reading belongs to the reader alone; writing is shared (the
//! writer's messages, the reader's pongs and close replies, the handles' control frames), so
//! the transport's write readiness wakes every task waiting to write, not only the last one
//! that polled it.
//!
//! The reader's task sleeps on the connection's deadlines (close timeout, keepalive, read
//! deadline). Whoever moves one (the writer or a handle starting the close) wakes it, so that
//! it re-arms its timer: a close started anywhere ends within the close timeout.

use std::{
    fmt,
    future::poll_fn,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
    time::Duration,
};

use bytes::Bytes;
use socketry_proto::{CloseCode, CloseFrame, Message, OpCode, PreparedMessage, State};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{
    Error, WebSocket,
    core::{Core, Io, Mode, Received, Timer},
    endpoint::{self, Endpoint},
    handlers::{CloseHandler, Handlers, PingHandler, PongHandler},
};

/// Who waits on the shared connection. The reader and the writer have a slot each (each is
/// one task at a time); every other waiting operation (a handle's flush, a `closed()` call)
/// has a key of its own and takes its wakers out when it ends or is dropped, so that the
/// lists hold one waker per operation in progress, however many came and went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiter {
    Reader,
    Writer,
    Op(u64),
}

/// Wakers by [`Waiter`]: one each, the newest.
#[derive(Debug, Default)]
struct WakerList(Vec<(Waiter, Waker)>);

impl WakerList {
    /// Keeps `waker` as `who`'s; the one it replaces is returned, for the caller to drop once
    /// its locks are released (dropping a waker may drop a task, and with it an [`Op`] whose
    /// drop takes these locks).
    #[must_use]
    fn insert(&mut self, who: Waiter, waker: &Waker) -> Option<Waker> {
        match self.0.iter_mut().find(|(w, _)| *w == who) {
            Some((_, slot)) if slot.will_wake(waker) => None,
            Some((_, slot)) => Some(std::mem::replace(slot, waker.clone())),
            None => {
                self.0.push((who, waker.clone()));
                None
            }
        }
    }

    /// Takes `who`'s waker out (dropped by the caller, after any lock).
    fn remove(&mut self, who: Waiter) -> Option<Waker> {
        let at = self.0.iter().position(|(w, _)| *w == who)?;
        Some(self.0.swap_remove(at).1)
    }

    fn take(&mut self) -> impl Iterator<Item = Waker> + use<> {
        std::mem::take(&mut self.0)
            .into_iter()
            .map(|(_, waker)| waker)
    }
}

/// The tasks waiting for the transport to become writable.
#[derive(Debug, Default)]
struct WriteWaiters(Mutex<WakerList>);

impl WriteWaiters {
    fn list(&self) -> MutexGuard<'_, WakerList> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, who: Waiter, waker: &Waker) {
        let replaced = self.list().insert(who, waker);
        drop(replaced);
    }

    fn remove(&self, who: Waiter) -> Option<Waker> {
        self.list().remove(who)
    }

    fn wake_all(&self) {
        let waiters = self.list().take();
        for waker in waiters {
            waker.wake();
        }
    }
}

impl Wake for WriteWaiters {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_all();
    }
}

/// Whom a `Closer`'s request wakes once the reader is gone: the writer (one task, so one
/// slot, replaced as it moves between tasks) and the tasks in `closed()`; any of them may act
/// on it. Handles act on a request they find but wait for none, so they are not here: the
/// list stays as long as the tasks that wait in `closed()`.
#[derive(Debug, Default)]
struct CloseFanOut {
    writer: Mutex<Option<Waker>>,
    closed: WriteWaiters,
}

impl CloseFanOut {
    fn register_writer(&self, waker: &Waker) {
        let mut slot = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let replaced = if slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            None
        } else {
            slot.replace(waker.clone())
        };
        drop(slot);
        drop(replaced);
    }

    /// Forgets the writer (dropped), outside the lock.
    fn remove_writer(&self) {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(writer);
    }
}

impl CloseFanOut {
    fn clear(&self) {
        self.remove_writer();
        // Taken under the lock, dropped after it.
        let closed = self.closed.list().take();
        drop(closed);
    }
}

impl Wake for CloseFanOut {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            writer.wake();
        }
        self.closed.wake_all();
    }
}

/// Which task polls the shared connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Poller {
    Reader,
    Writer,
    /// A [`ControlHandle`]'s flush, by its key.
    Handle(u64),
    /// A `closed()` caller, by its key.
    Closed(u64),
}

impl Poller {
    fn waiter(self) -> Waiter {
        match self {
            Self::Reader => Waiter::Reader,
            Self::Writer => Waiter::Writer,
            Self::Handle(key) | Self::Closed(key) => Waiter::Op(key),
        }
    }
}

/// The transport as one task sees it: reads wake that task (or, when several tasks may read,
/// all of them); writes wake every writer.
struct SharedIo<'a, S> {
    io: &'a mut S,
    /// Whose poll this is (the key its wakers are kept under).
    who: Waiter,
    waiters: &'a Arc<WriteWaiters>,
    /// Set when tasks other than the reader read (the reader was dropped and `closed()`
    /// callers drive the close): the transport keeps one read waker, so it must wake all.
    read_waiters: Option<&'a Arc<WriteWaiters>>,
}

impl<S> SharedIo<'_, S> {
    fn poll_write_side<T>(
        &mut self,
        cx: &Context<'_>,
        f: impl FnMut(Pin<&mut S>, &mut Context<'_>) -> Poll<T>,
    ) -> Poll<T>
    where
        S: Unpin,
    {
        poll_waking_all(self.io, self.waiters, self.who, cx, f)
    }
}

/// Polls `io` with a waker that wakes every task in `waiters`, registering `cx`'s as `who`'s.
fn poll_waking_all<S: Unpin, T>(
    io: &mut S,
    waiters: &Arc<WriteWaiters>,
    who: Waiter,
    cx: &Context<'_>,
    mut f: impl FnMut(Pin<&mut S>, &mut Context<'_>) -> Poll<T>,
) -> Poll<T> {
    let waker = Waker::from(waiters.clone());
    let mut proxy = Context::from_waker(&waker);
    let result = f(Pin::new(&mut *io), &mut proxy);
    if result.is_ready() {
        return result;
    }
    // Readiness may have come between the transport's answer and this registration, and
    // woken an empty list: registered now, ask again (register, then check).
    waiters.register(who, cx.waker());
    f(Pin::new(&mut *io), &mut proxy)
}

impl<S: AsyncRead + Unpin> AsyncRead for SharedIo<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.read_waiters {
            Some(waiters) => poll_waking_all(this.io, waiters, this.who, cx, |io, cx| {
                io.poll_read(cx, buf)
            }),
            None => Pin::new(&mut *this.io).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SharedIo<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_side(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_side(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .poll_write_side(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .poll_write_side(cx, |io, cx| io.poll_shutdown(cx))
    }
}

/// The connection the halves share.
struct Shared<S> {
    inner: Mutex<Inner<S>>,
    waiters: Arc<WriteWaiters>,
    /// The tasks that read once the reader is gone (`closed()` callers).
    read_waiters: Arc<WriteWaiters>,
    /// Tasks waiting for the transport to be closed ([`ControlHandle::closed`]). (Not under
    /// the connection's lock, so that an ending wait takes its waker out without it.)
    closed_waiters: WriteWaiters,
    /// Once the reader is gone, whom a `Closer`'s request wakes.
    close_fanout: Arc<CloseFanOut>,
    /// The read and write timeouts, fixed at the split: read without taking the lock.
    timeouts: (Option<Duration>, Option<Duration>),
    /// The key of the next waiting operation ([`Waiter::Op`]).
    next_op: AtomicU64,
}

/// What the lock guards.
struct Inner<S> {
    ws: WebSocket<S>,
    /// The reader's task, to wake when another task moves a deadline it sleeps on.
    reader: Option<Waker>,
    /// The reader was dropped: the writer's `close` completes the handshake itself.
    reader_gone: bool,
    /// A waiter registered while the connection was open: wake it when the close starts, so
    /// that it starts its clock.
    wake_on_close_start: bool,
    /// Everyone parked was woken once the transport closed.
    end_announced: bool,
}

impl<S> Inner<S> {
    /// Starts the close a [`Closer`](crate::Closer) requested, if one did. A request wakes
    /// the reader; once the reader is gone, the writer and the `closed()` callers.
    #[inline]
    fn poll_close_request(&mut self, cx: &Context<'_>, poller: Poller, fanout: &Arc<CloseFanOut>) {
        match poller {
            Poller::Reader => self.ws.core.poll_close_request(Some(cx)),
            Poller::Writer | Poller::Closed(_) if self.reader_gone => {
                self.poll_close_request_without_reader(cx, poller, fanout);
            }
            _ => self.ws.core.poll_close_request(None),
        }
    }

    #[cold]
    fn poll_close_request_without_reader(
        &mut self,
        cx: &Context<'_>,
        poller: Poller,
        fanout: &Arc<CloseFanOut>,
    ) {
        if !self.ws.core.has_close_watch() {
            // No closer: nothing to wake for.
            return;
        }
        // Registered before the check, so that a request after it wakes this task.
        if poller == Poller::Writer {
            fanout.register_writer(cx.waker());
        } else {
            fanout.closed.register(poller.waiter(), cx.waker());
        }
        let waker = Waker::from(fanout.clone());
        self.ws
            .core
            .poll_close_request(Some(&Context::from_waker(&waker)));
        if !self.ws.core.has_close_watch() {
            // Acted on: nobody is to be woken for it any more.
            fanout.clear();
        }
    }
}

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        // A panic while locked leaves the state consistent (no poll holds invariants broken
        // across a panic point, and no user code runs under the lock), so a poisoned lock is
        // still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the core from a task other than the reader's, then wakes the reader if `f`
    /// moved a deadline it sleeps on (after the lock is released).
    fn with_core_waking<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        let mut inner = self.lock();
        let result = f(&mut inner.ws.core);
        let wake = self.to_wake(&mut inner, false);
        drop(inner);
        wake.wake();
        result
    }

    /// Whom a poll must wake once the lock is released: the reader when another task moved a
    /// deadline; the `closed` waiters when the close starts or the transport closed; and,
    /// once it closed, every task parked on the transport (nothing will wake them else).
    fn to_wake(&self, inner: &mut Inner<S>, is_reader: bool) -> ToWake {
        let done = inner.ws.core.is_done();
        let announce = done && !std::mem::replace(&mut inner.end_announced, done);
        let reader = if (!is_reader && inner.ws.core.conn.timeout_changed()) || announce {
            inner.reader.take()
        } else {
            None
        };
        let close_started = inner.wake_on_close_start && inner.ws.core.state() != State::Open;
        // With the reader gone, the `closed()` callers sleep on the deadlines in its place.
        let deadline_moved =
            inner.reader_gone && !is_reader && inner.ws.core.conn.timeout_changed();
        let closed = if done || close_started || deadline_moved {
            inner.wake_on_close_start = false;
            self.closed_waiters.list().take().collect()
        } else {
            Vec::new()
        };
        ToWake {
            reader,
            closed,
            writers: announce.then(|| self.waiters.clone()),
        }
    }
}

/// Wakers taken under the lock, woken after it.
struct ToWake {
    reader: Option<Waker>,
    closed: Vec<Waker>,
    writers: Option<Arc<WriteWaiters>>,
}

impl ToWake {
    fn wake(self) {
        if let Some(reader) = self.reader {
            reader.wake();
        }
        for waiter in self.closed {
            waiter.wake();
        }
        if let Some(writers) = self.writers {
            writers.wake_by_ref();
        }
    }
}

impl<S> WebSocketReader<S> {
    /// Drops the rest of the message being streamed (from `MessageReader`'s drop).
    pub(crate) fn discard_message(&self) {
        self.shared.lock().ws.core.conn.discard_message();
    }
}

impl<S> WebSocketWriter<S> {
    /// Runs `f` on the core, without needing the transport's traits (for drops).
    pub(crate) fn with_core_dropping<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        self.shared.with_core_waking(f)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Shared<S> {
    /// One poll under the lock. The reader registers its task first, so that a deadline moved
    /// by another task after this poll wakes it.
    fn poll_with<R>(
        &self,
        cx: &mut Context<'_>,
        timer: &mut Timer,
        poller: Poller,
        f: impl FnOnce(&mut Core, &mut dyn Io, &mut Timer, &mut Context<'_>) -> R,
    ) -> R {
        let is_reader = poller == Poller::Reader;
        let mut guard = self.lock();
        let inner = &mut *guard;
        if is_reader
            && !inner
                .reader
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            inner.reader = Some(cx.waker().clone());
        }
        // A `Closer` made before the split.
        inner.poll_close_request(cx, poller, &self.close_fanout);
        let mut io = SharedIo {
            io: &mut inner.ws.io,
            who: poller.waiter(),
            waiters: &self.waiters,
            read_waiters: None,
        };
        let result = f(&mut inner.ws.core, &mut io, timer, cx);
        let wake = self.to_wake(inner, is_reader);
        drop(guard);
        wake.wake();
        result
    }

    /// Ready once the transport is closed. With the reader gone, nobody else reads: this poll
    /// completes the closing handshake itself (bounded by the close timeout). With a reader
    /// that does not finish within the close timeout once the close started (it is not being
    /// polled), the transport is shut down here.
    fn poll_transport_closed(
        &self,
        cx: &mut Context<'_>,
        wait: &mut CloseWait,
        key: u64,
    ) -> Poll<()> {
        let poller = Poller::Closed(key);
        let CloseWait { timer, give_up_at } = wait;
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.ws.core.is_done() {
            return Poll::Ready(());
        }
        // Always registered: another task may finish the close (and the transport keeps only
        // one read waker, so a second driver may not be woken by the reads).
        self.closed_waiters.register(poller.waiter(), cx.waker());
        if inner.reader_gone {
            // Nobody else reads: a `Closer`'s request may be this task's to start.
            inner.poll_close_request_without_reader(cx, poller, &self.close_fanout);
        }
        let mut io = SharedIo {
            io: &mut inner.ws.io,
            who: poller.waiter(),
            waiters: &self.waiters,
            read_waiters: inner.reader_gone.then_some(&self.read_waiters),
        };
        if inner.reader_gone {
            loop {
                match inner.ws.core.poll_recv(&mut io, timer, cx, Mode::Whole) {
                    // No reader, no handler: the default reply.
                    Poll::Ready(Some(Ok(Received::CloseToAnswer(frame)))) => {
                        let reply = frame.map(|c| CloseFrame::new(c.code, ""));
                        inner.ws.core.answer_close(reply.as_ref());
                    }
                    Poll::Ready(Some(_)) => {}
                    Poll::Ready(None) => break,
                    Poll::Pending => return Poll::Pending,
                }
            }
        } else {
            if inner.ws.core.state() == State::Open {
                // The clock starts with the close; woken then.
                inner.wake_on_close_start = true;
                return Poll::Pending;
            }
            // The reader has the close timeout (and a little more, so that a reader that is
            // polled finishes first); past it, nobody drives the close.
            let timeout = inner.ws.core.config.get_close_timeout();
            if give_up_at.is_none() {
                let now = tokio::time::Instant::now().into_std();
                *give_up_at = inner
                    .ws
                    .core
                    .conn
                    .close_deadline()
                    .or_else(|| now.checked_add(timeout))
                    .and_then(|start| start.checked_add(CLOSE_GRACE));
            }
            // No instant (a close timeout too large to add): wait for the reader only.
            if timer.poll_until(*give_up_at, cx).is_pending() {
                return Poll::Pending;
            }
            inner.ws.core.abandon(&mut io, cx);
        }
        let wake = self.to_wake(inner, false);
        drop(guard);
        wake.wake();
        Poll::Ready(())
    }
}

/// What one wait for the end keeps across polls: its timer, and when it gives up on a living
/// reader.
#[derive(Debug, Default)]
struct CloseWait {
    timer: Timer,
    give_up_at: Option<std::time::Instant>,
}

/// How much longer than the close timeout [`ControlHandle::closed`] waits for a living
/// reader before it ends the transport itself.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

pub(crate) fn split<S>(mut ws: WebSocket<S>) -> (WebSocketReader<S>, WebSocketWriter<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = ws.config();
    let timeouts = (config.get_read_timeout(), config.get_write_timeout());
    let timer = std::mem::take(&mut ws.timer);
    let handlers = std::mem::take(&mut ws.handlers);
    ws.core.yield_between_slices = true;
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            ws,
            reader: None,
            reader_gone: false,
            wake_on_close_start: false,
            end_announced: false,
        }),
        waiters: Arc::default(),
        read_waiters: Arc::default(),
        closed_waiters: WriteWaiters::default(),
        close_fanout: Arc::default(),
        timeouts,
        next_op: AtomicU64::new(0),
    });
    (
        WebSocketReader {
            shared: shared.clone(),
            timer,
            handlers,
        },
        WebSocketWriter {
            shared,
            timer: Timer::default(),
        },
    )
}

/// The receiving half of a split [`WebSocket`]: one task reads messages while another writes.
///
/// Only the reader reads the transport, so keep it polled: it answers pings, replies to the
/// peer's close, runs the keepalive and completes the closing handshake, whichever half or
/// handle started it. Not `Clone`: there is one reader.
///
/// # Examples
///
/// ```no_run
/// # async fn run(ws: socketry::WebSocket<tokio::net::TcpStream>) {
/// let (mut reader, mut writer) = ws.split();
/// tokio::spawn(async move {
///     let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
///     loop {
///         ticks.tick().await;
///         if writer.send("tick").await.is_err() {
///             break;
///         }
///     }
/// });
/// while let Some(Ok(message)) = reader.recv().await {
///     println!("{message:?}");
/// }
/// # }
/// # let _ = run;
/// ```
pub struct WebSocketReader<S> {
    shared: Arc<Shared<S>>,
    /// The sleep on the connection's deadlines.
    timer: Timer,
    handlers: Option<Box<Handlers>>,
}

/// The sending half of a split [`WebSocket`]. Not `Clone`: there is one writer; for control
/// frames from more tasks, use [`ControlHandle`]s.
pub struct WebSocketWriter<S> {
    shared: Arc<Shared<S>>,
    /// The sleep on the write deadline.
    timer: Timer,
}

impl<S> Drop for WebSocketWriter<S> {
    fn drop(&mut self) {
        // Its task waits on nothing any more: no waker of it stays behind.
        let writer = self.shared.waiters.remove(Waiter::Writer);
        self.shared.close_fanout.remove_writer();
        drop(writer);
    }
}

impl<S> Drop for WebSocketReader<S> {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.reader_gone = true;
        inner.reader = None;
        // Its handlers are gone with it: pings and the peer's close are answered by default.
        inner.ws.core.conn.set_auto_pong(true);
        inner.ws.core.conn.set_auto_close_reply(true);
        // A `Closer`'s request now wakes the writer and the `closed()` callers, not this
        // reader's task. (Not acted on here: that would queue the close frame and write
        // nothing.)
        let closing = inner.ws.core.has_close_watch();
        inner
            .ws
            .core
            .register_close_waker(&Waker::from(self.shared.close_fanout.clone()));
        // Whoever waits for the end must now drive it.
        let waiters = self.shared.closed_waiters.list().take();
        // The reader's task waits on nothing any more.
        let reader_waker = self.shared.waiters.remove(Waiter::Reader);
        drop(inner);
        drop(reader_waker);
        for waiter in waiters {
            waiter.wake();
        }
        if closing {
            // A writer parked in a write registered for no request (the reader had them):
            // polled again, it does.
            self.shared.waiters.wake_all();
        }
    }
}

impl<S> fmt::Debug for WebSocketReader<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketReader").finish_non_exhaustive()
    }
}

impl<S> fmt::Debug for WebSocketWriter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketWriter").finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Endpoint for WebSocketReader<S> {
    fn poll_with<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Core, &mut dyn Io, &mut Timer, &mut Context<'_>) -> R,
    ) -> R {
        self.shared
            .poll_with(cx, &mut self.timer, Poller::Reader, f)
    }

    fn with_core<R>(&mut self, f: impl FnOnce(&mut Core) -> R) -> R {
        f(&mut self.shared.lock().ws.core)
    }

    fn handlers(&mut self) -> Option<&mut Handlers> {
        self.handlers.as_deref_mut()
    }

    fn timeouts(&mut self) -> (Option<Duration>, Option<Duration>) {
        self.shared.timeouts
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Endpoint for WebSocketWriter<S> {
    fn poll_with<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Core, &mut dyn Io, &mut Timer, &mut Context<'_>) -> R,
    ) -> R {
        self.shared
            .poll_with(cx, &mut self.timer, Poller::Writer, f)
    }

    fn with_core<R>(&mut self, f: impl FnOnce(&mut Core) -> R) -> R {
        self.shared.with_core_waking(f)
    }

    fn handlers(&mut self) -> Option<&mut Handlers> {
        None
    }

    fn timeouts(&mut self) -> (Option<Duration>, Option<Duration>) {
        self.shared.timeouts
    }

    /// A large message is compressed outside the lock, so the reader (answering pings,
    /// reading) is not held up for the whole compression. Only the writer sends data, so the
    /// compressor checked out here is back before the next data message.
    fn queue_message(&mut self, message: Message) -> Result<(), Error> {
        let opcode = match &message {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
            _ => return self.with_core(|core| core.queue(message)),
        };
        if message.len() < COMPRESS_OUTSIDE_THE_LOCK {
            return self.with_core(|core| core.queue(message));
        }
        let checked_out = self.with_core(|core| core.conn.check_out_compressor(message.len()))?;
        let Some(mut compressor) = checked_out else {
            return self.with_core(|core| core.queue(message));
        };
        let compressed = compressor.compress(message.as_payload());
        self.with_core(|core| {
            core.queue_with(|conn| conn.send_compressed(compressor, opcode, compressed))
        })
    }
}

/// Messages at least this large are compressed outside the split's lock (smaller ones take
/// less time to compress than the extra lock costs).
const COMPRESS_OUTSIDE_THE_LOCK: usize = 64 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketReader<S> {
    /// Receives the next message; see [`WebSocket::recv`].
    ///
    /// # Errors
    ///
    /// As [`WebSocket::recv`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: no message is lost when the future is dropped.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        endpoint::recv(self).await
    }

    /// Whether `writer` is this reader's other half.
    pub fn is_pair_of(&self, writer: &WebSocketWriter<S>) -> bool {
        Arc::ptr_eq(&self.shared, &writer.shared)
    }

    /// Sets the ping handler; see [`WebSocket::set_ping_handler`].
    pub fn set_ping_handler(&mut self, handler: Option<PingHandler>) {
        self.with_core(|core| core.conn.set_auto_pong(handler.is_none()));
        self.handlers.get_or_insert_default().ping = handler;
    }

    /// Sets the pong handler; see [`WebSocket::set_pong_handler`].
    pub fn set_pong_handler(&mut self, handler: Option<PongHandler>) {
        self.handlers.get_or_insert_default().pong = handler;
    }

    /// Sets the close handler; see [`WebSocket::set_close_handler`].
    pub fn set_close_handler(&mut self, handler: Option<CloseHandler>) {
        self.with_core(|core| core.conn.set_auto_close_reply(handler.is_none()));
        self.handlers.get_or_insert_default().close = handler;
    }

    /// The protocol state; see [`WebSocket::state`].
    pub fn state(&self) -> State {
        self.shared.lock().ws.core.state()
    }

    /// Joins the halves back into one [`WebSocket`].
    ///
    /// # Errors
    ///
    /// Gives the halves back when they are not a pair or a [`ControlHandle`] still exists.
    pub fn reunite(
        mut self,
        writer: WebSocketWriter<S>,
    ) -> Result<WebSocket<S>, (Self, WebSocketWriter<S>)> {
        if !self.is_pair_of(&writer) || Arc::strong_count(&self.shared) > 2 {
            return Err((self, writer));
        }
        drop(writer);
        let timer = std::mem::take(&mut self.timer);
        let handlers = std::mem::take(&mut self.handlers);
        let shared = self.shared.clone();
        drop(self);
        match Arc::try_unwrap(shared) {
            Ok(shared) => {
                let mut ws = shared
                    .inner
                    .into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .ws;
                ws.core.yield_between_slices = false;
                // The reader's drop turned the automatic replies back on; its handlers return.
                let (ping, close) = handlers
                    .as_deref()
                    .map_or((false, false), |h| (h.ping.is_some(), h.close.is_some()));
                ws.core.conn.set_auto_pong(!ping);
                ws.core.conn.set_auto_close_reply(!close);
                ws.timer = timer;
                ws.handlers = handlers;
                Ok(ws)
            }
            Err(_) => unreachable!("no other reference: checked above, nothing cloned since"),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketWriter<S> {
    /// Sends a message; see [`WebSocket::send`].
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send`].
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        endpoint::send(self, message.into()).await
    }

    /// Queues a message, waiting only for room; see [`WebSocket::feed`].
    ///
    /// # Errors
    ///
    /// As [`WebSocket::feed`].
    pub async fn feed(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        endpoint::feed(self, message.into()).await
    }

    /// Writes everything queued; see [`WebSocket::flush`].
    ///
    /// # Errors
    ///
    /// As [`WebSocket::flush`].
    pub async fn flush(&mut self) -> Result<(), Error> {
        endpoint::flush(self).await
    }

    /// Sends one frame of a data message; see [`WebSocket::send_frame`].
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send_frame`].
    pub async fn send_frame(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        fin: bool,
    ) -> Result<(), Error> {
        let queued =
            self.with_core(|core| core.queue_with(|conn| conn.send_frame(opcode, payload, fin)));
        endpoint::flush_queued(self, queued).await
    }

    /// Sends a [`PreparedMessage`]; see [`WebSocket::send_prepared`].
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send`].
    pub async fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), Error> {
        let queued = self.with_core(|core| core.queue_with(|conn| conn.send_prepared(message)));
        endpoint::flush_queued(self, queued).await
    }

    /// Sends several [`PreparedMessage`]s as one write: they are queued under one lock and
    /// flushed together, so a backlog of small messages costs one system call (how a
    /// broadcast hub drains a subscriber's queue). The batch is queued whole, whatever the
    /// write buffer size: bound it before the call.
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send`]; the messages before the failing one stay queued.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(ws: socketry::WebSocket<tokio::net::TcpStream>) -> Result<(), socketry::Error> {
    /// use socketry::{Message, PreparedMessage};
    ///
    /// let (_reader, mut writer) = ws.split();
    /// let ticks: Vec<PreparedMessage> =
    ///     (0..3).map(|i| PreparedMessage::new(Message::text(format!("tick {i}")))).collect();
    /// writer.send_prepared_batch(ticks.iter()).await?;
    /// # Ok(()) }
    /// # let _ = run;
    /// ```
    pub async fn send_prepared_batch<'a, I>(&mut self, messages: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = &'a PreparedMessage>,
    {
        let queued =
            self.with_core(|core| core.queue_with(|conn| conn.send_prepared_all(messages)));
        endpoint::flush_queued(self, queued).await
    }

    /// Starts the closing handshake: sends a close frame and waits until it is written. The
    /// reader receives the peer's answer and closes the transport (after the close timeout at
    /// the latest). Idempotent.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a code that may not be sent; [`Error::Io`].
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.with_core(|core| core.start_close(Some(CloseFrame::new(code, reason))))?;
        self.flush().await?;
        if self.shared.lock().reader_gone {
            // Nobody else reads: wait for the peer's close here, up to the close timeout.
            let op = Op::new(&*self.shared);
            let mut wait = CloseWait::default();
            poll_fn(|cx| self.shared.poll_transport_closed(cx, &mut wait, op.key)).await;
        }
        Ok(())
    }

    /// The protocol state; see [`WebSocket::state`].
    pub fn state(&self) -> State {
        self.shared.lock().ws.core.state()
    }

    /// A handle that sends control frames from any task.
    pub fn handle(&self) -> ControlHandle
    where
        S: Send + 'static,
    {
        ControlHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketReader<S> {
    /// A handle that sends control frames from any task.
    pub fn handle(&self) -> ControlHandle
    where
        S: Send + 'static,
    {
        ControlHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> futures_core::Stream for WebSocketReader<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        endpoint::poll_recv_message(self.get_mut(), cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> futures_sink::Sink<Message> for WebSocketWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        endpoint::poll_ready(self.get_mut(), cx)
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        self.get_mut().queue_message(message)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        endpoint::poll_flush(self.get_mut(), cx)
    }

    /// Sends a close frame (1000) if none was sent and flushes; the reader completes the
    /// handshake.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        this.with_core(|core| {
            if core.state() == State::Open {
                core.start_close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
            } else {
                Ok(())
            }
        })?;
        endpoint::poll_flush(this, cx)
    }
}

/// What a [`ControlHandle`] needs of the shared connection, without its transport type.
trait Control: Ops + Send + Sync {
    fn queue(&self, f: &mut dyn FnMut(&mut Core) -> Result<(), Error>) -> Result<(), Error>;
    fn closer(&self) -> crate::Closer;
    fn poll_flush(
        &self,
        cx: &mut Context<'_>,
        timer: &mut Timer,
        key: u64,
    ) -> Poll<Result<(), Error>>;
    fn poll_closed(&self, cx: &mut Context<'_>, wait: &mut CloseWait, key: u64) -> Poll<()>;
    fn state(&self) -> State;
}

/// Keys for waiting operations ([`Waiter::Op`]).
trait Ops {
    /// A key for a waiting operation, whose wakers [`forget`](Self::forget) takes out.
    fn new_op(&self) -> u64;
    fn forget(&self, key: u64);
}

/// A waiting operation other than the reader's and the writer's polls (a handle's flush, a
/// wait for the end): its key, and its wakers taken out of every list when it ends or is
/// dropped, so that a dropped one leaves nothing behind.
struct Op<'a, T: Ops + ?Sized> {
    ops: &'a T,
    key: u64,
}

impl<'a, T: Ops + ?Sized> Op<'a, T> {
    fn new(ops: &'a T) -> Self {
        Self {
            key: ops.new_op(),
            ops,
        }
    }
}

impl<T: Ops + ?Sized> Drop for Op<'_, T> {
    fn drop(&mut self) {
        self.ops.forget(self.key);
    }
}

impl<S> Ops for Shared<S> {
    fn new_op(&self) -> u64 {
        self.next_op.fetch_add(1, Ordering::Relaxed)
    }

    fn forget(&self, key: u64) {
        let who = Waiter::Op(key);
        // Each list under its own lock (not the connection's), one after the other; the
        // wakers are dropped after.
        let gone = [
            self.closed_waiters.remove(who),
            self.waiters.remove(who),
            self.read_waiters.remove(who),
            self.close_fanout.closed.remove(who),
        ];
        drop(gone);
    }
}

impl<S> Control for Shared<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn queue(&self, f: &mut dyn FnMut(&mut Core) -> Result<(), Error>) -> Result<(), Error> {
        self.with_core_waking(f)
    }

    fn closer(&self) -> crate::Closer {
        let mut inner = self.lock();
        let first = !inner.ws.core.has_close_watch();
        let closer = inner.ws.core.closer();
        // The task that reads may be parked already: register it now, or the first request
        // would wake nobody until its next poll. Without a reader, the tasks parked in
        // `closed()` registered no interest in requests (there was no closer): woken, they
        // poll again and do.
        let reader_gone = inner.reader_gone;
        let (waker, parked) = if reader_gone {
            // (Taken only to be woken below.)
            let parked: Vec<Waker> = if first {
                self.closed_waiters.list().take().collect()
            } else {
                Vec::new()
            };
            (Some(Waker::from(self.close_fanout.clone())), parked)
        } else {
            (inner.reader.clone(), Vec::new())
        };
        let requested = waker
            .as_ref()
            .is_some_and(|waker| inner.ws.core.register_close_waker(waker));
        drop(inner);
        // Woken after the lock. A request made already is acted on by the task it wakes.
        if requested && let Some(waker) = &waker {
            waker.wake_by_ref();
        }
        if reader_gone && first {
            // The writer and the `closed()` callers registered for no request (there was no
            // closer): polled again, they do.
            for waiter in parked {
                waiter.wake();
            }
            self.waiters.wake_all();
        }
        closer
    }

    fn poll_flush(
        &self,
        cx: &mut Context<'_>,
        timer: &mut Timer,
        key: u64,
    ) -> Poll<Result<(), Error>> {
        // Handles wait on no write deadline of their own, only on the close timeout once the
        // close started (as every write).
        self.poll_with(cx, timer, Poller::Handle(key), |core, io, timer, cx| {
            endpoint::poll_write_bounded(core, io, timer, cx, false, |core, io, cx| {
                core.poll_write_queued(io, cx).map_err(Error::from)
            })
        })
    }

    fn poll_closed(&self, cx: &mut Context<'_>, wait: &mut CloseWait, key: u64) -> Poll<()> {
        self.poll_transport_closed(cx, wait, key)
    }

    fn state(&self) -> State {
        self.lock().ws.core.state()
    }
}

/// Sends pings, pongs and the close frame from any task, while the reader and the writer are
/// busy (gorilla's `WriteControl`). Cheap to clone; not tied to the transport's type.
///
/// Control frames go out between the frames of a data message that is being written
/// (RFC 6455 §5.4), never inside one.
///
/// # Examples
///
/// ```no_run
/// # async fn run(ws: socketry::WebSocket<tokio::net::TcpStream>) -> Result<(), socketry::Error> {
/// let (reader, writer) = ws.split();
/// let handle = writer.handle();
/// handle.ping("are you there?").await?;
/// handle.close(socketry::CloseCode::GOING_AWAY, "server restart").await?;
/// # drop((reader, writer)); Ok(()) }
/// # let _ = run;
/// ```
#[derive(Clone)]
pub struct ControlHandle {
    shared: Arc<dyn Control>,
}

impl fmt::Debug for ControlHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlHandle")
            .field("state", &self.shared.state())
            .finish()
    }
}

impl ControlHandle {
    /// Sends a ping with up to 125 bytes of payload and waits until it is written.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyClosed`], [`Error::InvalidMessage`] for a payload over 125 bytes,
    /// [`Error::Io`].
    pub async fn ping(&self, payload: impl Into<Bytes>) -> Result<(), Error> {
        self.send_control(Message::Ping(payload.into())).await
    }

    /// Sends an unsolicited pong (a one-way heartbeat) and waits until it is written.
    ///
    /// # Errors
    ///
    /// As [`ping`](Self::ping).
    pub async fn pong(&self, payload: impl Into<Bytes>) -> Result<(), Error> {
        self.send_control(Message::Pong(payload.into())).await
    }

    /// Starts the closing handshake: sends a close frame and waits until it is written. The
    /// reader receives the peer's answer and closes the transport (after the close timeout at
    /// the latest). Idempotent.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a code that may not be sent; [`Error::Io`].
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let mut frame = Some(CloseFrame::new(code, reason));
        self.shared
            .queue(&mut |core| core.start_close(frame.take()))?;
        let mut timer = Timer::default();
        let op = Op::new(&*self.shared);
        poll_fn(|cx| self.shared.poll_flush(cx, &mut timer, op.key)).await
    }

    /// Queues the close frame without waiting: the reader writes it and completes the
    /// handshake (a close started anywhere ends within the close timeout). Idempotent.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a code that may not be sent.
    pub fn start_close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let mut frame = Some(CloseFrame::new(code, reason));
        self.shared
            .queue(&mut |core| core.start_close(frame.take()))
    }

    /// Waits until the connection is over and its transport closed: the reader completed the
    /// closing handshake (or gave up after the close timeout). If the reader half was dropped,
    /// this call reads the peer's answer itself; if the reader lives but does not finish
    /// within the close timeout (nobody polls it), this call shuts the transport down. Pair it
    /// with [`close`](Self::close).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn closed(&self) {
        let op = Op::new(&*self.shared);
        let mut wait = CloseWait::default();
        poll_fn(|cx| self.shared.poll_closed(cx, &mut wait, op.key)).await;
    }

    /// Changes the close timeout of the connection, for a closing handshake that has not
    /// started yet.
    pub fn set_close_timeout(&self, timeout: Duration) {
        let _ = self.shared.queue(&mut |core| {
            core.set_config(core.config.close_timeout(timeout));
            Ok(())
        });
    }

    /// A [`Closer`](crate::Closer) for this connection: a close request that needs no
    /// `await` (for a `Drop`, a signal handler, a thread outside the runtime). The reader
    /// acts on it; once the reader is gone, the writer's next operation or
    /// [`closed`](Self::closed) does.
    pub fn closer(&self) -> crate::Closer {
        self.shared.closer()
    }

    /// The protocol state.
    pub fn state(&self) -> State {
        self.shared.state()
    }

    async fn send_control(&self, message: Message) -> Result<(), Error> {
        let mut message = Some(message);
        let queued = self.shared.queue(&mut |core| match message.take() {
            Some(message) => core.queue(message),
            None => Ok(()),
        });
        let mut timer = Timer::default();
        let op = Op::new(&*self.shared);
        match queued {
            Ok(()) => poll_fn(|cx| self.shared.poll_flush(cx, &mut timer, op.key)).await,
            Err(Error::AlreadyClosed) => {
                // As a refused send (`endpoint::flush_queued`): one try to write the close.
                poll_fn(|cx| {
                    let _ = self.shared.poll_flush(cx, &mut timer, op.key);
                    Poll::Ready(())
                })
                .await;
                Err(Error::AlreadyClosed)
            }
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketry_proto::Role;

    /// How many wakers the write and close lists hold.
    fn parked<S>(shared: &Shared<S>) -> (usize, usize, usize) {
        (
            shared.waiters.list().0.len(),
            shared.closed_waiters.list().0.len(),
            shared.close_fanout.closed.list().0.len(),
        )
    }

    #[tokio::test]
    async fn dropped_flushes_and_waits_for_the_end_leave_no_waker_behind() {
        // A peer that never reads: 64 bytes of room, so a ping's flush parks for good.
        let (ours, _theirs) = tokio::io::duplex(64);
        let ws = WebSocket::from_raw(ours, Role::Server, Default::default());
        let (_reader, writer) = ws.split();
        let handle = writer.handle();
        let big = Bytes::from(vec![b'x'; 125]);
        for round in 0..50 {
            // Each in a task of its own (a waker of its own), given up on at once.
            let handle = handle.clone();
            let payload = big.clone();
            tokio::spawn(async move {
                let ping = handle.ping(payload);
                let closed = handle.closed();
                let _ = tokio::time::timeout(Duration::from_millis(1), ping).await;
                let _ = tokio::time::timeout(Duration::from_millis(1), closed).await;
            })
            .await
            .unwrap();
            let (writers, closed, _) = parked(&writer.shared);
            assert!(
                writers == 0 && closed == 0,
                "round {round}: {writers} write wakers, {closed} close wakers"
            );
        }
    }

    #[tokio::test]
    async fn a_dropped_writer_leaves_no_waker_behind() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let ws = WebSocket::from_raw(ours, Role::Server, Default::default());
        let (reader, mut writer) = ws.split();
        let send = writer.send(Message::Binary(vec![0u8; 1000].into()));
        assert!(
            tokio::time::timeout(Duration::from_millis(5), send)
                .await
                .is_err(),
            "the peer reads nothing: the send parks"
        );
        assert_eq!(parked(&reader.shared).0, 1, "the writer's task waits");
        drop(writer);
        assert_eq!(parked(&reader.shared), (0, 0, 0));
    }

    #[tokio::test]
    async fn a_waiting_flush_is_still_woken_when_the_transport_drains() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let ws = WebSocket::from_raw(ours, Role::Server, Default::default());
        let (_reader, writer) = ws.split();
        let handle = writer.handle();
        let big = Bytes::from(vec![b'x'; 125]);
        let parked = tokio::spawn({
            let handle = handle.clone();
            let big = big.clone();
            async move { handle.ping(big).await }
        });
        // Another flush that gives up leaves the first one registered.
        let _ = tokio::time::timeout(Duration::from_millis(5), handle.ping(big)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!parked.is_finished(), "nothing could be written yet");
        // The peer reads: the parked flush completes.
        let mut sink = vec![0u8; 4096];
        let drain = async {
            loop {
                let _ = tokio::io::AsyncReadExt::read(&mut theirs, &mut sink).await;
            }
        };
        tokio::select! {
            result = parked => assert!(result.unwrap().is_ok()),
            () = drain => unreachable!(),
            () = tokio::time::sleep(Duration::from_secs(5)) => panic!("the parked flush was never woken"),
        }
    }
}
