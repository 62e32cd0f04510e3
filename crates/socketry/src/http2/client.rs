//! The client side of WebSockets over HTTP/2: connections shared by the sockets to one
//! origin, each socket one extended CONNECT stream (RFC 8441 §4–5).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{H2Stream, Http2Config, stream::h2_error};
use crate::{Error, error::MAX_ERROR_BODY};

/// How long an origin that would not take WebSockets over HTTP/2 is sent HTTP/1.1 handshakes
/// without trying HTTP/2 again.
const FALLBACK_MEMORY: Duration = Duration::from_secs(300);

/// How long a new connection may take to show the server's SETTINGS before the socket falls
/// back to HTTP/1.1: a cleartext server that does not speak HTTP/2 may just wait for more of
/// what it takes for a request line.
const SETTINGS_WAIT: Duration = Duration::from_secs(3);

/// One HTTP/2 connection to an origin. Each socket on it holds an `Arc`; the pool holds a
/// `Weak`, so the connection ends (GOAWAY) once its last socket does.
pub(crate) struct Conn {
    send: h2::client::SendRequest<Bytes>,
    /// Set when opening a stream failed in a way that says the connection is done (GOAWAY,
    /// a connection error): the pool stops handing it out while its sockets finish.
    poisoned: AtomicBool,
}

impl Conn {
    /// Whether another stream fits under the server's limit, `streams` being those open.
    fn has_room(&self, streams: usize) -> bool {
        streams < self.send.current_max_send_streams()
    }

    fn is_usable(&self) -> bool {
        !self.poisoned.load(Ordering::Relaxed) && !self.send.clone().poll_ready_closed()
    }
}

/// The HTTP/2 connections of one `Connector` (and its clones), by origin.
#[derive(Default)]
pub(crate) struct Pool {
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let origins = self.slots.lock().map_or(0, |slots| slots.len());
        f.debug_struct("Pool").field("origins", &origins).finish()
    }
}

/// What the pool knows of one origin.
#[derive(Default)]
pub(crate) struct Slot {
    conns: Vec<Weak<Conn>>,
    /// Until when the origin gets HTTP/1.1 only: it did not take a WebSocket over HTTP/2.
    http1_until: Option<Instant>,
}

impl Slot {
    /// A live connection with room for one more stream, other than `not` (the one that just
    /// refused a stream).
    pub(crate) fn live(&mut self, not: Option<&Arc<Conn>>) -> Option<Arc<Conn>> {
        self.conns.retain(|weak| weak.strong_count() > 0);
        self.conns.iter().find_map(|weak| {
            let conn = weak.upgrade()?;
            if not.is_some_and(|not| Arc::ptr_eq(not, &conn)) {
                return None;
            }
            // The pool's upgrade is one of the strong references; the others are sockets.
            let streams = Arc::strong_count(&conn) - 1;
            (conn.has_room(streams) && conn.is_usable()).then_some(conn)
        })
    }

    /// Whether the origin is known not to take WebSockets over HTTP/2.
    pub(crate) fn http1_only(&self) -> bool {
        self.http1_until.is_some_and(|until| Instant::now() < until)
    }

    /// Remembers that the origin does not take WebSockets over HTTP/2.
    pub(crate) fn remember_http1(&mut self) {
        self.http1_until = Some(Instant::now() + FALLBACK_MEMORY);
    }

    pub(crate) fn add(&mut self, conn: &Arc<Conn>) {
        self.conns.push(Arc::downgrade(conn));
    }
}

/// `SendRequest` has no "is closed" query; a closed connection fails `poll_ready` at once.
trait PollReadyClosed {
    fn poll_ready_closed(self) -> bool;
}

impl PollReadyClosed for h2::client::SendRequest<Bytes> {
    fn poll_ready_closed(mut self) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        matches!(self.poll_ready(&mut cx), std::task::Poll::Ready(Err(_)))
    }
}

impl Pool {
    /// The slot of `origin`, created if new.
    pub(crate) fn slot(&self, origin: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        // Forget origins with nothing left to remember, so the map stays bounded by the
        // origins in use.
        slots.retain(|_, slot| {
            Arc::strong_count(slot) > 1
                || slot
                    .try_lock()
                    .is_ok_and(|s| s.http1_only() || s.conns.iter().any(|w| w.strong_count() > 0))
        });
        slots.entry(origin.to_owned()).or_default().clone()
    }
}

/// A new connection that carries no WebSockets over HTTP/2: the socket falls back to
/// HTTP/1.1, whose own errors are the ones worth reporting.
pub(crate) struct HandshakeFailed {
    /// Whether the failure says the origin does not take them, so that the pool remembers.
    pub(crate) not_http2: bool,
}

/// Opens HTTP/2 on `io` and waits (up to [`SETTINGS_WAIT`]) for the server's settings.
/// `prior_knowledge`: cleartext, where nothing said the server speaks HTTP/2.
///
/// # Errors
///
/// When the server's settings do not allow WebSockets (the connection is dropped), on HTTP/2
/// and I/O errors, and when the settings do not come in time. Without prior knowledge (ALPN
/// picked `h2`) only the first says anything about the origin; with it, every failure
/// before the settings does (an HTTP/1.1 server answers the preface with a 400 or hangs up,
/// which h2 reports as a broken pipe, or waits for the rest of a request line).
pub(crate) async fn handshake<T>(
    io: T,
    config: &Http2Config,
    prior_knowledge: bool,
) -> Result<Arc<Conn>, HandshakeFailed>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let failed = HandshakeFailed {
        not_http2: prior_knowledge,
    };
    let settings = async {
        let (send, mut connection) = h2::client::Builder::new()
            .initial_window_size(config.stream_window)
            .initial_connection_window_size(config.effective_connection_window())
            .max_send_buffer_size(config.max_send_buffer)
            .max_header_list_size(config.max_header_list_size)
            .max_frame_size(config.max_frame_size)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .ok()?;
        let mut ping = connection.ping_pong().expect("taken once, here");
        tokio::spawn(async move {
            // Ends when every socket and the pool's handles are gone, or the server goes.
            let _ = connection.await;
        });
        // A client may send `:protocol` only once the server's SETTINGS allowed it (RFC 8441
        // §3). The server sends its SETTINGS first, so they were processed once a PING is
        // answered.
        ping.ping(h2::Ping::opaque()).await.ok()?;
        Some(send)
    };
    let Ok(Some(send)) = tokio::time::timeout(SETTINGS_WAIT, settings).await else {
        return Err(failed);
    };
    if !send.is_extended_connect_protocol_enabled() {
        return Err(HandshakeFailed { not_http2: true });
    }
    Ok(Arc::new(Conn {
        send,
        poisoned: AtomicBool::new(false),
    }))
}

/// Why a stream could not be opened.
pub(crate) enum OpenFailed {
    /// The server did not take the stream (REFUSED_STREAM, or a GOAWAY below its id) or the
    /// connection was gone before it was sent: another connection may take it (RFC 9113
    /// §8.7).
    Retry(Error),
    /// Anything else.
    Fatal(Error),
}

impl From<OpenFailed> for Error {
    fn from(failed: OpenFailed) -> Self {
        match failed {
            OpenFailed::Retry(err) | OpenFailed::Fatal(err) => err,
        }
    }
}

/// Opens one stream on `conn` with `request` (an extended CONNECT); returns the stream and
/// the server's answer, whatever its status. A failure that says the connection is done
/// poisons it for the pool.
pub(crate) async fn open(
    conn: &Arc<Conn>,
    mut request: Request<()>,
) -> Result<(H2Stream, Response<()>), OpenFailed> {
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from_static(
            socketry_proto::handshake::PROTOCOL,
        ));
    let failed = |err: h2::Error, sent: bool| {
        let refused =
            err.is_reset() && err.is_remote() && err.reason() == Some(h2::Reason::REFUSED_STREAM);
        // The connection's own end (h2 already fails `poll_ready` then, but a stream can see
        // it first); a stream's reset says nothing of the others.
        if err.is_go_away() || err.is_io() {
            conn.poisoned.store(true, Ordering::Relaxed);
        }
        // Before the request left, any failure is the connection's; after, only a refusal
        // or a GOAWAY from the server below our stream's id (which then never processed it)
        // is safe to send again.
        if !sent || refused || (err.is_go_away() && err.is_remote()) {
            OpenFailed::Retry(h2_error(err))
        } else {
            OpenFailed::Fatal(h2_error(err))
        }
    };
    let mut send = conn
        .send
        .clone()
        .ready()
        .await
        .map_err(|e| failed(e, false))?;
    let (response, stream) = send
        .send_request(request, false)
        .map_err(|e| failed(e, false))?;
    let response = response.await.map_err(|e| failed(e, true))?;
    let (parts, recv) = response.into_parts();
    let keep = conn.clone() as Arc<dyn std::any::Any + Send + Sync>;
    Ok((
        H2Stream::new(stream, recv, Some(keep)),
        Response::from_parts(parts, ()),
    ))
}

/// A refused CONNECT as [`Error::Http`]: the answer and up to [`MAX_ERROR_BODY`] bytes of its
/// body, read for one second at most.
pub(crate) async fn refused(mut stream: H2Stream, response: Response<()>) -> Error {
    use tokio::io::AsyncReadExt;
    let mut body = BytesMut::new();
    let read = async {
        while body.len() < MAX_ERROR_BODY {
            let mut chunk = (&mut stream).take((MAX_ERROR_BODY - body.len()) as u64);
            match chunk.read_buf(&mut body).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), read).await;
    let (parts, ()) = response.into_parts();
    Error::Http(Box::new(Response::from_parts(parts, body.freeze())))
}
