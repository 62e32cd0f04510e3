//! The writer task of an attached connection: it drains the member's queue into the socket.

use std::{collections::VecDeque, future::poll_fn, sync::Arc};

use socketry::{CloseCode, WebSocketWriter};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{ClientInfo, Hub, Member, hub::MemberState, outbox::Drained};

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
        let state = self.register(info);
        tokio::spawn(pump(self.clone(), state.clone(), writer));
        self.member(state)
    }
}

async fn pump<S>(hub: Hub, state: Arc<MemberState>, mut writer: WebSocketWriter<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut batch = VecDeque::new();
    let slow = loop {
        match poll_fn(|cx| state.outbox.poll_drain(cx, &mut batch)).await {
            Drained::Batch => {}
            Drained::Slow => break true,
            Drained::Closed => break false,
        }
        let written = {
            let write = writer.send_prepared_batch(batch.iter().map(|message| &**message));
            tokio::select! {
                biased;
                // The socket may be stuck behind a peer that does not read: overflow must end
                // the wait, not wait for it.
                () = poll_fn(|cx| state.outbox.poll_slow(cx)) => None,
                result = write => Some(result),
            }
        };
        state.outbox.written(&mut batch);
        match written {
            None => break true,
            Some(Ok(())) => {}
            Some(Err(err)) => {
                tracing::debug!(conn = %state.id, error = %err, "hub: write failed");
                break false;
            }
        }
    };
    if slow {
        let handle = writer.handle();
        handle.set_close_timeout(hub.config().slow_close_timeout);
        let _ = handle.start_close(SLOW_CLOSE_CODE, SLOW_CLOSE_REASON);
    }
    hub.remove_and_settle(&state);
}
