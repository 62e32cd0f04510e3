//! The client side: [`connect`] to a `ws://` or `wss://` URL.

use std::time::Duration;

#[cfg(any(feature = "rustls", feature = "http2"))]
use std::sync::Arc;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri};
use socketry_proto::{HandshakeError, Role, handshake};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    Error, MaybeTlsStream, WebSocket, WebSocketConfig,
    error::{MAX_ERROR_BODY, UrlError},
    handshake_io::read_head,
    proxy::Proxy,
};

/// Connects to `url` (`ws://` or `wss://`) with the default [`Connector`] settings.
///
/// Returns the connection and the server's handshake response.
///
/// # Errors
///
/// See [`Connector::connect`].
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), socketry::Error> {
/// let (mut ws, _response) = socketry::connect("ws://127.0.0.1:9001/chat").await?;
/// ws.send("hello").await?;
/// if let Some(reply) = ws.recv().await {
///     println!("{:?}", reply?);
/// }
/// ws.close(socketry::CloseCode::NORMAL, "done").await?;
/// # Ok(()) }
/// # let _ = run;
/// ```
pub async fn connect(url: &str) -> Result<(WebSocket<MaybeTlsStream>, Response<()>), Error> {
    Connector::new().connect(url).await
}

/// Client settings (gorilla's `Dialer`): extra headers, subprotocols, handshake timeout,
/// TLS configuration and the connection's [`WebSocketConfig`].
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), socketry::Error> {
/// use socketry::{Connector, http::{HeaderName, HeaderValue}};
///
/// let (_ws, response) = Connector::new()
///     .protocols(["chat.v2"])
///     .header(HeaderName::from_static("authorization"), HeaderValue::from_static("Bearer t"))
///     .connect("wss://example.com/socket")
///     .await?;
/// assert_eq!(response.status(), 101);
/// # Ok(()) }
/// # let _ = run;
/// ```
#[derive(Debug, Clone)]
pub struct Connector {
    config: WebSocketConfig,
    protocols: Vec<String>,
    headers: HeaderMap,
    handshake_timeout: Duration,
    dial_timeout: Option<Duration>,
    proxy: Option<Result<Proxy, crate::error::UrlError>>,
    proxy_from_env: bool,
    #[cfg(feature = "rustls")]
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    #[cfg(feature = "http2")]
    http2: Http2,
    #[cfg(feature = "http2")]
    http2_config: crate::Http2Config,
    /// Shared by clones: their sockets to one origin share HTTP/2 connections.
    #[cfg(feature = "http2")]
    pool: Arc<crate::http2::Pool>,
}

/// Whether a [`Connector`] opens WebSockets over HTTP/2 (RFC 8441; feature `http2`).
///
/// Over HTTP/2, every socket to one origin is a stream of one shared connection: one TCP and
/// TLS handshake for all of them. The connection ends with its last socket.
#[cfg(feature = "http2")]
#[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Http2 {
    /// HTTP/1.1 only, one connection per socket (the default).
    #[default]
    Never,
    /// `wss://` offers `h2` by ALPN and uses it when the server picks it and allows extended
    /// CONNECT; otherwise the socket falls back to HTTP/1.1 (and the origin is sent HTTP/1.1
    /// for the next 5 minutes). `ws://` stays HTTP/1.1.
    Negotiate,
    /// As [`Negotiate`](Self::Negotiate), and `ws://` speaks HTTP/2 from the first byte
    /// ("prior knowledge", RFC 9113 §3.3), falling back to HTTP/1.1 on a new connection when
    /// the server does not.
    PriorKnowledge,
}

#[cfg(feature = "http2")]
impl Http2 {
    fn applies(self, target: &Target) -> bool {
        match self {
            Self::Never => false,
            Self::Negotiate => target.tls,
            Self::PriorKnowledge => true,
        }
    }
}

/// A connection and the server's answer, or why there is none.
#[cfg(feature = "http2")]
type Connected = Result<(WebSocket<MaybeTlsStream>, Response<()>), Error>;

/// What trying HTTP/2 came to.
#[cfg(feature = "http2")]
enum Attempt {
    /// A WebSocket, or a final error (a refusal by the server is one).
    Done(Box<Connected>),
    /// The server picked HTTP/1.1 by ALPN on this stream: handshake on it.
    Http1(MaybeTlsStream),
    /// HTTP/2 was not to be had: a new connection for HTTP/1.1.
    Fallback,
}

impl Default for Connector {
    fn default() -> Self {
        Self::new()
    }
}

impl Connector {
    /// Default settings: no extra headers or subprotocols, a 10 s handshake timeout, the
    /// webpki root certificates, default limits.
    pub fn new() -> Self {
        Self {
            config: WebSocketConfig::default(),
            protocols: Vec::new(),
            headers: HeaderMap::new(),
            handshake_timeout: Duration::from_secs(10),
            dial_timeout: None,
            proxy: None,
            proxy_from_env: false,
            #[cfg(feature = "rustls")]
            tls: None,
            #[cfg(feature = "http2")]
            http2: Http2::Never,
            #[cfg(feature = "http2")]
            http2_config: crate::Http2Config::new(),
            #[cfg(feature = "http2")]
            pool: Arc::default(),
        }
    }

    /// Whether to open WebSockets over HTTP/2 (RFC 8441). The default value is
    /// [`Http2::Never`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), socketry::Error> {
    /// use socketry::{Connector, Http2};
    ///
    /// let connector = Connector::new().http2(Http2::Negotiate);
    /// // Both sockets are streams of one HTTP/2 connection, if the server allows it.
    /// let (a, response) = connector.connect("wss://example.com/chat").await?;
    /// let (b, _) = connector.connect("wss://example.com/chat").await?;
    /// println!("{:?}, {}", response.version(), a.get_ref().is_http2());
    /// # drop(b);
    /// # Ok(()) }
    /// # let _ = run;
    /// ```
    #[cfg(feature = "http2")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
    #[must_use]
    pub fn http2(mut self, mode: Http2) -> Self {
        self.http2 = mode;
        self.own_pool();
        self
    }

    /// The HTTP/2 settings of the connections this connector opens. The default value is
    /// [`Http2Config::new`](crate::Http2Config::new).
    #[cfg(feature = "http2")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
    #[must_use]
    pub fn http2_config(mut self, config: crate::Http2Config) -> Self {
        self.http2_config = config;
        self.own_pool();
        self
    }

    /// The connection settings. The default value is [`WebSocketConfig::default`].
    #[must_use]
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.config = config;
        self
    }

    /// The subprotocols to offer, in order of preference. The default value is none.
    #[must_use]
    pub fn protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a header to the opening request (cookies, authorization, origin, …).
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Adds a cookie to the opening request's `Cookie` header (gorilla's `Jar`, for the
    /// cookies you already hold; the server's `Set-Cookie` headers are in the returned
    /// response).
    ///
    /// # Panics
    ///
    /// If `name` or `value` holds characters a header cannot carry (control characters).
    #[must_use]
    pub fn cookie(mut self, name: &str, value: &str) -> Self {
        let pair = format!("{name}={value}");
        let joined = match self
            .headers
            .get(http::header::COOKIE)
            .and_then(|v| v.to_str().ok())
        {
            Some(existing) => format!("{existing}; {pair}"),
            None => pair,
        };
        let value = HeaderValue::from_str(&joined).expect("cookie name and value are header-safe");
        self.headers.insert(http::header::COOKIE, value);
        self
    }

    /// Connects through an HTTP proxy with `CONNECT`: `http://[user:password@]host[:port]`
    /// (basic auth when credentials are given). The default value is no proxy.
    #[must_use]
    pub fn proxy(mut self, url: &str) -> Self {
        self.proxy = Some(Proxy::parse(url));
        self.own_pool();
        self
    }

    /// Takes the proxy from `HTTPS_PROXY` (`wss://`) or `HTTP_PROXY` (`ws://`), upper or lower
    /// case, unless `NO_PROXY` lists the host, when no explicit [`proxy`](Self::proxy) is set.
    /// The default value is `false`: the environment is ignored.
    #[must_use]
    pub fn proxy_from_env(mut self, enabled: bool) -> Self {
        self.proxy_from_env = enabled;
        self.own_pool();
        self
    }

    /// How long opening the TCP connection (to the server or the proxy) may take. The default
    /// value is `None`: only the handshake timeout bounds it.
    #[must_use]
    pub fn dial_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.dial_timeout = timeout;
        self.own_pool();
        self
    }

    /// How long connecting, TLS and the opening handshake may take together. The default
    /// value is 10 seconds.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The rustls configuration for `wss://`. The default trusts the webpki roots.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    #[must_use]
    pub fn tls_config(mut self, config: Arc<tokio_rustls::rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self.own_pool();
        self
    }

    /// A pool of its own, once a setting of how connections are made changed: a clone made
    /// before must not hand this connector's sockets its connections, nor take ours.
    #[cfg_attr(not(feature = "http2"), allow(clippy::needless_pass_by_ref_mut))]
    fn own_pool(&mut self) {
        #[cfg(feature = "http2")]
        {
            self.pool = Arc::default();
        }
    }

    /// Opens a TCP (and for `wss://`, TLS) connection to `url` and performs the handshake.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`], [`Error::Io`] when connecting fails, [`Error::Timeout`], and
    /// [`Error::Handshake`] for a malformed answer; [`Error::Http`] for a refusal (a status
    /// other than 101, or than 2xx over HTTP/2), with the response's headers and body to debug it ([`Error::status`] gives the
    /// status).
    pub async fn connect(
        &self,
        url: &str,
    ) -> Result<(WebSocket<MaybeTlsStream>, Response<()>), Error> {
        let target = Target::parse(url)?;
        let proxy = match &self.proxy {
            Some(Ok(proxy)) => Some(proxy.clone()),
            Some(Err(err)) => return Err(err.clone().into()),
            None if self.proxy_from_env => {
                Proxy::from_env(&target.host, target.tls, |name| std::env::var(name).ok())?
            }
            None => None,
        };
        let connect = async {
            #[cfg(feature = "http2")]
            if self.http2.applies(&target) {
                match self.try_http2(&target, proxy.as_ref()).await {
                    Attempt::Done(result) => return *result,
                    Attempt::Http1(stream) => {
                        return self.handshake_inner(stream, target.uri).await;
                    }
                    Attempt::Fallback => {}
                }
            }
            let stream = self.dial(&target, proxy.as_ref(), false).await?;
            self.handshake_inner(stream, target.uri).await
        };
        tokio::time::timeout(self.handshake_timeout, connect)
            .await
            .map_err(|_| Error::Timeout(crate::Timeout::Handshake))?
    }

    /// Opens TCP to the server or the proxy (then the tunnel), then TLS for `wss://`, offering
    /// `h2` by ALPN when `offer_h2`.
    async fn dial(
        &self,
        target: &Target,
        proxy: Option<&Proxy>,
        offer_h2: bool,
    ) -> Result<MaybeTlsStream, Error> {
        let (host, port) = match proxy {
            Some(proxy) => (proxy.host.as_str(), proxy.port),
            None => (target.host.as_str(), target.port),
        };
        let dial = TcpStream::connect((host, port));
        let mut tcp = match self.dial_timeout {
            Some(timeout) => tokio::time::timeout(timeout, dial)
                .await
                .map_err(|_| Error::Timeout(crate::Timeout::Dial))??,
            None => dial.await?,
        };
        tcp.set_nodelay(true)?;
        if let Some(proxy) = proxy {
            proxy.tunnel(&mut tcp, &target.host, target.port).await?;
        }
        self.wrap_tls(tcp, target, offer_h2).await
    }

    /// Opens the socket as a stream of a shared HTTP/2 connection to the origin, dialling one
    /// if none has room.
    #[cfg(feature = "http2")]
    async fn try_http2(&self, target: &Target, proxy: Option<&Proxy>) -> Attempt {
        // Host names are case-insensitive: one origin, one slot.
        let origin = format!(
            "{}://{}:{}",
            if target.tls { "wss" } else { "ws" },
            target.host.to_ascii_lowercase(),
            target.port
        );
        let slot = self.pool.slot(&origin);
        // A stream the server refused or never processed (REFUSED_STREAM, GOAWAY) goes to a
        // fresh connection once (RFC 9113 §8.7); the failed one is no longer handed out.
        let mut refused_by: Option<Arc<crate::http2::client::Conn>> = None;
        loop {
            // Held while dialling, so that concurrent sockets to the origin wait for this
            // connection instead of each opening one.
            let mut guard = slot.lock().await;
            if guard.http1_only() {
                return Attempt::Fallback;
            }
            let conn = match guard.live(refused_by.as_ref()) {
                Some(conn) => conn,
                None => {
                    let stream = match self.dial(target, proxy, true).await {
                        Ok(stream) => stream,
                        Err(err) => return Attempt::Done(Box::new(Err(err))),
                    };
                    if !stream_speaks_h2(&stream) {
                        guard.remember_http1();
                        return Attempt::Http1(stream);
                    }
                    let prior_knowledge = !target.tls;
                    let handshake =
                        crate::http2::client_handshake(stream, &self.http2_config, prior_knowledge);
                    match handshake.await {
                        Ok(conn) => {
                            guard.add(&conn);
                            conn
                        }
                        // Not HTTP/2 (prior knowledge refused), no extended CONNECT: remembered.
                        // A transient failure is not.
                        Err(failed) => {
                            if failed.not_http2 {
                                guard.remember_http1();
                            }
                            return Attempt::Fallback;
                        }
                    }
                }
            };
            drop(guard);
            match self.handshake_http2(&conn, &target.uri).await {
                Err(crate::http2::OpenFailed::Retry(_)) if refused_by.is_none() => {
                    refused_by = Some(conn);
                }
                outcome => return Attempt::Done(Box::new(outcome.map_err(Error::from))),
            }
        }
    }

    /// The extended CONNECT on a new stream of `conn`, and its answer checked.
    #[cfg(feature = "http2")]
    async fn handshake_http2(
        &self,
        conn: &Arc<crate::http2::client::Conn>,
        uri: &Uri,
    ) -> Result<(WebSocket<MaybeTlsStream>, Response<()>), crate::http2::OpenFailed> {
        use crate::http2::OpenFailed::Fatal;
        let headers = self.request_headers(uri).map_err(Fatal)?;
        let offer = self.config.get_compression();
        let scheme = if uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("wss"))
        {
            "https"
        } else {
            "http"
        };
        // The authority without credentials: they went into `Authorization`.
        let authority = uri
            .authority()
            .map(|a| {
                a.as_str()
                    .rsplit_once('@')
                    .map_or(a.as_str(), |(_, host)| host)
            })
            .unwrap_or_default();
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let h2_uri = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path)
            .build()
            .map_err(|e| {
                Fatal(
                    UrlError::new(redact_userinfo(uri), "not a valid target")
                        .caused_by(e)
                        .into(),
                )
            })?;
        let request = handshake::connect_request(h2_uri, &headers, &self.protocols);
        let (stream, response) = crate::http2::open(conn, request).await?;
        let accepted = match handshake::validate_connect_response(&response, &self.protocols, offer)
        {
            Ok(accepted) => accepted,
            Err(HandshakeError::UnexpectedStatus(_)) => {
                return Err(Fatal(crate::http2::refused(stream, response).await));
            }
            // Never established: reset the stream (CANCEL) by dropping it.
            Err(err) => return Err(Fatal(err.into())),
        };
        let ws = WebSocket::from_parts(
            MaybeTlsStream::H2(stream),
            Role::Client,
            self.config,
            &[],
            accepted.protocol,
            accepted.deflate,
        );
        Ok((ws, response))
    }

    /// Performs the opening handshake over a stream the caller connected, for `url`.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), without the connection errors.
    pub async fn handshake<S>(
        &self,
        stream: S,
        url: &str,
    ) -> Result<(WebSocket<S>, Response<()>), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let uri = Target::parse(url)?.uri;
        tokio::time::timeout(self.handshake_timeout, self.handshake_inner(stream, uri))
            .await
            .map_err(|_| Error::Timeout(crate::Timeout::Handshake))?
    }

    async fn handshake_inner<S>(
        &self,
        mut stream: S,
        uri: Uri,
    ) -> Result<(WebSocket<S>, Response<()>), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut request = Request::new(());
        *request.headers_mut() = self.request_headers(&uri)?;
        *request.uri_mut() = uri;
        let offer = self.config.get_compression();
        let key = handshake::generate_key();
        let mut head = Vec::with_capacity(256);
        handshake::write_request(&request, &key, &self.protocols, &mut head);
        stream.write_all(&head).await?;
        stream.flush().await?;
        let (response, leftover) = read_head(&mut stream, handshake::parse_response).await?;
        let accepted = match handshake::validate_response(&response, &key, &self.protocols, offer) {
            Ok(accepted) => accepted,
            Err(HandshakeError::UnexpectedStatus(_)) => {
                return Err(refused(stream, response, leftover).await);
            }
            Err(err @ HandshakeError::UnexpectedExtension(_)) => {
                // The handshake failed, so the connection was never established (RFC 6455
                // §4.1): no close frame, just end TCP.
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
                return Err(err.into());
            }
            Err(err) => return Err(err.into()),
        };
        let ws = WebSocket::from_parts(
            stream,
            Role::Client,
            self.config,
            &leftover,
            accepted.protocol,
            accepted.deflate,
        );
        Ok((ws, response))
    }

    /// The configured headers, plus basic auth from the URL's credentials (gorilla's rule)
    /// unless an `Authorization` header was set.
    /// The opening request's headers on either HTTP version: the user's, `Authorization` from
    /// the URL's credentials, and the compression offer (unless the user set one).
    fn request_headers(&self, uri: &Uri) -> Result<HeaderMap, Error> {
        let mut headers = self.headers.clone();
        if let Some(offer) = self.config.get_compression()
            && !headers.contains_key(http::header::SEC_WEBSOCKET_EXTENSIONS)
        {
            let value = HeaderValue::from_str(&offer.offer()).expect("the offer is a valid header");
            headers.insert(http::header::SEC_WEBSOCKET_EXTENSIONS, value);
        }
        let userinfo = uri
            .authority()
            .and_then(|a| a.as_str().rsplit_once('@'))
            .map(|(userinfo, _)| userinfo);
        if let Some(userinfo) = userinfo
            && !headers.contains_key(http::header::AUTHORIZATION)
        {
            let credentials = crate::proxy::basic_credentials(userinfo).ok_or_else(|| {
                UrlError::new(redact_userinfo(uri), "invalid percent-encoding in userinfo")
            })?;
            let value = HeaderValue::from_str(&format!("Basic {credentials}"))
                .expect("base64 is a valid header value");
            headers.insert(http::header::AUTHORIZATION, value);
        }
        Ok(headers)
    }

    async fn wrap_tls(
        &self,
        tcp: TcpStream,
        target: &Target,
        offer_h2: bool,
    ) -> Result<MaybeTlsStream, Error> {
        if !target.tls {
            return Ok(MaybeTlsStream::Plain(tcp));
        }
        #[cfg(feature = "rustls")]
        {
            use tokio_rustls::rustls::pki_types::ServerName;
            let config = client_alpn(
                self.tls.clone().unwrap_or_else(default_tls_config),
                offer_h2,
            );
            let name = ServerName::try_from(target.host.clone()).map_err(|e| {
                UrlError::new(redact_userinfo(&target.uri), "invalid tls server name").caused_by(e)
            })?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(MaybeTlsStream::Rustls(Box::new(tls)))
        }
        #[cfg(not(feature = "rustls"))]
        {
            let _ = offer_h2;
            drop(tcp);
            Err(UrlError::new(
                redact_userinfo(&target.uri),
                "wss:// needs the `rustls` feature",
            )
            .into())
        }
    }
}

/// `config` with an ALPN list that matches what the connection will speak: `h2` first when
/// offered (and `http/1.1` when the list was empty), `h2` taken out otherwise, so that a
/// fallback or an HTTP/1.1-only connector never lands on HTTP/2 it would not speak. The rest
/// of a user's list stays as it was.
#[cfg(feature = "rustls")]
fn client_alpn(
    config: Arc<tokio_rustls::rustls::ClientConfig>,
    offer_h2: bool,
) -> Arc<tokio_rustls::rustls::ClientConfig> {
    let protocols = &config.alpn_protocols;
    let has_h2 = protocols.iter().any(|p| p == b"h2");
    if offer_h2 == has_h2 && !(offer_h2 && protocols[0] != b"h2") {
        return config;
    }
    let mut config = Arc::unwrap_or_clone(config);
    config.alpn_protocols.retain(|p| p != b"h2");
    if offer_h2 {
        if config.alpn_protocols.is_empty() {
            config.alpn_protocols.push(b"http/1.1".to_vec());
        }
        config.alpn_protocols.insert(0, b"h2".to_vec());
    }
    Arc::new(config)
}

/// Whether a freshly dialled stream is to speak HTTP/2: TLS whose ALPN picked `h2`, or
/// cleartext (prior knowledge; only dialled so when that was asked for).
#[cfg(feature = "http2")]
fn stream_speaks_h2(stream: &MaybeTlsStream) -> bool {
    match stream {
        MaybeTlsStream::Plain(_) => true,
        #[cfg(feature = "rustls")]
        MaybeTlsStream::Rustls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        MaybeTlsStream::H2(_) => false,
    }
}

#[cfg(feature = "rustls")]
fn default_tls_config() -> Arc<tokio_rustls::rustls::ClientConfig> {
    use std::sync::OnceLock;
    use tokio_rustls::rustls;
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// A refused handshake as [`Error::Http`]: the response and up to [`MAX_ERROR_BODY`] bytes of
/// its body: what its `Content-Length` announces (read for one second at most), else what
/// arrived with the head (a chunked or open-ended body is not waited for).
async fn refused<S>(mut stream: S, response: Response<()>, leftover: BytesMut) -> Error
where
    S: AsyncRead + Unpin,
{
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let want = declared.unwrap_or(0).min(MAX_ERROR_BODY);
    let mut body = leftover;
    body.truncate(declared.map_or(MAX_ERROR_BODY, |_| want));
    let read = async {
        while body.len() < want {
            let mut chunk = (&mut stream).take((want - body.len()) as u64);
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

/// The URL for error messages, without its credentials.
fn redact_userinfo(uri: &Uri) -> String {
    crate::proxy::redact(&uri.to_string())
}

/// A parsed `ws://` or `wss://` URL.
#[derive(Debug)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
    uri: Uri,
}

impl Target {
    fn parse(url: &str) -> Result<Self, Error> {
        let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| {
            UrlError::new(crate::proxy::redact(url), "not a url").caused_by(e)
        })?;
        let tls = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("ws") => false,
            Some(s) if s.eq_ignore_ascii_case("wss") => true,
            _ => {
                return Err(
                    UrlError::new(redact_userinfo(&uri), "scheme must be ws or wss").into(),
                );
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| UrlError::new(redact_userinfo(&uri), "no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self {
            tls,
            host,
            port,
            uri,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "rustls")]
    #[test]
    fn alpn_offers_h2_only_when_the_connection_will_speak_it() {
        let with = |list: &[&[u8]]| {
            let mut config = Arc::unwrap_or_clone(default_tls_config());
            config.alpn_protocols = list.iter().map(|p| p.to_vec()).collect();
            Arc::new(config)
        };
        let list = |config: Arc<tokio_rustls::rustls::ClientConfig>| config.alpn_protocols.clone();
        let h2 = b"h2".to_vec();
        let h1 = b"http/1.1".to_vec();
        assert_eq!(list(client_alpn(with(&[]), true)), [h2.clone(), h1.clone()]);
        assert!(list(client_alpn(with(&[]), false)).is_empty());
        // A user's list keeps its other entries; h2 goes first when offered, out otherwise.
        assert_eq!(
            list(client_alpn(with(&[b"http/1.1", b"h2"]), true)),
            [h2.clone(), h1.clone()]
        );
        assert_eq!(
            list(client_alpn(with(&[b"h2", b"http/1.1"]), false)),
            std::slice::from_ref(&h1)
        );
        assert_eq!(list(client_alpn(with(&[b"http/1.1"]), true)), [h2, h1]);
    }

    #[test]
    fn urls_are_parsed_with_default_ports() {
        let t = Target::parse("ws://example.com/chat?x=1").unwrap();
        assert!(!t.tls);
        assert_eq!((t.host.as_str(), t.port), ("example.com", 80));
        let t = Target::parse("wss://example.com").unwrap();
        assert!(t.tls);
        assert_eq!(t.port, 443);
        let t = Target::parse("ws://[::1]:9001/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9001));
    }

    #[test]
    fn non_websocket_urls_are_refused() {
        for url in ["http://example.com", "example.com", "ws:///path", ""] {
            assert!(
                matches!(Target::parse(url), Err(Error::InvalidUrl(_))),
                "{url}"
            );
        }
    }
}
