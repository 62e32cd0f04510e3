//! [`ServeError`] and [`PanicError`]: why a controller's `serve` failed.

use std::fmt;

/// A panic caught in `serve` (Goyave's recovery): its message, and a backtrace in debug mode.
#[derive(Debug, Clone)]
pub struct PanicError {
    /// The panic message.
    pub message: String,
    /// Where the connection task stood when the panic was caught, in debug mode.
    pub backtrace: Option<String>,
}

impl fmt::Display for PanicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "panic: {}", self.message)
    }
}

impl std::error::Error for PanicError {}

impl PanicError {
    pub(crate) fn from_payload(payload: &(dyn std::any::Any + Send), debug: bool) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        let backtrace = debug.then(|| std::backtrace::Backtrace::force_capture().to_string());
        Self { message, backtrace }
    }
}

/// Why `serve` failed: the error it returned, or a panic.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// `serve` returned an error; its text.
    Handler(String),
    /// `serve` panicked.
    Panic(PanicError),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Handler(text) => f.write_str(text),
            Self::Panic(panic) => fmt::Display::fmt(panic, f),
        }
    }
}

impl std::error::Error for ServeError {}
