//! [`Conn`]: the connection a controller serves, with Goyave's closing methods.

use std::{
    ops::{Deref, DerefMut},
    time::Duration,
};

use socketry::{CloseCode, Error, Message, WebSocket, upgrade::Upgraded};
use tokio::sync::watch;

/// The close reason of a normal close (Goyave's `NormalClosureMessage`).
pub const NORMAL_CLOSURE_MESSAGE: &str = "Server closed connection";
/// The close reason of a close after a server error, outside debug mode.
pub const INTERNAL_ERROR_MESSAGE: &str = "Internal server error";

/// A WebSocket connection served by a [`Controller`](crate::Controller).
///
/// It dereferences to [`socketry::WebSocket`] for `recv`, `send`, `split` and the rest, and adds
/// Goyave's closing methods. All of them are idempotent, wait for the peer's close frame up to
/// the close-handshake timeout, and then close the socket, always.
#[derive(Debug)]
pub struct Conn {
    ws: WebSocket<Upgraded>,
    debug: bool,
    closed: bool,
    shutdown: Option<watch::Receiver<bool>>,
}

impl Conn {
    pub(crate) fn new(
        ws: WebSocket<Upgraded>,
        debug: bool,
        shutdown: Option<watch::Receiver<bool>>,
    ) -> Self {
        Self {
            ws,
            debug,
            closed: false,
            shutdown,
        }
    }

    /// Receives the next message, as [`WebSocket::recv`], and ends (`None`) when the server
    /// shuts down: the connection is then closed with 1001 "Going Away" first.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`WebSocket::recv`].
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        if let Some(signal) = &mut self.shutdown {
            let shutting_down = tokio::select! {
                biased;
                signalled = signal.wait_for(|down| *down) => signalled.is_ok(),
                message = self.ws.recv() => return message,
            };
            if shutting_down {
                let _ = self.close(CloseCode::GOING_AWAY, "Going Away").await;
                return None;
            }
        }
        self.ws.recv().await
    }

    /// Performs the closing handshake with `code` and `reason` (truncated on a char boundary
    /// to 123 bytes). Idempotent: only the first call sends a close frame.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a code that may not be sent.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.ws.close(code, reason).await
    }

    /// Closes with 1000 "Server closed connection".
    ///
    /// # Errors
    ///
    /// None in practice; the signature matches [`close`](Self::close).
    pub async fn close_normal(&mut self) -> Result<(), Error> {
        self.close(CloseCode::NORMAL, NORMAL_CLOSURE_MESSAGE).await
    }

    /// Closes with 1011 "Internal server error", or in debug mode with the error's text.
    ///
    /// # Errors
    ///
    /// None in practice; the signature matches [`close`](Self::close).
    pub async fn close_with_error(&mut self, err: impl std::fmt::Display) -> Result<(), Error> {
        let reason = if self.debug {
            err.to_string()
        } else {
            INTERNAL_ERROR_MESSAGE.to_owned()
        };
        self.close(CloseCode::INTERNAL_ERROR, &reason).await
    }

    /// How long closing waits for the peer's close frame. The default value is 10 seconds.
    pub fn close_handshake_timeout(&self) -> Duration {
        self.ws.config().get_close_timeout()
    }

    /// Changes the close-handshake timeout of this connection.
    pub fn set_close_handshake_timeout(&mut self, timeout: Duration) {
        self.ws.set_close_timeout(timeout);
    }

    /// Whether a closing method ran, or the connection ended.
    pub fn is_closed(&self) -> bool {
        self.closed || self.ws.state() == socketry::State::Closed
    }
}

impl Deref for Conn {
    type Target = WebSocket<Upgraded>;
    fn deref(&self) -> &Self::Target {
        &self.ws
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.ws
    }
}
