//! The operations every public connection type shares, written once over [`Endpoint`]: the
//! whole connection runs them on its own state, the split halves under their lock.

use std::{
    future::{Future, poll_fn},
    task::{Context, Poll},
    time::Duration,
};

use socketry_proto::{Incoming, Message};

use crate::{
    Error,
    core::{Core, Io, Mode},
};

/// Gives access to the connection state and its transport for one poll.
pub(crate) trait Endpoint {
    /// Runs `f` on the core and the transport.
    fn poll_with<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Core, &mut dyn Io, &mut Context<'_>) -> R,
    ) -> R;

    /// Runs `f` on the core alone (no I/O).
    fn with_core<R>(&mut self, f: impl FnOnce(&mut Core) -> R) -> R;

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

/// Bounds `future` by `timeout`, if there is one.
pub(crate) async fn bounded<T>(
    timeout: Option<Duration>,
    what: &'static str,
    future: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match timeout {
        Some(timeout) => tokio::time::timeout(timeout, future)
            .await
            .map_err(|_| Error::Timeout(what))?,
        None => future.await,
    }
}

pub(crate) fn poll_recv<E: Endpoint>(
    endpoint: &mut E,
    cx: &mut Context<'_>,
    mode: Mode,
) -> Poll<Option<Result<Incoming, Error>>> {
    endpoint.poll_with(cx, |core, io, cx| core.poll_recv(io, cx, mode))
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

pub(crate) async fn recv<E: Endpoint>(endpoint: &mut E) -> Option<Result<Message, Error>> {
    let timeout = endpoint.timeouts().0;
    let next = poll_fn(|cx| poll_recv_message(endpoint, cx));
    match timeout {
        Some(timeout) => tokio::time::timeout(timeout, next)
            .await
            .unwrap_or(Some(Err(Error::Timeout("read")))),
        None => next.await,
    }
}

pub(crate) fn write_timeout<E: Endpoint>(endpoint: &mut E) -> Option<Duration> {
    endpoint.timeouts().1
}

pub(crate) fn poll_flush<E: Endpoint>(
    endpoint: &mut E,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Error>> {
    endpoint.poll_with(cx, |core, io, cx| {
        core.poll_write_queued(io, cx).map_err(Error::from)
    })
}

pub(crate) fn poll_room<E: Endpoint>(
    endpoint: &mut E,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Error>> {
    endpoint.poll_with(cx, |core, io, cx| core.poll_room(io, cx))
}

/// Queues without writing.
pub(crate) fn queue<E: Endpoint>(endpoint: &mut E, message: Message) -> Result<(), Error> {
    endpoint.with_core(|core| core.queue(message))
}

pub(crate) async fn flush<E: Endpoint>(endpoint: &mut E) -> Result<(), Error> {
    let timeout = write_timeout(endpoint);
    bounded(timeout, "write", poll_fn(|cx| poll_flush(endpoint, cx))).await
}

pub(crate) async fn send<E: Endpoint>(endpoint: &mut E, message: Message) -> Result<(), Error> {
    queue(endpoint, message)?;
    flush(endpoint).await
}

pub(crate) async fn feed<E: Endpoint>(endpoint: &mut E, message: Message) -> Result<(), Error> {
    let timeout = write_timeout(endpoint);
    bounded(timeout, "write", poll_fn(|cx| poll_room(endpoint, cx))).await?;
    queue(endpoint, message)
}
