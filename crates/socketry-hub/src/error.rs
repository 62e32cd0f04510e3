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
    /// The broker could not carry the publication or the presence change.
    #[error("broker: {0}")]
    Broker(#[source] Box<dyn std::error::Error + Send + Sync>),
}
