//! The server side of WebSockets over HTTP/2: one connection's streams, each extended CONNECT
//! answered and handed on as a WebSocket (RFC 8441 §4–5).

use std::{future::Future, pin::pin, sync::Arc, time::Duration};

use bytes::Bytes;
use h2::{RecvStream, server::SendResponse};
use http::{Request, Response};
use socketry_proto::{HandshakeError, Role, handshake};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::{OwnedSemaphorePermit, mpsc},
};

use super::{H2Stream, Http2Config, stream::h2_error};
use crate::{
    Acceptor, Error, Timeout, WebSocket,
    time::{FAR, after as later},
};

/// The h2 server settings for `config`.
fn builder(config: &Http2Config) -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(config.stream_window)
        .initial_connection_window_size(config.effective_connection_window())
        .max_concurrent_streams(config.max_streams)
        .max_send_buffer_size(config.max_send_buffer)
        .max_header_list_size(config.max_header_list_size)
        .max_frame_size(config.max_frame_size)
        .enable_connect_protocol();
    builder
}

/// What a connection's handshake is bounded by: the deadline it shares with TLS and the
/// preface sniff, and the listener's handshake slot, held until the first WebSocket is
/// delivered (a connection that brings none counts among the handshakes in progress).
pub(crate) struct Admission {
    pub(crate) deadline: tokio::time::Instant,
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

/// Serves one HTTP/2 connection: every extended CONNECT that passes `acceptor`'s checks
/// becomes a WebSocket sent on `deliver` (with the transport wrapped by `wrap`); any other
/// request is answered with its error status, and a valid CONNECT that finds `deliver` full
/// with 503 (waiting for room would stall every stream on the connection, whose I/O this
/// task drives). Returns when the connection ends.
///
/// Once `stop` resolves, the connection takes no new stream (GOAWAY) and ends when its open
/// streams have and h2 has sent what they left queued; a peer that never answers the
/// shutdown's PING gets [`DRAIN_GRACE`] more, then the final GOAWAY. A connection with no
/// open stream for the idle timeout is shut down the same way.
pub(crate) async fn serve<T, S>(
    io: T,
    acceptor: &Acceptor,
    config: &Http2Config,
    wrap: fn(H2Stream) -> S,
    deliver: &mpsc::Sender<(WebSocket<S>, Request<()>)>,
    mut admission: Admission,
    stop: impl Future<Output = ()>,
) -> Result<(), Error>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = builder(config).handshake::<_, Bytes>(io);
    let mut conn = tokio::time::timeout_at(admission.deadline, handshake)
        .await
        .map_err(|_| Error::Timeout(Timeout::Handshake))?
        .map_err(h2_error)?;
    // One clone per open stream: the count says whether the connection is idle.
    let streams: Arc<()> = Arc::new(());
    let idle = config.idle_timeout;
    let mut check = pin!(tokio::time::sleep_until(later(idle.unwrap_or(FAR))));
    let mut idle_once = false;
    let mut stop = pin!(stop);
    // Set once shutting down and no stream is left: when to stop waiting for h2 to finish.
    let mut drained_by: Option<tokio::time::Instant> = None;
    let mut stopping = false;
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => {
                    idle_once = false;
                    let keep = streams.clone() as Arc<dyn std::any::Any + Send + Sync>;
                    if answer(acceptor, request, respond, wrap, keep, deliver) {
                        admission.permit = None;
                    }
                }
                Some(Err(err)) => return Err(h2_error(err)),
                None => return Ok(()),
            },
            () = &mut stop, if !stopping => {
                stopping = true;
                conn.graceful_shutdown();
                check.as_mut().reset(later(DRAIN_CHECK));
            }
            () = &mut check, if idle.is_some() || stopping => {
                let open = Arc::strong_count(&streams) > 1;
                if stopping {
                    // h2 ends the connection itself once the peer acknowledged the shutdown's
                    // PING and every stream, queued data included, is done. A peer that never
                    // acknowledges must not keep the connection, and this task, forever.
                    let now = tokio::time::Instant::now();
                    match drained_by {
                        _ if open => drained_by = None,
                        None => drained_by = Some(now + DRAIN_GRACE),
                        Some(by) if now >= by => {
                            conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                            // Long enough to write the final GOAWAY, not to wait on the peer.
                            let flush = async { while conn.accept().await.is_some() {} };
                            let _ = tokio::time::timeout(DRAIN_CHECK, flush).await;
                            return Ok(());
                        }
                        Some(_) => {}
                    }
                    check.as_mut().reset(later(DRAIN_CHECK));
                } else if !open && idle_once {
                    // Idle at two checks in a row: no stream for at least one whole period.
                    stopping = true;
                    conn.graceful_shutdown();
                    check.as_mut().reset(later(DRAIN_CHECK));
                } else {
                    idle_once = !open;
                    check.as_mut().reset(later(idle.unwrap_or(FAR)));
                }
            }
        }
    }
}

/// How often a connection that is shutting down checks whether its streams are all gone.
const DRAIN_CHECK: Duration = Duration::from_secs(1);
/// How long a connection whose streams are all gone may take to end on its own after a
/// shutdown (h2 waits for the peer's answer to its PING, and flushes what streams queued).
pub(crate) const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// Answers a CONNECT that found the backlog full: 503, to be tried again.
fn refuse_busy(mut respond: SendResponse<Bytes>) {
    let response = Response::builder()
        .status(http::StatusCode::SERVICE_UNAVAILABLE)
        .header(http::header::RETRY_AFTER, "1")
        .body(())
        .expect("a valid response");
    let _ = respond.send_response(response, true);
}

/// Answers one request: a WebSocket for a valid extended CONNECT, sent on `deliver`; an
/// error status otherwise. Returns whether a WebSocket was delivered.
fn answer<S>(
    acceptor: &Acceptor,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    wrap: fn(H2Stream) -> S,
    keep: Arc<dyn std::any::Any + Send + Sync>,
    deliver: &mpsc::Sender<(WebSocket<S>, Request<()>)>,
) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(err) = acceptor.validate_http2(&request, super::h2_protocol(&request)) {
        refuse(respond, &err);
        return false;
    }
    let Ok(permit) = deliver.try_reserve() else {
        refuse_busy(respond);
        return false;
    };
    let (mut response, subprotocol, deflate) = acceptor.response(&request, None);
    for (name, value) in acceptor.headers_ref() {
        response.headers_mut().append(name, value.clone());
    }
    handshake::strip_connection_headers(&mut response);
    // Fails only when the peer reset the stream meanwhile: nothing to serve.
    let Ok(send) = respond.send_response(response, false) else {
        return false;
    };
    let (parts, recv) = request.into_parts();
    let stream = H2Stream::new(send, recv, Some(keep));
    let ws = WebSocket::from_parts(
        wrap(stream),
        Role::Server,
        *acceptor.config_ref(),
        &[],
        subprotocol,
        deflate,
    );
    permit.send((ws, Request::from_parts(parts, ())));
    true
}

/// Answers a refused stream with its status and a plain-text reason, then ends the stream.
fn refuse(mut respond: SendResponse<Bytes>, err: &HandshakeError) {
    let (parts, body) = handshake::error_response_http2(err).into_parts();
    let response = Response::from_parts(parts, ());
    if let Ok(mut send) = respond.send_response(response, false) {
        // Small and within the initial window; h2 queues it for the connection's task.
        let _ = send.send_data(Bytes::from(body), true);
    }
}

/// HTTP/2's connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a cleartext connection say: `Some(true)` for HTTP/2's preface,
/// `Some(false)` for anything else (an HTTP/1.1 handshake), `None` while they could still be
/// either.
pub(crate) fn sniff_preface(peeked: &[u8]) -> Option<bool> {
    let n = peeked.len().min(PREFACE.len());
    if peeked[..n] != PREFACE[..n] {
        Some(false)
    } else if n == PREFACE.len() {
        Some(true)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_is_told_from_a_get() {
        assert_eq!(sniff_preface(PREFACE), Some(true));
        assert_eq!(
            sniff_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"),
            Some(true)
        );
        assert_eq!(sniff_preface(b"PRI * HTTP/2"), None);
        assert_eq!(sniff_preface(b""), None);
        assert_eq!(sniff_preface(b"GET / HTTP/1.1\r\n"), Some(false));
        // A method that starts as the preface does is still HTTP/1.1.
        assert_eq!(sniff_preface(b"PRIVATE / HTTP/1.1\r\n"), Some(false));
        assert_eq!(sniff_preface(b"PUT"), Some(false));
    }
}
