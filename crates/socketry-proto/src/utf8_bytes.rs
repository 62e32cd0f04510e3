//! [`Utf8Bytes`]: a shared, cheaply cloned string, the payload of a text message.

#![allow(unsafe_code)] // the one unsafe block below: a `str` view of bytes validated at construction

use std::{fmt, ops::Deref};

use bytes::Bytes;

/// Reference-counted bytes that are guaranteed to be valid UTF-8.
///
/// Text messages carry their payload as `Utf8Bytes`, so receiving one never copies it and
/// cloning it for a broadcast costs a reference count.
///
/// # Examples
///
/// ```
/// use socketry_proto::Utf8Bytes;
///
/// let text = Utf8Bytes::from("hello");
/// assert_eq!(&*text, "hello");
/// assert!(Utf8Bytes::try_from(bytes::Bytes::from_static(&[0xff])).is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// An empty string.
    pub const fn new() -> Self {
        Self(Bytes::new())
    }

    /// A string from a `'static` str, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// The string as `&str`.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor of `Utf8Bytes` either takes a `str`/`String` (valid UTF-8 by
        // the type system) or validates the bytes (`TryFrom<Bytes>`, `from_validated` called only
        // after the connection's UTF-8 validator accepted the whole message), and the inner
        // `Bytes` is never exposed mutably. So the bytes are valid UTF-8 here.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The underlying bytes, by reference.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Wraps bytes the caller has just validated as a whole.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Self(bytes)
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(s: Utf8Bytes) -> Self {
        s.0
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = std::str::Utf8Error;
    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Self(bytes))
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_constructor_yields_the_same_str() {
        let s = "grüße, 世界";
        let all = [
            Utf8Bytes::from(s),
            Utf8Bytes::from(s.to_owned()),
            Utf8Bytes::try_from(Bytes::from(s)).unwrap(),
            Utf8Bytes::from_validated(Bytes::from(s)),
        ];
        for text in &all {
            assert_eq!(text.as_str(), s);
            assert_eq!(text.len(), s.len());
        }
    }

    #[test]
    fn invalid_bytes_are_refused() {
        assert!(Utf8Bytes::try_from(Bytes::from_static(b"ok\xc3")).is_err());
    }
}
