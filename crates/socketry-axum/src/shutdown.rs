//! [`Shutdown`]: graceful shutdown of live WebSocket connections, which Goyave leaves to its
//! users.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use socketry::{CloseCode, Closer};
use tokio::sync::{Notify, watch};

/// Tracks the live connections of one or more [`Upgrader`](crate::Upgrader)s and closes them
/// all with 1001 "Going Away" on shutdown.
///
/// The close comes from outside, through each connection's [`Closer`]: the request wakes the
/// connection's task, whose next read or send writes the close frame. Whatever the controller
/// reads with (`recv`, `recv_json`, `next_reader`, `join_messages`, the `Stream`, the split
/// reader), it sees the peer's answer and then the end; a send after that fails with
/// [`Error::AlreadyClosed`](socketry::Error::AlreadyClosed), which ends `serve` normally. A
/// controller that awaits something else (a channel, a database) should also wait on
/// [`signalled`](Self::signalled) and return: the automatic close then sends the 1001. One
/// that does neither is cancelled (its future dropped) half the shutdown's deadline after the
/// signal, and the automatic close sends the 1001 then (one that used its connection since
/// the signal, whose close is under way, is cancelled at three quarters of the deadline).
/// Background tasks (a ticker, a pump) wait on `signalled` too. Plug it into axum's graceful
/// shutdown:
///
/// ```no_run
/// use std::time::Duration;
/// use socketry_axum::{Settings, Shutdown, Upgrader, handler_fn};
///
/// # async fn run() -> std::io::Result<()> {
/// let shutdown = Shutdown::new();
/// let upgrader = Upgrader::new(handler_fn(|conn, _| {
///     Box::pin(async move {
///         while let Some(message) = conn.recv().await {
///             conn.send(message?).await?;
///         }
///         Ok::<(), socketry::Error>(())
///     })
/// }))
/// .settings(Settings::default().shutdown(shutdown.clone()));
/// let app = upgrader.route(axum::Router::new(), "/ws");
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let ctrl_c = async { let _ = tokio::signal::ctrl_c().await; };
/// axum::serve(listener, app)
///     .with_graceful_shutdown(shutdown.on(ctrl_c, Duration::from_secs(5)))
///     .await
/// # }
/// # let _ = run;
/// ```
#[derive(Debug, Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    signal: watch::Sender<bool>,
    /// The signal as a flag, for the connections' tasks to check on every poll without a
    /// lock (`signal`'s receivers lock on each poll).
    down: AtomicBool,
    live: Mutex<Live>,
    ended: Notify,
}

/// The live connections: counted from their upgrade, closable once they exist.
#[derive(Debug, Default)]
struct Live {
    count: usize,
    next_id: u64,
    closers: HashMap<u64, Closer>,
    /// The connections' tasks, woken by the signal (see [`GraceOver`]).
    tasks: HashMap<u64, Waker>,
    /// How long after the signal a controller that has not used its connection is
    /// cancelled: half the shutdown's deadline.
    grace: Duration,
}

/// The close every connection gets on shutdown.
const GOING_AWAY: &str = "Going Away";

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A shutdown handle with no connections yet.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                signal: watch::Sender::new(false),
                down: AtomicBool::new(false),
                live: Mutex::default(),
                ended: Notify::new(),
            }),
        }
    }

    /// How many connections are live.
    pub fn live(&self) -> usize {
        self.inner.lock().count
    }

    /// Resolves once shutdown has started, for tasks beside the connections (a ticker, a hub
    /// pump) to `select!` on.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let shutdown = socketry_axum::Shutdown::new();
    /// let ticker = tokio::spawn({
    ///     let shutdown = shutdown.clone();
    ///     async move {
    ///         let mut ticks = tokio::time::interval(std::time::Duration::from_millis(10));
    ///         loop {
    ///             tokio::select! {
    ///                 () = shutdown.signalled() => return "stopped",
    ///                 _ = ticks.tick() => {}
    ///             }
    ///         }
    ///     }
    /// });
    /// shutdown.shutdown(std::time::Duration::from_secs(1)).await;
    /// assert_eq!(ticker.await.unwrap(), "stopped");
    /// # }
    /// ```
    pub fn signalled(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut signal = self.inner.signal.subscribe();
        async move {
            let _ = signal.wait_for(|down| *down).await;
        }
    }

    /// Whether shutdown has started (new upgrades are refused with 503 from then on).
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.signal.borrow()
    }

    /// Starts the shutdown: every live connection gets 1001 "Going Away"; then waits until
    /// all connection tasks ended or `deadline` passed. Returns how many were still live.
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        let tasks: Vec<Waker> = {
            let mut live = self.inner.lock();
            live.grace = deadline / 2;
            self.inner.down.store(true, Ordering::SeqCst);
            for closer in live.closers.values() {
                // Each connection's own task writes its close (the request wakes it): a peer
                // that does not read holds up only its own, and the deadline bounds the wait.
                let _ = closer.close(CloseCode::GOING_AWAY, GOING_AWAY);
            }
            // Only now, and under the same lock: a controller that returns on the signal
            // (on another worker) finds its request in place, so its automatic close sends
            // the 1001; a connection attaching meanwhile was closed above or sees the signal.
            self.inner.signal.send_replace(true);
            live.tasks.drain().map(|(_, waker)| waker).collect()
        };
        for task in tasks {
            task.wake();
        }
        let all_ended = async {
            loop {
                let ended = self.inner.ended.notified();
                if self.live() == 0 {
                    return;
                }
                ended.await;
            }
        };
        let _ = tokio::time::timeout(deadline, all_ended).await;
        self.live()
    }

    /// A future for `axum::serve(..).with_graceful_shutdown(..)`: waits for `trigger` (Ctrl-C,
    /// say), then shuts the WebSocket connections down within `deadline`.
    pub fn on(
        &self,
        trigger: impl Future<Output = ()> + Send + 'static,
        deadline: Duration,
    ) -> impl Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            trigger.await;
            this.shutdown(deadline).await;
        }
    }

    /// Registers a connection from its upgrade on; the guard deregisters it when dropped.
    pub(crate) fn enter(&self) -> Guard {
        let mut live = self.inner.lock();
        live.count += 1;
        live.next_id += 1;
        Guard {
            inner: self.inner.clone(),
            id: live.next_id,
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        // Nothing panics while it is held: the state is consistent.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts one live connection until dropped.
#[derive(Debug)]
pub(crate) struct Guard {
    inner: Arc<Inner>,
    id: u64,
}

impl Guard {
    /// The connection exists: shutdown closes it through `closer` (at once, if shutdown
    /// started while it was being upgraded).
    pub(crate) fn attach(&self, closer: Closer) {
        let late = {
            let mut live = self.inner.lock();
            live.closers.insert(self.id, closer.clone());
            *self.inner.signal.borrow()
        };
        if late {
            let _ = closer.close(CloseCode::GOING_AWAY, GOING_AWAY);
        }
    }
}

impl Guard {
    /// Resolves half the shutdown's deadline after its signal if the connection was not used
    /// meanwhile, three quarters of it after if it was: its task then cancels the controller,
    /// and closes with the 1001 itself.
    pub(crate) fn grace_over(&self) -> GraceOver<'_> {
        GraceOver {
            guard: self,
            registered: None,
            sleep: None,
            extended: false,
        }
    }
}

/// See [`Guard::grace_over`]. Polled with the controller on every wake of the connection's
/// task, so a poll before the signal is one atomic load (and a lock only when the task's
/// waker changed).
pub(crate) struct GraceOver<'a> {
    guard: &'a Guard,
    registered: Option<Waker>,
    /// Boxed: the sleep's state takes room only once shutdown has begun.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The grace was extended once, for a controller that had used its connection.
    extended: bool,
}

impl Future for GraceOver<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let inner = &this.guard.inner;
        if this.sleep.is_none() {
            // Registered before the check: a shutdown after it finds the waker.
            if !this
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                inner.lock().tasks.insert(this.guard.id, cx.waker().clone());
                this.registered = Some(cx.waker().clone());
            }
            if !inner.down.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
            let grace = inner.lock().grace;
            this.sleep = Some(Box::pin(tokio::time::sleep(grace)));
        }
        let Some(sleep) = &mut this.sleep else {
            return Poll::Pending;
        };
        std::task::ready!(sleep.as_mut().poll(cx));
        if this.extended {
            return Poll::Ready(());
        }
        // A controller that used its connection since the request has the close under way
        // (a slow peer's answer, say): it gets half of what is left of the deadline more,
        // then is cancelled too (it may have gone on to wait on something else), so that
        // the automatic close still fits in the deadline.
        let (taken_up, grace) = {
            let live = inner.lock();
            let taken_up = live
                .closers
                .get(&this.guard.id)
                .is_some_and(Closer::is_taken_up);
            (taken_up, live.grace)
        };
        if !taken_up {
            return Poll::Ready(());
        }
        this.extended = true;
        let more = tokio::time::Instant::now() + grace / 2;
        sleep.as_mut().reset(more);
        std::task::ready!(sleep.as_mut().poll(cx));
        Poll::Ready(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut live = self.inner.lock();
        live.count -= 1;
        live.closers.remove(&self.id);
        live.tasks.remove(&self.id);
        drop(live);
        self.inner.ended.notify_waiters();
    }
}
