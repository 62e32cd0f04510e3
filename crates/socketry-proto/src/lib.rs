//! The sans-I/O core of [socketry](https://docs.rs/socketry): RFC 6455 as bytes in, events and
//! bytes out. No sockets, no runtime, no clocks.
//!
//! ```
//! use socketry_proto::{Config, Connection, Message, Role};
//!
//! let mut client = Connection::new(Role::Client, Config::default());
//! let mut server = Connection::new(Role::Server, Config::default());
//!
//! client.send(Message::text("hello")).unwrap();
//! let wire = client.outgoing().chunk().to_vec();
//! client.outgoing_mut().advance(wire.len());
//!
//! server.receive_data(&wire);
//! assert_eq!(server.next_message().unwrap(), Some(Message::text("hello")));
//! ```
//!
//! # Layout
//!
//! - [`frame`]: headers, the incremental [`frame::Decoder`], encoding;
//! - [`mask`]: payload masking with a word-at-a-time fast path;
//! - [`utf8`]: incremental UTF-8 validation that fails fast across fragments;
//! - [`close`]: close codes and payloads;
//! - [`handshake`]: key/accept computation, request and response validation;
//! - [`extensions`]: permessage-deflate (RFC 7692) negotiation and codec;
//! - [`Connection`]: the state machine that ties them together, with message limits.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub mod close;
mod connection;
mod error;
pub mod extensions;
pub mod frame;
pub mod handshake;
pub mod mask;
mod message;
mod outgoing;
mod prepared;
mod role;
mod timers;
pub mod utf8;
mod utf8_bytes;

pub use bytes::Bytes;
pub use close::{CloseCode, CloseFrame};
pub use connection::{
    Config, Connection, DEFAULT_CLOSE_TIMEOUT, DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_MESSAGE_SIZE,
    Fragment, Incoming, Replies, State,
};
pub use error::{Error, ProtocolError};
pub use frame::OpCode;
pub use handshake::HandshakeError;
pub use message::{Message, MessageRef};
pub use outgoing::Outgoing;
pub use prepared::PreparedMessage;
pub use role::Role;
pub use timers::Expired;
pub use utf8_bytes::Utf8Bytes;
