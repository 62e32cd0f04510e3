//! [`ServeError`], [`PanicError`] and [`UpgradeError`]: why a controller's `serve` failed, and
//! why an upgrade was refused.

use std::{any::Any, backtrace::Backtrace, cell::RefCell, fmt, sync::Once};

use http::StatusCode;
use socketry::HandshakeError;

/// A panic caught in `serve` (Goyave's recovery): its message, and a backtrace in debug mode.
#[derive(Debug, Clone)]
pub struct PanicError {
    /// The panic message.
    pub message: String,
    /// Where the panic happened (captured by a panic hook at the panic, not where it was
    /// caught), in debug mode.
    pub backtrace: Option<String>,
}

impl fmt::Display for PanicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "panic: {}", self.message)
    }
}

impl std::error::Error for PanicError {}

thread_local! {
    /// Whether a panic on this thread now happens inside a debug-mode `serve`.
    static CAPTURING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The backtrace the hook took at the last such panic.
    static LAST_BACKTRACE: RefCell<Option<Backtrace>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records the backtrace of panics inside debug-mode
/// controllers, then runs the hook that was installed before it.
pub(crate) fn install_backtrace_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(std::cell::Cell::get) {
                let backtrace = Backtrace::force_capture();
                LAST_BACKTRACE.with(|last| *last.borrow_mut() = Some(backtrace));
            }
            previous(info);
        }));
    });
}

/// Runs `poll` with backtrace capture on for this thread (the controller's poll: a panic in
/// it unwinds on this thread, through the hook, to the `catch_unwind` around it).
pub(crate) fn capturing<T>(poll: impl FnOnce() -> T) -> T {
    /// Restores the flag also when the poll panics (the unwind passes through here).
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            CAPTURING.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CAPTURING.with(|c| c.replace(true)));
    poll()
}

impl PanicError {
    pub(crate) fn from_payload(payload: &(dyn Any + Send), debug: bool) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        let recorded = LAST_BACKTRACE.with(|last| last.borrow_mut().take());
        let backtrace = debug.then(|| {
            recorded
                .unwrap_or_else(Backtrace::force_capture)
                .to_string()
        });
        Self { message, backtrace }
    }
}

/// A controller's error, kept whole: shown, debugged, and downcast back with
/// [`ServeError::downcast_ref`].
pub trait HandlerError: fmt::Display + fmt::Debug + Send + 'static {
    /// The error as `Any`, to downcast.
    fn as_any(&self) -> &dyn Any;
}

impl<E: fmt::Display + fmt::Debug + Send + 'static> HandlerError for E {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Why `serve` failed: the error it returned, or a panic.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// `serve` returned this error.
    Handler(Box<dyn HandlerError>),
    /// `serve` panicked.
    Panic(PanicError),
}

impl ServeError {
    /// The error `serve` returned, as its type.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketry_axum::ServeError;
    ///
    /// let error = ServeError::Handler(Box::new(std::io::Error::other("disk full")));
    /// assert_eq!(
    ///     error.downcast_ref::<std::io::Error>().map(|e| e.to_string()),
    ///     Some("disk full".to_owned())
    /// );
    /// ```
    pub fn downcast_ref<E: 'static>(&self) -> Option<&E> {
        match self {
            // Through the box: the box itself is a `HandlerError` too.
            Self::Handler(error) => (**error).as_any().downcast_ref(),
            Self::Panic(_) => None,
        }
    }
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Handler(error) => fmt::Display::fmt(&**error, f),
            Self::Panic(panic) => fmt::Display::fmt(panic, f),
        }
    }
}

impl std::error::Error for ServeError {}

/// Why an upgrade was refused, for [`Controller::on_upgrade_error`](crate::Controller::on_upgrade_error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The request is not a valid WebSocket handshake (RFC 6455 §4.2.1).
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The [filter](crate::Settings::filter) rejected the request, and no
    /// [fallback](crate::Upgrader::fallback) takes it.
    #[error("request rejected by the filter")]
    Filtered,
    /// The origin check refused the request.
    #[error("origin not allowed")]
    OriginRejected,
    /// Graceful shutdown started: no new connections.
    #[error("server shutting down")]
    ShuttingDown,
}

impl UpgradeError {
    /// The status the refusal is answered with: the handshake error's (400, 405, 426 with
    /// `Sec-WebSocket-Version: 13`, 431), 426 for the filter, 403 for the origin, 503 during
    /// shutdown.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Handshake(err) => err.status(),
            Self::Filtered => StatusCode::UPGRADE_REQUIRED,
            Self::OriginRejected => StatusCode::FORBIDDEN,
            Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}
