//! socketry: a fast, complete, RFC 6455-exact WebSocket server and client for tokio.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Server: accept on a TCP listener and echo.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! tokio::spawn(async move {
//!     while let Ok((stream, _)) = listener.accept().await {
//!         tokio::spawn(async move {
//!             let Ok(mut ws) = socketry::accept(stream).await else { return };
//!             while let Some(Ok(msg)) = ws.recv().await {
//!                 if msg.is_text() || msg.is_binary() {
//!                     let _ = ws.send(msg).await;
//!                 }
//!             }
//!         });
//!     }
//! });
//!
//! // Client.
//! let (mut ws, _) = socketry::connect("ws://127.0.0.1:9001").await?;
//! ws.send("hello").await?;
//! assert_eq!(ws.recv().await.unwrap()?, socketry::Message::text("hello"));
//! ws.close(socketry::CloseCode::NORMAL, "bye").await?;
//! # Ok(()) }
//! # let _ = run;
//! ```
//!
//! # Features
//!
//! - `rustls` (default): `wss://` client connections through rustls and the webpki roots.
//! - `hyper`: [`upgrade`] hyper 1.x requests into WebSocket connections.
//! - `json`: `send_json` / `recv_json` of serde values.
//!
//! # Design
//!
//! The protocol lives in the sans-I/O crate [`socketry_proto`]; this crate only moves bytes
//! between a transport and it. Limits are on by default (64 MiB per message, 16 MiB per frame);
//! every protocol violation sends the close code RFC 6455 requires before it is returned as an
//! error; the closing handshake is bounded by a timeout (10 s) and always closes the transport.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod client;
mod close_error;
mod config;
mod core;
mod endpoint;
mod error;
mod handshake_io;
#[cfg(feature = "json")]
mod json;
mod message_io;
mod pool;
mod proxy;
mod server;
mod split;
mod stream;
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub mod upgrade;
mod websocket;

pub use bytes::Bytes;
pub use client::{Connector, connect};
pub use close_error::{
    CloseError, format_close_message, is_close_error, is_unexpected_close_error,
};
pub use config::WebSocketConfig;
pub use error::Error;
pub use http;
pub use message_io::{DEFAULT_FRAGMENT_SIZE, JoinedMessages, MessageReader, MessageWriter};
pub use server::{Acceptor, accept};
pub use socketry_proto::handshake::{
    is_upgrade_request as is_websocket_upgrade, requested_subprotocols as subprotocols,
};
pub use socketry_proto::{
    self as proto, CloseCode, CloseFrame, HandshakeError, Message, OpCode, PreparedMessage,
    ProtocolError, Role, State, Utf8Bytes,
};
pub use split::{ControlHandle, WebSocketReader, WebSocketWriter};
pub use stream::MaybeTlsStream;
pub use websocket::WebSocket;
