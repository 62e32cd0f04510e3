//! [`Closer`]: starts the closing handshake of a connection from any task, without splitting
//! it.
//!
//! A [`ControlHandle`](crate::ControlHandle) needs the split connection (a lock shared by
//! every poll, which a whole connection does not pay). A `Closer` only leaves a request that
//! the connection's own polls pick up: one flag, checked with one atomic load per poll, and the
//! waker of the task that polls it, registered again only when that task changes. The request
//! takes effect at the connection's next poll (the request wakes it), so a task that owns a
//! whole `WebSocket` and is parked in `recv` sees the close at once.

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Waker},
};

use socketry_proto::{CloseCode, CloseFrame};

use crate::Error;

/// What a [`Closer`] and the connection share.
#[derive(Debug, Default)]
struct Request {
    /// Set (release) after `frame` was stored; read (acquire) by every poll.
    requested: AtomicBool,
    /// The close frame of the first request; the connection takes it.
    frame: Mutex<Option<CloseFrame>>,
    /// The task that last polled the connection, to wake on a request.
    waker: Mutex<Option<Waker>>,
}

/// Asks a connection to close from any task: [`WebSocket::closer`](crate::WebSocket::closer).
///
/// Cheap to clone, `Send` and `Sync`, and not tied to the transport's type. The connection
/// queues the close frame at its next poll (a `recv` parked on it is woken for that; a `send`
/// or `flush` polls too, so the frame goes out behind the message), then completes the
/// handshake as if its owner had started it: `recv` hands out the peer's answer and then
/// `None`, and later sends fail with [`Error::AlreadyClosed`]. A close that the owner starts
/// afterwards (`close`, the `Sink`'s close, a handle's) sends the request's frame: the first
/// request wins. The request outlives a later [`split`](crate::WebSocket::split): the halves
/// pick it up the same way. A connection that nobody polls does not act on it (a task that
/// awaits something else sees it when it next uses the connection); a dropped one ignores it.
///
/// # Examples
///
/// ```no_run
/// # async fn run(mut ws: socketry::WebSocket<tokio::net::TcpStream>) {
/// let closer = ws.closer();
/// tokio::spawn(async move {
///     tokio::time::sleep(std::time::Duration::from_secs(60)).await;
///     let _ = closer.close(socketry::CloseCode::GOING_AWAY, "time is up");
/// });
/// while let Some(Ok(message)) = ws.recv().await {
///     println!("{message:?}"); // after a minute: the peer's close, then the loop ends
/// }
/// # }
/// # let _ = run;
/// ```
#[derive(Clone)]
pub struct Closer {
    request: Arc<Request>,
}

impl fmt::Debug for Closer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Closer")
            .field("requested", &self.is_requested())
            .finish()
    }
}

impl Closer {
    /// Asks the connection to close with `code` and `reason` (truncated on a char boundary to
    /// 123 bytes) and wakes the task that polls it. Only the first request counts; a
    /// connection that is already closing keeps its own close frame.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a code that may not be sent (1005, 1006, 1015, reserved
    /// ranges); nothing is requested then.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if !code.is_valid() {
            return Err(Error::InvalidMessage("close code may not be sent"));
        }
        {
            let mut frame = lock(&self.request.frame);
            if self.request.requested.load(Ordering::Acquire) {
                return Ok(());
            }
            *frame = Some(CloseFrame::new(code, reason));
            // Set under the frame's lock, so that two requests cannot both store a frame.
            self.request.requested.store(true, Ordering::Release);
        }
        // After the flag: a poll that registered before it sees the flag or is woken here.
        let waker = lock(&self.request.waker).clone();
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Whether the connection took a request up: a poll of it found the request (and started
    /// the close, unless a close of the owner's own had started already). From then on the
    /// close is under way in whatever task uses the connection.
    pub fn is_taken_up(&self) -> bool {
        self.is_requested() && lock(&self.request.frame).is_none()
    }

    /// Whether a close was requested through any clone of this closer.
    pub fn is_requested(&self) -> bool {
        self.request.requested.load(Ordering::Acquire)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while these locks are held: the state is consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The connection's side of its closers, kept in its core: checked at the start of every poll
/// and by every close the owner starts.
#[derive(Debug, Default)]
pub(crate) struct CloseWatch {
    request: Arc<Request>,
    /// The waker stored in `request.waker`, to skip the lock while the same task polls.
    registered: Option<Waker>,
}

impl CloseWatch {
    pub(crate) fn closer(&self) -> Closer {
        Closer {
            request: self.request.clone(),
        }
    }

    /// Registers `cx`'s task (when given: the task to wake for a request), then takes the
    /// request's close frame if a close was requested. Registered first, then checked: a
    /// request after the check wakes the task.
    pub(crate) fn take_request(&mut self, cx: Option<&Context<'_>>) -> Option<CloseFrame> {
        if let Some(cx) = cx
            && !self
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            self.register(cx.waker());
        }
        if !self.request.requested.load(Ordering::Acquire) {
            return None;
        }
        // Stored before the flag was set, under this lock: present unless taken before.
        lock(&self.request.frame).take()
    }

    /// Whether a close was requested (taken up or not).
    #[inline]
    pub(crate) fn is_requested(&self) -> bool {
        self.request.requested.load(Ordering::Acquire)
    }

    /// Registers `waker` as the task a request wakes, without acting on one; whether a
    /// request was made already, which the caller then wakes `waker` for (after its locks),
    /// so that its task acts on it in a poll that also writes (acted on outside a poll, the
    /// close frame would be queued and not written).
    pub(crate) fn register_only(&mut self, waker: &Waker) -> bool {
        if !self.registered.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.register(waker);
        }
        self.request.requested.load(Ordering::Acquire)
    }

    #[cold]
    fn register(&mut self, waker: &Waker) {
        *lock(&self.request.waker) = Some(waker.clone());
        self.registered = Some(waker.clone());
    }
}

impl Drop for CloseWatch {
    /// A closer may outlive the connection: it must not keep the connection's task (which a
    /// waker can hold alive) with it.
    fn drop(&mut self) {
        if self.registered.is_some() {
            *lock(&self.request.waker) = None;
        }
    }
}
