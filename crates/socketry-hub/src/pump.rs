//! The writer task of an attached connection: it drains the member's queue into the socket.

use std::{
    collections::VecDeque,
    future::poll_fn,
    sync::{Arc, atomic::Ordering},
};

use socketry::{CloseCode, WebSocketWriter};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::Instant,
};

use crate::{
    ClientInfo, Hub, Member,
    hub::MemberState,
    outbox::{Drained, Interrupt, release},
};

/// The close code of a member disconnected because its queue overflowed: 3008, as
/// Centrifugo's `DisconnectSlow` (3000–3999 are for libraries, RFC 6455 §7.4.2).
pub const SLOW_CLOSE_CODE: CloseCode = CloseCode::new(3008);
/// The close reason sent with [`SLOW_CLOSE_CODE`].
pub const SLOW_CLOSE_REASON: &str = "slow";

impl Hub {
    /// Adds a connection to the hub and spawns the task that writes its queue to `writer`:
    /// everything queued since the last write goes out in one write (one system call for a
    /// backlog of small messages). Must be called inside a tokio runtime.
    ///
    /// The returned [`Member`] joins rooms and publishes; dropping it takes the connection
    /// out of the hub. Keep reading from the reader half as usual: the peer's close, pings
    /// and keepalive are answered there.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use socketry_hub::{ClientInfo, Hub};
    ///
    /// # async fn run(tcp: tokio::net::TcpStream, hub: Hub) -> Result<(), Box<dyn std::error::Error>> {
    /// let ws = socketry::accept(tcp).await?;
    /// let (mut reader, writer) = ws.split();
    /// let member = hub.attach(writer, ClientInfo::new("alice").with_data(r#"{"role":"admin"}"#));
    /// member.join("admins")?;
    /// while let Some(message) = reader.recv().await {
    ///     let _command = message?; // pings, pongs and the close are answered here
    /// }
    /// # Ok(()) }
    /// ```
    pub fn attach<S>(&self, writer: WebSocketWriter<S>, info: ClientInfo) -> Member
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Outside a runtime this panics here, before the hub has any entry for the connection.
        let runtime = tokio::runtime::Handle::current();
        let state = self.register(info);
        *state.control.lock() = Some(writer.handle());
        runtime.spawn(pump(self.clone(), state.clone(), writer));
        self.member(state)
    }
}

/// How the writer task ended.
enum End {
    /// The member left the hub and its queue is written.
    Left,
    /// The member left the hub and its queue could not be written in time.
    TimedOut,
    /// It overflowed: close it with the slow code.
    Slow,
    /// The connection failed or is closing.
    Failed,
}

async fn pump<S>(hub: Hub, state: Arc<MemberState>, mut writer: WebSocketWriter<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let end = write_queue(&hub, &state, &mut writer).await;
    let handle = writer.handle();
    match end {
        End::Slow => {
            handle.set_close_timeout(hub.config().slow_close_timeout);
            let _ = handle.start_close(SLOW_CLOSE_CODE, SLOW_CLOSE_REASON);
        }
        // A write that failed (a write timeout, say) leaves the connection useless: close it
        // rather than leave its reader running beside a member that is out of the hub.
        End::Failed => {
            let _ = handle.start_close(CloseCode::INTERNAL_ERROR, "write failed");
        }
        End::Left | End::TimedOut => {}
    }
    hub.remove_and_settle(&state);
    // Whatever is still queued will not be written: freed now, not when the last handle on
    // the member goes.
    state.outbox.clear();
    let close = {
        let mut closing = state.closing.lock();
        closing.writer_ended = true;
        closing.frame.take()
    };
    match (end, close) {
        (End::Left | End::TimedOut, Some((code, reason))) => {
            handle.set_close_timeout(hub.config().slow_close_timeout);
            let _ = handle.start_close(code, &reason);
        }
        // The peer does not take what it is sent: close it, briefly, rather than leave the
        // socket and the batch in its buffer to whoever holds the reader.
        (End::TimedOut, None) => {
            handle.set_close_timeout(hub.config().slow_close_timeout);
            let _ = handle.start_close(CloseCode::GOING_AWAY, "not reading");
        }
        _ => {}
    }
    drop(writer);
    drop(state.control.lock().take());
    state.writer_done.store(true, Ordering::Release);
    state.writer_done_notify.notify_waiters();
}

/// Writes the member's queue until it leaves, overflows, or the connection fails. Once the
/// member left, what remains gets `slow_close_timeout` to go out: a peer that stopped reading
/// must not keep the task, its socket and its queue forever.
async fn write_queue<S>(hub: &Hub, state: &MemberState, writer: &mut WebSocketWriter<S>) -> End
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut batch = VecDeque::new();
    // The batch last written: the next drain retires it from the bounds, and it is freed
    // right after, outside the queue's lock (and before any wait for more).
    let mut spent = VecDeque::new();
    let mut deadline: Option<Instant> = None;
    loop {
        let drained = poll_fn(|cx| {
            let drained = state.outbox.poll_drain(cx, &mut batch);
            release(&mut spent);
            drained
        });
        match drained.await {
            Drained::Batch => {}
            Drained::Slow => return End::Slow,
            Drained::Closed => return End::Left,
        }
        let written = {
            let write = writer.send_prepared_batch(batch.iter().map(|message| &**message));
            tokio::pin!(write);
            loop {
                tokio::select! {
                    biased;
                    // First: a write that completes at once (the usual case) needs no look at
                    // the queue's state.
                    result = &mut write => break Ok(result),
                    // The socket may be stuck behind a peer that does not read: overflow and
                    // departure must end the wait, not wait for it.
                    interrupt = poll_fn(|cx| state.outbox.poll_interrupt(cx)), if deadline.is_none() => {
                        match interrupt {
                            Interrupt::Slow => break Err(End::Slow),
                            Interrupt::Closed => {
                                // A timeout too large for the clock means no deadline.
                                deadline = Instant::now()
                                    .checked_add(hub.config().slow_close_timeout)
                                    .or_else(|| Some(far_future()));
                            }
                        }
                    }
                    () = sleep_until(deadline), if deadline.is_some() => break Err(End::TimedOut),
                }
            }
        };
        match written {
            Ok(Ok(())) => std::mem::swap(&mut batch, &mut spent),
            Ok(Err(err)) => {
                state.outbox.written(&mut batch);
                tracing::debug!(conn = %state.id, error = %err, "hub: write failed");
                return End::Failed;
            }
            Err(end) => {
                state.outbox.written(&mut batch);
                return end;
            }
        }
    }
}

/// About 30 years from now: a deadline that does not come.
fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400 * 365 * 30)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
