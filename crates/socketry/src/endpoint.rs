//! The operations every public connection type shares, written once over [`Endpoint`]: the
//! whole connection runs them on its own state, the split halves under their lock.

use std::{
    future::poll_fn,
    task::{Context, Poll, ready},
    time::Duration,
};

use socketry_proto::{Incoming, Message};

use crate::{
    Error, Timeout,
    core::{Core, Io, Mode, Received, Timer},
    handlers::Handlers,
};

/// Gives access to the connection state and its transport for one poll.
pub(crate) trait Endpoint {
    /// Runs `f` on the core, the transport and this task's timer.
    fn poll_with<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Core, &mut dyn Io, &mut Timer, &mut Context<'_>) -> R,
    ) -> R;

    /// Runs `f` on the core alone (no I/O).
    fn with_core<R>(&mut self, f: impl FnOnce(&mut Core) -> R) -> R;

    /// The handlers, on the side that receives.
    fn handlers(&mut self) -> Option<&mut Handlers>;

    /// A small message already buffered that a receive may hand out without polling
    /// (see [`Core::buffered_small_message`]); `None` sends the receive the usual way.
    #[inline]
    fn buffered_small_message(&mut self) -> Option<Message> {
        None
    }

    /// Queues a message without writing it.
    fn queue_message(&mut self, message: Message) -> Result<(), Error> {
        self.with_core(|core| core.queue(message))
    }

    /// The read and write timeouts.
    fn timeouts(&mut self) -> (Option<Duration>, Option<Duration>) {
        self.with_core(|core| {
            (
                core.config.get_read_timeout(),
                core.config.get_write_timeout(),
            )
        })
    }
}

/// The clock deadlines are set from.
fn deadline(timeout: Duration) -> Option<std::time::Instant> {
    tokio::time::Instant::now().into_std().checked_add(timeout)
}

/// Receives the next message or fragment. The handlers run here, after the core was left:
/// never under the split's lock.
#[inline]
pub(crate) fn poll_recv<E: Endpoint>(
    endpoint: &mut E,
    cx: &mut Context<'_>,
    mode: Mode,
) -> Poll<Option<Result<Incoming, Error>>> {
    poll_received(endpoint, cx, mode).map(|next| {
        next.map(|result| {
            result.map(|received| match received {
                Received::Incoming(incoming) => incoming,
                _ => unreachable!("only a lending receive is told of a message to lend"),
            })
        })
    })
}

/// [`poll_recv`], also in [`Mode::Lend`]: what it hands out is `Received::Incoming` or, in
/// that mode, `Received::Lendable`; a close to answer is answered here.
#[inline(always)]
pub(crate) fn poll_received<E: Endpoint>(
    endpoint: &mut E,
    cx: &mut Context<'_>,
    mode: Mode,
) -> Poll<Option<Result<Received, Error>>> {
    loop {
        let received = ready!(endpoint.poll_with(cx, |core, io, timer, cx| {
            core.poll_recv(io, timer, cx, mode)
        }));
        let incoming = match received {
            Some(Ok(Received::Incoming(incoming))) => incoming,
            Some(Ok(Received::CloseToAnswer(frame))) => {
                answer_close(endpoint, frame);
                continue;
            }
            Some(Ok(Received::Lendable)) => return Poll::Ready(Some(Ok(Received::Lendable))),
            Some(Err(err)) => return Poll::Ready(Some(Err(err))),
            None => return Poll::Ready(None),
        };
        if let Incoming::Control(message @ (Message::Ping(_) | Message::Pong(_))) = &incoming {
            run_control_handlers(endpoint, message);
        }
        return Poll::Ready(Some(Ok(Received::Incoming(incoming))));
    }
}

/// Runs the close handler (outside the core) and queues its reply.
#[cold]
fn answer_close<E: Endpoint>(endpoint: &mut E, frame: Option<socketry_proto::CloseFrame>) {
    let reply = match endpoint.handlers() {
        Some(handlers) => handlers.close_reply(frame.as_ref()),
        None => frame.map(|c| socketry_proto::CloseFrame::new(c.code, "")),
    };
    endpoint.with_core(|core| core.answer_close(reply.as_ref()));
}

/// Runs the ping or pong handler (outside the core) and queues the pong it chose.
#[inline(never)]
fn run_control_handlers<E: Endpoint>(endpoint: &mut E, message: &Message) {
    let pong = endpoint
        .handlers()
        .and_then(|handlers| handlers.on_control(message));
    if let Some(pong) = pong {
        // A pong over 125 bytes cannot be sent; the handler's choice is dropped.
        endpoint.with_core(|core| {
            let _ = core.queue_with(|conn| conn.reply_to_ping(pong));
        });
    }
}

pub(crate) fn poll_recv_message<E: Endpoint>(
    endpoint: &mut E,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Message, Error>>> {
    poll_recv(endpoint, cx, Mode::Whole).map(|next| {
        next.map(|result| {
            result.map(|incoming| match incoming {
                Incoming::Control(message) => message,
                Incoming::Fragment(_) => unreachable!("whole messages are asked for"),
            })
        })
    })
}

/// Sets a deadline in the core (the read or the write one) for one operation, and clears it
/// when the operation ends or is cancelled.
struct OperationDeadline<'a, E: Endpoint> {
    endpoint: &'a mut E,
    set: fn(&mut socketry_proto::Connection, Option<std::time::Instant>),
}

impl<'a, E: Endpoint> OperationDeadline<'a, E> {
    fn start(
        endpoint: &'a mut E,
        timeout: Duration,
        set: fn(&mut socketry_proto::Connection, Option<std::time::Instant>),
    ) -> Self {
        endpoint.with_core(|core| set(&mut core.conn, deadline(timeout)));
        Self { endpoint, set }
    }
}

impl<E: Endpoint> Drop for OperationDeadline<'_, E> {
    fn drop(&mut self) {
        let set = self.set;
        self.endpoint.with_core(|core| set(&mut core.conn, None));
    }
}

pub(crate) async fn recv<E: Endpoint>(endpoint: &mut E) -> Option<Result<Message, Error>> {
    // The second and later messages of a batch one read brought: no poll, no deadline to set.
    if let Some(message) = endpoint.buffered_small_message() {
        return Some(Ok(message));
    }
    let Some(timeout) = endpoint.timeouts().0 else {
        return poll_fn(|cx| poll_recv_message(endpoint, cx)).await;
    };
    let guard = OperationDeadline::start(
        endpoint,
        timeout,
        socketry_proto::Connection::set_read_deadline,
    );
    poll_fn(|cx| poll_recv_message(guard.endpoint, cx)).await
}

/// Receives in `mode` through [`poll_received`], bounded by the read timeout if there is
/// one.
pub(crate) async fn received<E: Endpoint>(
    endpoint: &mut E,
    mode: Mode,
) -> Option<Result<Received, Error>> {
    let Some(timeout) = endpoint.timeouts().0 else {
        return poll_fn(|cx| poll_received(endpoint, cx, mode)).await;
    };
    let guard = OperationDeadline::start(
        endpoint,
        timeout,
        socketry_proto::Connection::set_read_deadline,
    );
    poll_fn(|cx| poll_received(guard.endpoint, cx, mode)).await
}

pub(crate) fn poll_flush<E: Endpoint>(
    endpoint: &mut E,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Error>> {
    endpoint.poll_with(cx, |core, io, timer, cx| {
        poll_write_bounded(core, io, timer, cx, true, |core, io, cx| {
            core.poll_write_queued(io, cx).map_err(Error::from)
        })
    })
}

pub(crate) fn poll_room<E: Endpoint>(
    endpoint: &mut E,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Error>> {
    endpoint.poll_with(cx, |core, io, timer, cx| {
        poll_write_bounded(core, io, timer, cx, true, |core, io, cx| {
            core.poll_room(io, cx)
        })
    })
}

/// Polls a write, bounded by the write deadline if one is set (and `write_deadline` says it
/// applies), and once the close started by the close timeout: past it the transport is
/// closed, as a receive would.
pub(crate) fn poll_write_bounded(
    core: &mut Core,
    io: &mut dyn Io,
    timer: &mut Timer,
    cx: &mut Context<'_>,
    write_deadline: bool,
    write: impl FnOnce(&mut Core, &mut dyn Io, &mut Context<'_>) -> Poll<Result<(), Error>>,
) -> Poll<Result<(), Error>> {
    if let Some(result) = core.closed_write_result() {
        return Poll::Ready(result);
    }
    if let Poll::Ready(result) = write(core, io, cx) {
        return Poll::Ready(result);
    }
    let write_at = core.conn.write_deadline().filter(|_| write_deadline);
    let close_at = core.close_deadline();
    let Some(at) = write_at.into_iter().chain(close_at).min() else {
        return Poll::Pending;
    };
    if timer.poll_until(Some(at), cx).is_pending() {
        return Poll::Pending;
    }
    if close_at == Some(at) {
        core.abandon(io, cx);
        return Poll::Ready(
            core.closed_write_result()
                .unwrap_or(Err(Error::AlreadyClosed)),
        );
    }
    Poll::Ready(Err(Error::Timeout(Timeout::Write)))
}

/// Queues without writing.
pub(crate) fn queue<E: Endpoint>(endpoint: &mut E, message: Message) -> Result<(), Error> {
    endpoint.queue_message(message)
}

/// Runs a write, bounded by the write timeout if there is one.
async fn write_bounded<E: Endpoint>(
    endpoint: &mut E,
    mut poll: impl FnMut(&mut E, &mut Context<'_>) -> Poll<Result<(), Error>>,
) -> Result<(), Error> {
    let Some(timeout) = endpoint.timeouts().1 else {
        return poll_fn(|cx| poll(endpoint, cx)).await;
    };
    let guard = OperationDeadline::start(
        endpoint,
        timeout,
        socketry_proto::Connection::set_write_deadline,
    );
    poll_fn(|cx| poll(guard.endpoint, cx)).await
}

/// Before a lending receive whose last replies filled the queue: waits for room as
/// [`feed`] does, bounded by the write timeout, with keepalive running
/// ([`Core::poll_replies_room`]). A close that started meanwhile ends the wait (no reply may
/// follow it) without an error: the receive goes on with the close.
pub(crate) async fn wait_for_replies_room<E: Endpoint>(endpoint: &mut E) -> Result<(), Error> {
    let poll = |endpoint: &mut E, cx: &mut Context<'_>| {
        endpoint.poll_with(cx, |core, io, timer, cx| {
            core.poll_replies_room(io, timer, cx)
        })
    };
    write_bounded(endpoint, poll).await?;
    // (On an error it stays owed: the next call waits again, as the next `feed` would.)
    endpoint.with_core(|core| core.owes_room = false);
    Ok(())
}

pub(crate) async fn flush<E: Endpoint>(endpoint: &mut E) -> Result<(), Error> {
    write_bounded(endpoint, poll_flush).await
}

pub(crate) async fn send<E: Endpoint>(endpoint: &mut E, message: Message) -> Result<(), Error> {
    let queued = queue(endpoint, message);
    flush_queued(endpoint, queued).await
}

/// Flushes what a send queued. A send refused because the close has started makes one try
/// to write what is queued instead: a poll that acted on a [`Closer`](crate::Closer)'s request
/// may have queued the close frame without writing it (a receive that had a message buffered,
/// say), and a caller that gives up on the error must leave it written. One try, not a wait,
/// as in `Core::poll_room`.
pub(crate) async fn flush_queued<E: Endpoint>(
    endpoint: &mut E,
    queued: Result<(), Error>,
) -> Result<(), Error> {
    match queued {
        Ok(()) => flush(endpoint).await,
        Err(Error::AlreadyClosed) => {
            poll_fn(|cx| {
                let _ = poll_flush(endpoint, cx);
                Poll::Ready(())
            })
            .await;
            Err(Error::AlreadyClosed)
        }
        Err(err) => Err(err),
    }
}

pub(crate) async fn feed<E: Endpoint>(endpoint: &mut E, message: Message) -> Result<(), Error> {
    // The common case, room in the write buffer, needs no poll: the reply of an echo is
    // queued here and written by the next receive.
    if !endpoint.with_core(|core| core.has_room()) {
        write_bounded(endpoint, poll_room).await?;
    }
    queue(endpoint, message)
}

/// The `Sink`'s `poll_ready`: as [`feed`], no poll while the write buffer has room, so that a
/// message fed through the `Sink` and one fed through `feed` meet the same fate (a `Closer`'s
/// request not yet seen: the message goes out, then the close).
pub(crate) fn poll_ready<E: Endpoint>(
    endpoint: &mut E,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Error>> {
    if endpoint.with_core(|core| core.has_room()) {
        return Poll::Ready(Ok(()));
    }
    poll_room(endpoint, cx)
}

/// Receives until the transport is closed, dropping what arrives (the closing handshake).
pub(crate) async fn drain<E: Endpoint>(endpoint: &mut E) {
    while poll_fn(|cx| poll_recv(endpoint, cx, Mode::Whole))
        .await
        .is_some()
    {}
}
