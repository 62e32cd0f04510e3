//! The server side: [`accept`] a WebSocket over a raw stream, doing the HTTP/1.1 handshake.

use std::time::Duration;

use http::{HeaderMap, Request};
use socketry_proto::extensions::deflate::{DeflateParams, negotiate_server};
use socketry_proto::{Role, handshake, handshake::OriginPolicy};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Error, WebSocket, WebSocketConfig, handshake_io::read_head};

/// Accepts a WebSocket connection on `stream` with the default [`Acceptor`] settings.
///
/// # Errors
///
/// See [`Acceptor::accept`].
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// let (stream, _) = listener.accept().await?;
/// let mut ws = socketry::accept(stream).await?;
/// ws.send("hello").await?;
/// # Ok(()) }
/// # let _ = run;
/// ```
pub async fn accept<S>(stream: S) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Acceptor::new().accept(stream).await
}

/// Server handshake settings (gorilla's `Upgrader`): the origin policy, subprotocols,
/// handshake timeout, extra response headers and the connection's [`WebSocketConfig`].
///
/// The origin is checked by default: a browser page from another host gets 403, as with
/// gorilla (cross-site WebSocket hijacking would otherwise let any site use your users'
/// cookies). See [`OriginPolicy`] for allow-lists and custom checks.
///
/// # Examples
///
/// ```no_run
/// # async fn run(stream: tokio::net::TcpStream) -> Result<(), socketry::Error> {
/// use std::time::Duration;
/// use socketry::Acceptor;
///
/// let acceptor = Acceptor::new()
///     .protocols(["chat.v2", "chat.v1"])
///     .handshake_timeout(Duration::from_secs(5));
/// let (ws, request) = acceptor.accept_with_request(stream).await?;
/// println!("{} chose {:?}", request.uri(), ws.protocol());
/// # Ok(()) }
/// # let _ = run;
/// ```
#[derive(Debug, Clone)]
pub struct Acceptor {
    config: WebSocketConfig,
    protocols: Vec<String>,
    handshake_timeout: Duration,
    headers: HeaderMap,
    origin: OriginPolicy,
    protocol_order: ProtocolOrder,
}

/// Whose preference picks the subprotocol when several are both offered and supported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolOrder {
    /// The first of the client's subprotocols that the server supports (gorilla's choice; the
    /// default).
    #[default]
    Client,
    /// The first of the server's subprotocols that the client offered (python-websockets').
    Server,
}

impl Default for Acceptor {
    fn default() -> Self {
        Self::new()
    }
}

impl Acceptor {
    /// Default settings: same-host origins, no subprotocols, a 10 s handshake timeout,
    /// default limits.
    pub fn new() -> Self {
        Self {
            config: WebSocketConfig::default(),
            protocols: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
            headers: HeaderMap::new(),
            origin: OriginPolicy::default(),
            protocol_order: ProtocolOrder::Client,
        }
    }

    /// Whose order picks the subprotocol. The default value is [`ProtocolOrder::Client`].
    #[must_use]
    pub fn protocol_order(mut self, order: ProtocolOrder) -> Self {
        self.protocol_order = order;
        self
    }

    /// Which `Origin` values are accepted; others get 403. The default value is
    /// [`OriginPolicy::same_host`].
    ///
    /// # Examples
    ///
    /// ```
    /// use socketry::{Acceptor, OriginPolicy};
    ///
    /// let acceptor = Acceptor::new().origin_policy(OriginPolicy::allow(["https://app.example"]));
    /// # let _ = acceptor;
    /// ```
    #[must_use]
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.origin = policy;
        self
    }

    /// Validates a request: RFC 6455's rules, then the origin policy. Returns the key.
    pub(crate) fn validate<'r, B>(
        &self,
        request: &'r Request<B>,
    ) -> Result<&'r str, socketry_proto::HandshakeError> {
        let key = handshake::validate_request(request)?;
        self.origin.check(request)?;
        Ok(key)
    }

    /// Validates an HTTP/2 extended CONNECT (RFC 8441), whose `:protocol` is `protocol`: its
    /// rules, then the origin policy.
    #[cfg(feature = "http2")]
    pub(crate) fn validate_http2<B>(
        &self,
        request: &Request<B>,
        protocol: Option<&str>,
    ) -> Result<(), socketry_proto::HandshakeError> {
        handshake::validate_extended_connect(request, protocol)?;
        self.origin.check(request)
    }

    /// How long the client has to send its request.
    pub(crate) fn handshake_timeout_get(&self) -> Duration {
        self.handshake_timeout
    }

    /// The connection settings. The default value is [`WebSocketConfig::default`].
    #[must_use]
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.config = config;
        self
    }

    /// The subprotocols the server supports; the first one in the client's order that is
    /// listed here is selected (or in this list's order: [`protocol_order`](Self::protocol_order)).
    /// The default value is none.
    #[must_use]
    pub fn protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// How long the client has to send its request. The default value is 10 seconds.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Extra headers for the 101 response. The default value is none.
    #[must_use]
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    #[cfg(any(feature = "hyper", feature = "http2"))]
    pub(crate) fn config_ref(&self) -> &WebSocketConfig {
        &self.config
    }

    #[cfg(any(feature = "hyper", feature = "http2"))]
    pub(crate) fn headers_ref(&self) -> &HeaderMap {
        &self.headers
    }

    /// Reads the client's opening handshake from `stream`, answers it, and returns the
    /// connection.
    ///
    /// # Errors
    ///
    /// [`Error::Handshake`] for a bad request, after answering it with its status (400, 405,
    /// 426 with `Sec-WebSocket-Version: 13`, 431, 403 for an origin the policy refuses) and
    /// closing the stream;
    /// [`Error::Timeout`] when the request did not arrive within the handshake timeout.
    pub async fn accept<S>(&self, stream: S) -> Result<WebSocket<S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        Ok(self.accept_with_request(stream).await?.0)
    }

    /// [`accept`](Self::accept), also returning the request (path, query, headers).
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept).
    pub async fn accept_with_request<S>(
        &self,
        stream: S,
    ) -> Result<(WebSocket<S>, Request<()>), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Boxed: the handshake's state (request parsing, the timer, the response) is over 2 KiB,
        // and an `async fn` that awaited it inline would keep that much room in its task for
        // the connection's whole life. On the heap it is freed once the handshake is done.
        Box::pin(self.handshake(stream)).await
    }

    async fn handshake<S>(&self, mut stream: S) -> Result<(WebSocket<S>, Request<()>), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let read = read_head(&mut stream, handshake::parse_request);
        let (request, leftover) = match tokio::time::timeout(self.handshake_timeout, read).await {
            Ok(Ok(parsed)) => parsed,
            Ok(Err(Error::Handshake(err))) => return Err(refuse(stream, err).await),
            Ok(Err(err)) => return Err(err),
            Err(_) => return Err(Error::Timeout(crate::Timeout::Handshake)),
        };
        let key = match self.validate(&request) {
            Ok(key) => key,
            Err(err) => return Err(refuse(stream, err).await),
        };
        let (mut response, protocol, deflate) = self.response(&request, Some(key));
        for (name, value) in &self.headers {
            response.headers_mut().append(name, value.clone());
        }
        let mut head = Vec::with_capacity(256);
        handshake::write_response(&response, &mut head);
        stream.write_all(&head).await?;
        stream.flush().await?;
        let ws = WebSocket::from_parts(
            stream,
            Role::Server,
            self.config,
            &leftover,
            protocol,
            deflate,
        );
        Ok((ws, request))
    }

    /// The answer to a validated request, subprotocol and permessage-deflate chosen: 101 for
    /// an HTTP/1.1 upgrade with its `key`, 200 for an HTTP/2 extended CONNECT (no key).
    pub(crate) fn response<B>(
        &self,
        request: &Request<B>,
        key: Option<&str>,
    ) -> (http::Response<()>, Option<String>, Option<DeflateParams>) {
        let offered = handshake::requested_subprotocols(request);
        let protocol = match self.protocol_order {
            ProtocolOrder::Client => handshake::select_subprotocol(offered, &self.protocols),
            ProtocolOrder::Server => {
                handshake::select_subprotocol_by_server(offered, &self.protocols)
            }
        };
        let mut response = match key {
            Some(key) => handshake::response(key, protocol),
            None => handshake::connect_response(protocol),
        };
        let offers = request
            .headers()
            .get_all(http::header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let deflate = self
            .config
            .get_compression()
            .and_then(|config| negotiate_server(offers, config));
        let deflate = deflate.and_then(|(params, header)| {
            let value = http::HeaderValue::from_str(&header).ok()?;
            response
                .headers_mut()
                .insert(http::header::SEC_WEBSOCKET_EXTENSIONS, value);
            Some(params)
        });
        (response, protocol.map(str::to_owned), deflate)
    }
}

/// Answers a bad handshake with its status and closes the stream; returns the error.
async fn refuse<S>(mut stream: S, err: socketry_proto::HandshakeError) -> Error
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let response = handshake::error_response(&err);
    let mut bytes = Vec::with_capacity(256);
    handshake::write_response(&response, &mut bytes);
    bytes.extend_from_slice(response.body().as_bytes());
    // Best effort, bounded: the client may already be gone.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await?;
        // Closing with unread bytes makes the kernel send a reset, which can destroy the
        // answer before the client reads it: drain a little first.
        let mut scratch = [0u8; 1024];
        for _ in 0..64 {
            if stream.read(&mut scratch).await? == 0 {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    Error::Handshake(err)
}
