//! [`HubError`].

use crate::ConnId;

/// What went wrong with a hub operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// A room name that [`RoomName::new`](crate::RoomName::new) refuses.
    #[error("invalid room name {name:?}: {reason}")]
    InvalidRoomName {
        /// The name (its first 64 characters).
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The member is in as many rooms as [`HubConfig::max_rooms_per_member`](crate::HubConfig::max_rooms_per_member)
    /// allows.
    #[error("a member may be in at most {limit} rooms")]
    TooManyRooms {
        /// The limit.
        limit: usize,
    },
    /// The connection is no longer in the hub: it ended, or was disconnected as slow.
    #[error("connection {0} is not in the hub")]
    Gone(ConnId),
    /// A control message (ping, pong, close) was given to publish or send: the hub carries
    /// text and binary messages only (a close would reach each member as a close frame).
    #[error("only text and binary messages can be published")]
    ControlMessage,
    /// A message larger than a member's whole queue ([`HubConfig::max_queue_bytes`](crate::HubConfig::max_queue_bytes)):
    /// it could never be queued, and would disconnect every member as slow.
    #[error("a {size}-byte message is larger than the {limit}-byte queue of a member")]
    TooLarge {
        /// The frame's size, in bytes.
        size: usize,
        /// The queue bound, in bytes.
        limit: usize,
    },
    /// The connection refused the operation (an invalid close code, say).
    #[error("connection: {0}")]
    Connection(#[from] socketry::Error),
    /// A position a client sent back that is none (`<offset>:<epoch>`, the epoch 1 to 32
    /// letters and digits).
    #[error("invalid history position {0:?}")]
    InvalidPosition(String),
    /// The broker could not carry the publication or the presence change.
    #[error("broker: {0}")]
    Broker(#[source] Box<dyn std::error::Error + Send + Sync>),
}
