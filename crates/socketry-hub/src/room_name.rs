//! [`RoomName`]: a checked room name.

use std::{borrow::Borrow, fmt, ops::Deref, sync::Arc};

use crate::HubError;

/// The longest room name, in bytes of UTF-8 (as Centrifugo's channel names).
pub const MAX_ROOM_NAME_LEN: usize = 255;

/// A room's name: 1 to [`MAX_ROOM_NAME_LEN`] bytes of UTF-8 without control characters.
/// Cheap to clone (shared).
///
/// # Examples
///
/// ```
/// use socketry_hub::RoomName;
///
/// let room = RoomName::new("chat:lobby")?;
/// assert_eq!(&*room, "chat:lobby");
/// assert!(RoomName::new("").is_err());
/// assert!(RoomName::new("x".repeat(256)).is_err());
/// # Ok::<(), socketry_hub::HubError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Arc<str>);

impl RoomName {
    /// Checks `name` and makes it a room name.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidRoomName`] if it is empty, longer than [`MAX_ROOM_NAME_LEN`] bytes,
    /// or holds a control character.
    pub fn new(name: impl AsRef<str>) -> Result<Self, HubError> {
        let name = name.as_ref();
        check(name)?;
        Ok(Self(Arc::from(name)))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a room name without allocating.
pub(crate) fn check(name: &str) -> Result<(), HubError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_ROOM_NAME_LEN {
        "longer than 255 bytes"
    } else if name.chars().any(char::is_control) {
        "holds a control character"
    } else {
        return Ok(());
    };
    Err(HubError::InvalidRoomName {
        name: name.chars().take(64).collect(),
        reason,
    })
}

impl Deref for RoomName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for RoomName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for RoomName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for RoomName {
    type Error = HubError;

    fn try_from(name: &str) -> Result<Self, HubError> {
        Self::new(name)
    }
}

impl TryFrom<String> for RoomName {
    type Error = HubError;

    fn try_from(name: String) -> Result<Self, HubError> {
        check(&name)?;
        Ok(Self(Arc::from(name)))
    }
}
