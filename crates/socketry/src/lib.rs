//! socketry: a fast, complete, RFC 6455-exact WebSocket server and client for tokio.
//!
//! A server and a client, talking on loopback (this example runs as a test):
//!
//! ```
//! use socketry::{CloseCode, Message};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Server: accept on a TCP listener and echo every data message.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((stream, _)) = listener.accept().await {
//!         tokio::spawn(async move {
//!             let Ok(mut ws) = socketry::accept(stream).await else { return };
//!             while let Some(Ok(message)) = ws.recv().await {
//!                 if message.is_text() || message.is_binary() {
//!                     let _ = ws.send(message).await;
//!                 }
//!             }
//!         });
//!     }
//! });
//!
//! // Client.
//! let (mut ws, _response) = socketry::connect(&format!("ws://{addr}/chat")).await?;
//! ws.send("hello").await?;
//! assert_eq!(ws.recv().await.unwrap()?, Message::text("hello"));
//! ws.close(CloseCode::NORMAL, "bye").await?;
//! assert!(ws.recv().await.is_none()); // closed cleanly: not an error
//! # Ok(()) }
//! ```
//!
//! # The API at a glance
//!
//! | need | use |
//! |---|---|
//! | accept on a raw stream | [`accept`], [`Acceptor`] (subprotocols, handshake timeout, headers) |
//! | upgrade a hyper 1.x request | [`Acceptor::upgrade`](crate::Acceptor) (feature `hyper`; HTTP/2 extended CONNECT with `http2`) |
//! | serve a port: TLS, HTTP/2, a task per handshake | [`Listener`] → [`Incoming`]; certificates: `tls` (feature `rustls`) |
//! | WebSockets over HTTP/2 (RFC 8441) | `Connector::http2`, `Listener::http2`, `Http2Config` (feature `http2`) |
//! | connect | [`connect`], [`Connector`] (headers, cookies, subprotocols, proxy, TLS, timeouts) |
//! | receive / send | [`WebSocket::recv`], [`WebSocket::send`], [`feed`](WebSocket::feed) + [`flush`](WebSocket::flush) |
//! | receive without a copy, answer in place | [`WebSocket::recv_with`] ([`MessageRef`], [`Replies`]) |
//! | `Stream` + `Sink` | [`WebSocket`], [`WebSocketReader`], [`WebSocketWriter`] implement them |
//! | two tasks | [`WebSocket::split`] → [`WebSocketReader`] + [`WebSocketWriter`], plus [`ControlHandle`]s |
//! | close from another task, unsplit | [`WebSocket::closer`] → [`Closer`] |
//! | huge messages | [`WebSocket::next_reader`] ([`MessageReader`]), [`WebSocket::message_writer`] ([`MessageWriter`]) |
//! | broadcast | [`PreparedMessage`] + [`WebSocket::send_prepared`] |
//! | limits, timeouts, keepalive, buffers | [`WebSocketConfig`] |
//! | ping / pong / close handlers | [`WebSocket::set_ping_handler`], [`set_pong_handler`](WebSocket::set_pong_handler), [`set_close_handler`](WebSocket::set_close_handler) (also on [`WebSocketReader`]) |
//! | lines over messages | [`WebSocket::join_messages`] |
//! | JSON | `send_json` / `recv_json` (feature `json`) |
//! | close codes, gorilla's helpers | [`CloseCode`], [`CloseError`], [`is_close_error`], [`is_unexpected_close_error`], [`format_close_message`] |
//!
//! # Concurrency
//!
//! A [`WebSocket`] belongs to one task (`&mut self`). [`split`](WebSocket::split) gives one
//! reader and one writer for two tasks, and [`ControlHandle`]s send pings and the close frame
//! from anywhere, between the frames of a message being written. The reader answers pings and
//! completes the closing handshake, so keep it polled: a close started by the writer or a
//! handle wakes the reader, which gives up on a silent peer after the close timeout (a writer
//! whose reader was dropped completes the handshake in its own
//! [`close`](WebSocketWriter::close)). The halves share the connection under a lock held for
//! one poll; handlers run after it is released, so they may use the handles. None of this can
//! be misused at run time: the types allow one reader and one writer.
//!
//! # Features
//!
//! - `rustls` (default): `wss://` client connections through rustls and the webpki roots, and
//!   server-side TLS (`tls`, [`Listener`]).
//! - `hyper`: [`upgrade`] hyper 1.x requests into WebSocket connections.
//! - `http2`: WebSockets over HTTP/2 (RFC 8441) in both roles: the client shares one
//!   connection among its sockets to an origin, the [`Listener`] takes extended CONNECT
//!   streams, and `upgrade` takes hyper's HTTP/2 requests.
//! - `json`: `send_json` / `recv_json` of serde values.
//!
//! # Design
//!
//! The protocol lives in the sans-I/O crate [`socketry_proto`]; this crate only moves bytes
//! between a transport and it. Limits are on by default (64 MiB per message, 16 MiB per frame);
//! every protocol violation sends the close code RFC 6455 requires before it is returned as an
//! error; the closing handshake is bounded by a timeout (10 s) and always closes the transport.
//! Writes are bounded (128 KiB queued by default): sending waits for the peer instead of
//! growing memory. Receiving goes on while the queue is full (two peers that both send while
//! both receive never deadlock), and above the bound pongs coalesce to the latest ping's
//! (RFC 6455 §5.5.3), so a ping flood cannot grow the queue either. Every deadline (close
//! timeout, keepalive, read and write deadlines) lives in the protocol core
//! ([`proto::Connection::poll_timeout`]); each task that waits on them owns one timer. Idle
//! connections hold no buffers: read and write buffers come from a per-thread pool while bytes
//! flow.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

#[macro_use]
mod forward_io;
mod client;
mod close_error;
mod closer;
mod config;
mod core;
mod endpoint;
mod error;
mod handlers;
mod handshake_io;
#[cfg(feature = "http2")]
mod http2;
#[cfg(feature = "json")]
mod json;
mod listener;
mod message_io;
mod pool;
mod proxy;
mod replies;
mod server;
mod split;
mod stream;
#[cfg(any(feature = "rustls", feature = "http2"))]
mod time;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod tls;
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub mod upgrade;
mod websocket;

pub use bytes::Bytes;
#[cfg(feature = "http2")]
pub use client::Http2;
pub use client::{Connector, connect};
pub use close_error::{
    CloseError, format_close_message, is_close_error, is_unexpected_close_error,
};
pub use closer::Closer;
pub use config::{MAX_READ_BUFFER_SIZE, PRODUCTION_KEEPALIVE, WebSocketConfig};
pub use error::{Error, MAX_ERROR_BODY, Timeout, UrlError};
pub use handlers::{CloseHandler, PingHandler, PongHandler};
pub use http;
#[cfg(feature = "http2")]
#[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
pub use http2::{H2Stream, Http2Config, peek_http2_preface};
pub use listener::{Incoming, Listener};
pub use message_io::{DEFAULT_FRAGMENT_SIZE, JoinedMessages, MessageReader, MessageWriter};
pub use replies::Replies;
pub use server::{Acceptor, ProtocolOrder, accept};
pub use socketry_proto::extensions::deflate::DeflateConfig;
pub use socketry_proto::handshake::{
    OriginPolicy, is_upgrade_request as is_websocket_upgrade,
    requested_subprotocols as subprotocols,
};
pub use socketry_proto::{
    self as proto, CloseCode, CloseFrame, HandshakeError, Message, MessageRef, OpCode,
    PreparedMessage, ProtocolError, Role, State, Utf8Bytes,
};
pub use split::{ControlHandle, WebSocketReader, WebSocketWriter};
pub use stream::{MaybeTlsStream, ServerStream};
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub use upgrade::is_websocket_request;
pub use websocket::WebSocket;
