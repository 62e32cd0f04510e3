//! Rooms, presence and broadcast for [socketry] WebSockets, fast and bounded when some
//! clients are slow.
//!
//! A [`Hub`] holds the connections of a process. Each connection enters it with
//! [`Hub::attach`], which takes the connection's writer half and returns a [`Member`]: the
//! member joins rooms, publishes, and sends; the hub's writer task drains the member's queue
//! to its socket, every message queued since the last write in one write.
//!
//! - **Rooms** are named by [`RoomName`]s (at most [`MAX_ROOM_NAME_LEN`] bytes). A connection
//!   leaves every room when its [`Member`] is dropped, when its writer fails, or when it is
//!   disconnected as slow: no entry outlives its connection.
//! - **Publishing** to a room, to a room but one connection, or to one connection frames the
//!   message once ([`socketry::PreparedMessage`], one compressed variant per window size that
//!   members negotiated); each member costs a reference count and a queue slot. Messages one
//!   publisher publishes to a room reach every member in publication order.
//! - **Slow consumers**: each member's queue is bounded in bytes and in messages
//!   ([`HubConfig`]: 1 MiB and 4096 by default). A publication that does not fit disconnects
//!   the member with [`SLOW_CLOSE_CODE`] (3008, the default) or is dropped for it
//!   ([`Overflow::Drop`], per publication). A slow member never delays the others, and its
//!   queue holds at most its bound in frames (a message sent to one member only, rather than
//!   shared, costs about twice its frame: the message and its frame).
//!   [`Member::buffered_amount`] and [`Hub::stats`] show where things stand.
//! - **Compression**: a room's message is compressed once per window size when the server
//!   side negotiates `server_no_context_takeover` (`DeflateConfig::server_no_context_takeover`);
//!   with context takeover each connection must compress its own copy, in its writer.
//! - **Presence**: the members of a room with what the application said about them
//!   ([`ClientInfo`]), join and leave events for rooms that ask ([`RoomOptions`]), versioned so
//!   that a client combines them with a snapshot ([`Hub::local_presence`]) exactly, and a
//!   member count that is one atomic read ([`Hub::room_size`]). Events reach this node's
//!   members; carrying them between nodes is the broker's part (next to come).
//! - **Observability**: `tracing` events for joins, leaves and slow disconnects; gauges and
//!   counters through the [`metrics`](https://docs.rs/metrics) facade (names in
//!   [`metric_names`]), so any exporter plugs in. The hub takes its metric handles when it is
//!   built: install the recorder (exporter) before.
//! - **Across nodes**: publishing goes through a [`Broker`] and presence through a
//!   [`Presence`] store; the defaults ([`LocalBroker`], [`LocalPresence`]) are one process.
//!   `RedisBroker` (feature `redis`) and `NatsBroker` (feature `nats`) carry publications
//!   between nodes, one subscription per room per node, bounded while the broker is away;
//!   `RedisPresence` (feature `redis`) keeps every node's members in Redis under leases and
//!   sends join and leave events to every node. What travels, in which order, and what
//!   happens when the broker goes away: `docs/scale-out.md` in the repository.
//!
//! # Examples
//!
//! A broadcast server: every text message a client sends reaches every client.
//!
//! ```no_run
//! use socketry_hub::{ClientInfo, Hub};
//! use tokio::net::TcpListener;
//!
//! # async fn run() -> std::io::Result<()> {
//! let hub = Hub::default();
//! let listener = TcpListener::bind("127.0.0.1:9001").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     let hub = hub.clone();
//!     tokio::spawn(async move {
//!         let Ok(ws) = socketry::accept(tcp).await else { return };
//!         let (mut reader, writer) = ws.split();
//!         let member = hub.attach(writer, ClientInfo::default());
//!         member.join("all").expect("a valid room name");
//!         while let Some(Ok(message)) = reader.recv().await {
//!             if message.is_text() {
//!                 let _ = member.publish("all", message);
//!             }
//!         }
//!     });
//! }
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

mod broker;
mod cluster;
mod error;
mod history;
mod hub;
mod id;
mod member;
mod metrics;
#[cfg(feature = "nats")]
mod nats_broker;
mod options;
mod outbox;
mod presence;
mod pump;
mod recovery;
#[cfg(feature = "redis")]
mod redis_broker;
#[cfg(feature = "redis")]
mod redis_presence;
mod room_name;
mod rooms;

pub use broker::{Broker, LocalBroker, Publication};
pub use cluster::{BrokerStats, PublishBuffer};
pub use error::HubError;
pub use history::{History, HistoryRead, LostReason, Position, PositionFormatter, Recovery};
pub use hub::{Delivery, Hub, HubBuilder, HubStats, Outgoing, PublishReport, WeakHub};
pub use id::{ConnId, NodeId};
pub use member::{Member, WriterHandle};
pub use metrics::names as metric_names;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use nats_broker::{NatsBroker, NatsBrokerBuilder};
pub use options::{EventFormatter, HubConfig, Overflow, RoomOptions};
pub use presence::{
    BoxFuture, ClientInfo, LocalPresence, Presence, PresenceEntry, PresenceEvent, PresenceKind,
};
pub use pump::{SLOW_CLOSE_CODE, SLOW_CLOSE_REASON};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_broker::{RedisBroker, RedisBrokerBuilder};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_presence::{PresenceStats, PresenceStatsHandle, RedisPresence, RedisPresenceBuilder};
pub use room_name::{MAX_ROOM_NAME_LEN, RoomName};
pub use rooms::PresenceSnapshot;
pub use socketry;
