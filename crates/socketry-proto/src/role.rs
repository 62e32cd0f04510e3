//! Which end of the connection we are.

/// The role of an endpoint: it decides who masks (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The endpoint that opened the connection; it masks every frame it sends.
    Client,
    /// The endpoint that accepted the connection; it never masks.
    Server,
}

impl Role {
    /// Whether frames received by this role must be masked.
    pub fn expects_masked_frames(self) -> bool {
        self == Self::Server
    }
}
