//! The server side of WebSockets over HTTP/2: one connection's streams, each extended CONNECT
//! answered and handed on as a WebSocket (RFC 8441 §4–5).

use std::{future::Future, pin::pin, sync::Arc, time::Duration};

use bytes::Bytes;
use h2::{RecvStream, server::SendResponse};
use http::{Request, Response};
use socketry_proto::{HandshakeError, Role, handshake};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{H2Stream, Http2Config, stream::h2_error};
use crate::{Acceptor, Error, Timeout, WebSocket};

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

/// Serves one HTTP/2 connection: every extended CONNECT that passes `acceptor`'s checks
/// becomes a WebSocket given to `deliver` (with the transport wrapped by `wrap`); any other
/// request is answered with its error status. Returns when the connection ends.
///
/// Once `stop` resolves, the connection takes no new stream (GOAWAY) and ends when its open
/// streams have. A connection with no open stream for the idle timeout is ended too.
pub(crate) async fn serve<T, S>(
    io: T,
    acceptor: &Acceptor,
    config: &Http2Config,
    wrap: fn(H2Stream) -> S,
    mut deliver: impl FnMut(WebSocket<S>, Request<()>),
    stop: impl Future<Output = ()>,
) -> Result<(), Error>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = builder(config).handshake::<_, Bytes>(io);
    let mut conn = tokio::time::timeout(acceptor.handshake_timeout_get(), handshake)
        .await
        .map_err(|_| Error::Timeout(Timeout::Handshake))?
        .map_err(h2_error)?;
    // One clone per open stream: the count says whether the connection is idle.
    let streams: Arc<()> = Arc::new(());
    let idle = config.idle_timeout;
    let far = Duration::from_secs(86_400 * 365);
    let mut idle_check = pin!(tokio::time::sleep(idle.unwrap_or(far)));
    let mut idle_once = false;
    let mut stop = pin!(stop);
    let mut stopping = false;
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => {
                    idle_once = false;
                    let keep = streams.clone() as Arc<dyn std::any::Any + Send + Sync>;
                    if let Some((ws, request)) = answer(acceptor, request, respond, wrap, keep) {
                        deliver(ws, request);
                    }
                }
                Some(Err(err)) => return Err(h2_error(err)),
                None => return Ok(()),
            },
            () = &mut stop, if !stopping => {
                stopping = true;
                conn.graceful_shutdown();
            }
            () = &mut idle_check, if idle.is_some() && !stopping => {
                // Idle at two checks in a row: no stream for at least one whole period.
                let open = Arc::strong_count(&streams) > 1;
                if !open && idle_once {
                    stopping = true;
                    conn.graceful_shutdown();
                } else {
                    idle_once = !open;
                    let next = tokio::time::Instant::now() + idle.unwrap_or(far);
                    idle_check.as_mut().reset(next);
                }
            }
        }
    }
}

/// Answers one request: a WebSocket for a valid extended CONNECT, an error status otherwise.
fn answer<S>(
    acceptor: &Acceptor,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    wrap: fn(H2Stream) -> S,
    keep: Arc<dyn std::any::Any + Send + Sync>,
) -> Option<(WebSocket<S>, Request<()>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(err) = acceptor.validate_http2(&request, super::h2_protocol(&request)) {
        refuse(respond, &err);
        return None;
    }
    let (mut response, subprotocol, deflate) = acceptor.response(&request, None);
    for (name, value) in acceptor.headers_ref() {
        response.headers_mut().append(name, value.clone());
    }
    handshake::strip_connection_headers(&mut response);
    // Fails only when the peer reset the stream meanwhile: nothing to serve.
    let send = respond.send_response(response, false).ok()?;
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
    Some((ws, Request::from_parts(parts, ())))
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

/// Whether the first byte of a cleartext connection starts HTTP/2's preface (`PRI * HTTP/2.0`,
/// RFC 9113 §3.4) rather than an HTTP/1.1 WebSocket handshake (`GET`).
pub(crate) fn starts_preface(first: u8) -> bool {
    first == b'P'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_is_told_from_a_get() {
        assert!(starts_preface(b"PRI * HTTP/2.0\r\n"[0]));
        assert!(!starts_preface(b"GET / HTTP/1.1\r\n"[0]));
    }
}
