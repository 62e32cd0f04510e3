//! The application's ping, pong and close handlers (gorilla's `SetPingHandler`,
//! `SetPongHandler`, `SetCloseHandler`). They run in the task that receives, after the
//! connection's state was released: never under a lock of ours, so a handler may use the
//! connection's [`ControlHandle`](crate::ControlHandle)s.

use std::fmt;

use bytes::Bytes;
use socketry_proto::{CloseFrame, Message};

/// Decides the pong for a ping: `Some(payload)` to answer, `None` not to.
pub type PingHandler = Box<dyn FnMut(&Bytes) -> Option<Bytes> + Send>;
/// Sees every pong.
pub type PongHandler = Box<dyn FnMut(&Bytes) + Send>;
/// Decides the reply to the peer's close frame (`None`: a close without status).
pub type CloseHandler = Box<dyn FnMut(Option<&CloseFrame>) -> Option<CloseFrame> + Send>;

/// The handlers of one connection; they travel with the receiving half.
#[derive(Default)]
pub(crate) struct Handlers {
    pub(crate) ping: Option<PingHandler>,
    pub(crate) pong: Option<PongHandler>,
    pub(crate) close: Option<CloseHandler>,
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handlers")
            .field("ping", &self.ping.is_some())
            .field("pong", &self.pong.is_some())
            .field("close", &self.close.is_some())
            .finish()
    }
}

impl Handlers {
    /// Runs the ping or pong handler on a received control message; returns the pong the
    /// ping handler chose, to queue.
    pub(crate) fn on_control(&mut self, message: &Message) -> Option<Bytes> {
        match message {
            Message::Ping(payload) => self.ping.as_mut().and_then(|handler| handler(payload)),
            Message::Pong(payload) => {
                if let Some(handler) = &mut self.pong {
                    handler(payload);
                }
                None
            }
            _ => None,
        }
    }

    /// The reply to the peer's close: the close handler's, or the peer's code echoed.
    pub(crate) fn close_reply(&mut self, frame: Option<&CloseFrame>) -> Option<CloseFrame> {
        match &mut self.close {
            Some(handler) => handler(frame),
            None => frame.map(|c| CloseFrame::new(c.code, "")),
        }
    }
}
