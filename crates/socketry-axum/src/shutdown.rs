//! [`Shutdown`]: graceful shutdown of live WebSocket connections, which Goyave leaves to its
//! users.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, watch};

/// Tracks the live connections of one or more [`Upgrader`](crate::Upgrader)s and closes them
/// all with 1001 "Going Away" on shutdown.
///
/// Each controller sees the close as the end of [`Conn::recv`](crate::Conn::recv) (after the
/// closing handshake), returns, and its connection task ends. Plug it into axum's graceful
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
    live: AtomicUsize,
    ended: Notify,
}

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
                live: AtomicUsize::new(0),
                ended: Notify::new(),
            }),
        }
    }

    /// How many connections are live.
    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::SeqCst)
    }

    /// Whether shutdown has started (new upgrades are refused with 503 from then on).
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.signal.borrow()
    }

    /// Starts the shutdown: every live connection gets 1001 "Going Away"; then waits until
    /// all connection tasks ended or `deadline` passed. Returns how many were still live.
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        self.inner.signal.send_replace(true);
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

    /// Registers a connection; the guard deregisters it when dropped.
    pub(crate) fn enter(&self) -> (Guard, watch::Receiver<bool>) {
        self.inner.live.fetch_add(1, Ordering::SeqCst);
        (
            Guard {
                inner: self.inner.clone(),
            },
            self.inner.signal.subscribe(),
        )
    }
}

/// Counts one live connection until dropped.
#[derive(Debug)]
pub(crate) struct Guard {
    inner: Arc<Inner>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.inner.live.fetch_sub(1, Ordering::SeqCst);
        self.inner.ended.notify_waiters();
    }
}
