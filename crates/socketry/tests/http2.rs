//! WebSockets over HTTP/2 (RFC 8441): our client and our server, many sockets on one
//! connection, over TLS with ALPN and over cleartext with prior knowledge, the fallbacks to
//! HTTP/1.1, and the requests a server must refuse.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use socketry::{
    Acceptor, CloseCode, Connector, Error, H2Stream, Http2, Listener, MaybeTlsStream, Message,
    ServerStream, WebSocket, WebSocketConfig,
};
use support::*;
use tokio::{io::AsyncWriteExt, net::TcpListener, sync::mpsc};
use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer};

/// A self-signed certificate for `localhost`: the server's config and a client trusting it.
fn tls_pair() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_der = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let server = socketry::tls::server_config(vec![cert_der.clone()], key).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, Arc::new(client))
}

/// How a test reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// HTTP/1.1 over TLS: one connection per socket.
    Http1,
    /// HTTP/2 over TLS (ALPN `h2`).
    Http2,
    /// HTTP/2 over cleartext TCP (prior knowledge).
    Http2Cleartext,
}

const ALL: [Transport; 3] = [
    Transport::Http1,
    Transport::Http2,
    Transport::Http2Cleartext,
];

/// A server on a loopback port over `transport`, and a client connector for it.
struct Setup {
    incoming: socketry::Incoming,
    connector: Connector,
    url: String,
}

async fn setup(transport: Transport, acceptor: Acceptor, client: WebSocketConfig) -> Setup {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let (server_tls, client_tls) = tls_pair();
    let listener = Listener::new(acceptor);
    let (listener, url, mode) = match transport {
        // TLS without HTTP/2: the server offers only `http/1.1` by ALPN, so the client, which
        // offers `h2` too, falls back.
        Transport::Http1 => (
            listener.tls(server_tls),
            format!("wss://localhost:{port}/chat"),
            Http2::Negotiate,
        ),
        Transport::Http2 => (
            listener.http2(socketry::Http2Config::new()).tls(server_tls),
            format!("wss://localhost:{port}/chat"),
            Http2::Negotiate,
        ),
        Transport::Http2Cleartext => (
            listener.http2(socketry::Http2Config::new()),
            format!("ws://127.0.0.1:{port}/chat"),
            Http2::PriorKnowledge,
        ),
    };
    let connector = Connector::new()
        .tls_config(client_tls)
        .http2(mode)
        .config(client);
    Setup {
        incoming: listener.serve(tcp),
        connector,
        url,
    }
}

impl Setup {
    /// Echoes every socket the server accepts, each in its own task; reports how each ended.
    fn echo(mut self) -> (Connector, String, mpsc::UnboundedReceiver<Ending>) {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some((ws, request)) = self.incoming.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(echo_until_end(ws, request.version()).await);
                });
            }
        });
        (self.connector, self.url, rx)
    }
}

/// How a server-side socket ended.
#[derive(Debug)]
struct Ending {
    version: http::Version,
    close: Option<(u16, String)>,
    error: Option<String>,
}

/// Records the peer's close frame (and answers it with its code, as by default).
fn record_close<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
) -> Arc<Mutex<Option<(u16, String)>>> {
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    ws.set_close_handler(Some(Box::new(
        move |frame: Option<&socketry::CloseFrame>| {
            *record.lock().unwrap() = frame.map(|c| (u16::from(c.code), c.reason.clone()));
            frame.map(|c| socketry::CloseFrame::new(c.code, ""))
        },
    )));
    seen
}

async fn echo_until_end(mut ws: WebSocket<ServerStream>, version: http::Version) -> Ending {
    let close = record_close(&mut ws);
    let ending = |err: Option<Error>| Ending {
        version,
        close: close.lock().unwrap().clone(),
        error: err.map(|e| e.to_string()),
    };
    loop {
        match ws.recv().await {
            Some(Ok(message)) if message.is_text() || message.is_binary() => {
                if let Err(err) = ws.send(message).await {
                    return ending(Some(err));
                }
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => return ending(Some(err)),
            None => return ending(None),
        }
    }
}

fn stream_id(ws: &WebSocket<MaybeTlsStream>) -> Option<u32> {
    match ws.get_ref() {
        MaybeTlsStream::H2(stream) => Some(stream.stream_id()),
        _ => None,
    }
}

/// The sizes around every length encoding and buffer boundary.
const SIZES: [usize; 9] = [0, 1, 125, 126, 127, 65_535, 65_536, 65_537, 300_000];

#[tokio::test]
async fn a_hundred_sockets_share_one_connection_and_echo_every_size() {
    for transport in [Transport::Http2, Transport::Http2Cleartext] {
        let (connector, url, _endings) =
            setup(transport, Acceptor::new(), WebSocketConfig::default())
                .await
                .echo();
        let mut sockets = Vec::new();
        for _ in 0..100 {
            let (ws, response) = bounded(connector.connect(&url)).await.unwrap();
            assert_eq!(response.version(), http::Version::HTTP_2, "{transport:?}");
            assert_eq!(response.status(), 200);
            sockets.push(ws);
        }
        // Client streams on one connection are numbered 1, 3, 5…: a hundred connections would
        // each have started at 1.
        let mut ids: Vec<u32> = sockets.iter().map(|ws| stream_id(ws).unwrap()).collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            (0..100).map(|i| 2 * i + 1).collect::<Vec<_>>(),
            "{transport:?}"
        );
        // Every socket echoes every size at once, text and binary.
        let tasks = sockets.into_iter().enumerate().map(|(i, mut ws)| {
            tokio::spawn(async move {
                for &len in &SIZES {
                    // The largest sizes on a tenth of the sockets, to keep the test short.
                    if len > 70_000 && i % 10 != 0 {
                        continue;
                    }
                    let message = if i % 2 == 0 {
                        text_message(len)
                    } else {
                        Message::binary(binary_of(len))
                    };
                    ws.send(message.clone()).await.unwrap();
                    assert_eq!(ws.recv().await.unwrap().unwrap(), message, "size {len}");
                }
                ws.close(CloseCode::NORMAL, "done").await.unwrap();
                assert!(ws.recv().await.is_none());
            })
        });
        for task in tasks {
            bounded(task).await.unwrap();
        }
    }
}

#[tokio::test]
async fn one_socket_closing_leaves_the_others_open() {
    for transport in [Transport::Http2, Transport::Http2Cleartext] {
        let (connector, url, mut endings) =
            setup(transport, Acceptor::new(), WebSocketConfig::default())
                .await
                .echo();
        let (mut a, _) = connector.connect(&url).await.unwrap();
        let (mut b, _) = connector.connect(&url).await.unwrap();
        let (mut c, _) = connector.connect(&url).await.unwrap();
        a.close(CloseCode::new(4001), "first one out")
            .await
            .unwrap();
        assert!(bounded(a.recv()).await.is_none());
        let ended = bounded(endings.recv()).await.unwrap();
        assert_eq!(ended.version, http::Version::HTTP_2);
        assert_eq!(ended.close, Some((4001, "first one out".to_owned())));
        assert_eq!(ended.error, None);
        for ws in [&mut b, &mut c] {
            assert_echo(ws, "still here").await;
        }
        // The server's close reaches the client on its stream, code and reason intact.
        drop((b, c));
    }
}

#[tokio::test]
async fn the_server_closing_one_stream_is_seen_by_its_client_only() {
    let mut setup = setup(
        Transport::Http2,
        Acceptor::new(),
        WebSocketConfig::default(),
    )
    .await;
    let connector = setup.connector.clone();
    let url = setup.url.clone();
    let client = tokio::spawn(async move {
        let (a, _) = connector.connect(&url).await.unwrap();
        let (b, _) = connector.connect(&url).await.unwrap();
        (a, b)
    });
    let (mut first, _) = bounded(setup.incoming.accept()).await.unwrap();
    let (mut second, _) = bounded(setup.incoming.accept()).await.unwrap();
    let (mut a, mut b) = bounded(client).await.unwrap();
    // Which server socket is which client's: the first message tells.
    a.send("a").await.unwrap();
    let first_is_a = bounded(first.recv()).await.unwrap().unwrap() == Message::text("a");
    let (a_server, b_server) = if first_is_a {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    if !first_is_a {
        assert_eq!(
            bounded(a_server.recv()).await.unwrap().unwrap(),
            Message::text("a")
        );
    }
    let seen = record_close(&mut a);
    let closing = tokio::spawn(async move {
        while let Some(next) = a.recv().await {
            assert!(next.is_ok(), "{next:?}");
        }
    });
    a_server
        .close(CloseCode::GOING_AWAY, "restarting")
        .await
        .unwrap();
    bounded(closing).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), Some((1001, "restarting".to_owned())));
    b.send("b").await.unwrap();
    assert_eq!(
        bounded(b_server.recv()).await.unwrap().unwrap(),
        Message::text("b")
    );
    b_server.send("back").await.unwrap();
    assert_eq!(
        bounded(b.recv()).await.unwrap().unwrap(),
        Message::text("back")
    );
}

#[tokio::test]
async fn a_reset_stream_ends_its_socket_and_no_other() {
    for transport in [Transport::Http2, Transport::Http2Cleartext] {
        let (connector, url, mut endings) =
            setup(transport, Acceptor::new(), WebSocketConfig::default())
                .await
                .echo();
        let (mut a, _) = connector.connect(&url).await.unwrap();
        let (mut b, _) = connector.connect(&url).await.unwrap();
        assert_echo(&mut a, "before").await;
        // RST_STREAM(CANCEL): the abrupt end of RFC 8441 §5, as a vanished peer.
        let MaybeTlsStream::H2(stream) = a.get_mut() else {
            unreachable!()
        };
        stream.reset();
        let ended = bounded(endings.recv()).await.unwrap();
        assert_eq!(ended.close, None, "{transport:?}");
        assert!(ended.error.is_some(), "{transport:?}: {ended:?}");
        assert_echo(&mut b, "after").await;
        // The reset socket reports the end, not a hang.
        assert!(matches!(bounded(a.recv()).await, None | Some(Err(_))));
    }
}

#[tokio::test]
async fn dropping_a_socket_resets_its_stream() {
    let (connector, url, mut endings) = setup(
        Transport::Http2,
        Acceptor::new(),
        WebSocketConfig::default(),
    )
    .await
    .echo();
    let (a, _) = connector.connect(&url).await.unwrap();
    let (mut b, _) = connector.connect(&url).await.unwrap();
    drop(a);
    let ended = bounded(endings.recv()).await.unwrap();
    assert_eq!(ended.close, None);
    assert!(ended.error.is_some(), "{ended:?}");
    assert_echo(&mut b, "after").await;
}

/// Runs `f` once per transport with the message-level checks, so that they hold over
/// HTTP/1.1 and HTTP/2 alike.
#[tokio::test]
async fn limits_hold_on_every_transport() {
    for transport in ALL {
        let config = WebSocketConfig::default().max_message_size(Some(1000));
        let (connector, url, mut endings) = setup(
            transport,
            Acceptor::new().config(config),
            WebSocketConfig::default(),
        )
        .await
        .echo();
        let (mut ws, response) = connector.connect(&url).await.unwrap();
        let seen = record_close(&mut ws);
        let expected = if transport == Transport::Http1 {
            http::Version::HTTP_11
        } else {
            http::Version::HTTP_2
        };
        assert_eq!(response.version(), expected, "{transport:?}");
        ws.send(Message::binary(vec![7u8; 1000])).await.unwrap();
        assert_eq!(bounded(ws.recv()).await.unwrap().unwrap().len(), 1000);
        ws.send(Message::binary(vec![7u8; 1001])).await.unwrap();
        // The server refuses it with 1009 and the client sees that close.
        while let Some(next) = bounded(ws.recv()).await {
            assert!(
                matches!(next, Ok(Message::Close(_))),
                "{transport:?}: {next:?}"
            );
        }
        assert_eq!(
            seen.lock().unwrap().as_ref().unwrap().0,
            1009,
            "{transport:?}"
        );
        let ended = bounded(endings.recv()).await.unwrap();
        assert!(ended.error.unwrap().contains("exceeds"), "{transport:?}");
    }
}

#[tokio::test]
async fn compression_is_negotiated_on_every_transport() {
    for transport in ALL {
        let deflate =
            WebSocketConfig::default().compression(Some(socketry::DeflateConfig::default()));
        let (connector, url, _endings) = setup(transport, Acceptor::new().config(deflate), deflate)
            .await
            .echo();
        let (mut ws, response) = connector.connect(&url).await.unwrap();
        assert!(
            response
                .headers()
                .get("sec-websocket-extensions")
                .is_some_and(|v| v.to_str().unwrap().contains("permessage-deflate")),
            "{transport:?}"
        );
        assert!(ws.compression().is_some(), "{transport:?}");
        for len in [0, 10, 100_000] {
            ws.send(text_message(len)).await.unwrap();
            assert_eq!(
                bounded(ws.recv()).await.unwrap().unwrap(),
                text_message(len)
            );
        }
    }
}

#[tokio::test]
async fn subprotocols_are_chosen_on_every_transport() {
    for transport in ALL {
        let acceptor = Acceptor::new().protocols(["chat.v2", "chat.v1"]);
        let (connector, url, _endings) = setup(transport, acceptor, WebSocketConfig::default())
            .await
            .echo();
        let (ws, response) = connector
            .protocols(["chat.v1"])
            .connect(&url)
            .await
            .unwrap();
        assert_eq!(ws.protocol(), Some("chat.v1"), "{transport:?}");
        assert_eq!(response.headers()["sec-websocket-protocol"], "chat.v1");
    }
}

#[tokio::test]
async fn keepalive_and_read_timeouts_work_on_every_transport() {
    for transport in ALL {
        // The server pings every 100 ms; the client answers; nothing times out.
        let server = WebSocketConfig::default().keepalive(Some((
            Duration::from_millis(100),
            Duration::from_millis(500),
        )));
        let mut setup = setup(
            transport,
            Acceptor::new().config(server),
            WebSocketConfig::default(),
        )
        .await;
        let connector = setup.connector.clone();
        let url = setup.url.clone();
        let client = tokio::spawn(async move {
            let (mut ws, _) = connector.connect(&url).await.unwrap();
            // Read until the server closes: a read loop answers the pings.
            while let Some(Ok(_)) = ws.recv().await {}
            ws
        });
        let (mut ws, _) = bounded(setup.incoming.accept()).await.unwrap();
        let start = tokio::time::Instant::now();
        let mut pongs = 0;
        while let Ok(next) =
            tokio::time::timeout_at(start + Duration::from_millis(700), ws.recv()).await
        {
            assert!(
                matches!(next, Some(Ok(Message::Pong(_)))),
                "{transport:?}: {next:?}"
            );
            pongs += 1;
        }
        assert!(pongs >= 3, "{transport:?}: {pongs} pongs");
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        bounded(client).await.unwrap();

        // A read timeout on a silent peer.
        let server = WebSocketConfig::default().read_timeout(Some(Duration::from_millis(100)));
        let mut setup = setup_again(transport, server).await;
        let connector = setup.connector.clone();
        let url = setup.url.clone();
        let _client = tokio::spawn(async move {
            let (ws, _) = connector.connect(&url).await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(ws);
        });
        let (mut ws, _) = bounded(setup.incoming.accept()).await.unwrap();
        let err = bounded(ws.recv()).await.unwrap().unwrap_err();
        assert!(
            matches!(err, Error::Timeout(socketry::Timeout::Read)),
            "{transport:?}: {err}"
        );
    }
}

async fn setup_again(transport: Transport, server: WebSocketConfig) -> Setup {
    setup(
        transport,
        Acceptor::new().config(server),
        WebSocketConfig::default(),
    )
    .await
}

#[tokio::test]
async fn split_halves_and_streaming_work_on_every_transport() {
    for transport in ALL {
        let (connector, url, _endings) =
            setup(transport, Acceptor::new(), WebSocketConfig::default())
                .await
                .echo();
        let (ws, _) = connector.connect(&url).await.unwrap();
        let (mut reader, mut writer) = ws.split();
        let writing = tokio::spawn(async move {
            for i in 0..50 {
                writer.send(format!("message {i}")).await.unwrap();
            }
            // A message streamed in pieces.
            let mut message = writer.message_writer(socketry::OpCode::Binary);
            for _ in 0..10 {
                message.write_all(&[9u8; 10_000]).await.unwrap();
            }
            message.shutdown().await.unwrap();
            drop(message);
            writer
        });
        for i in 0..50 {
            assert_eq!(
                bounded(reader.recv()).await.unwrap().unwrap(),
                Message::text(format!("message {i}"))
            );
        }
        let streamed = bounded(reader.recv()).await.unwrap().unwrap();
        assert_eq!(streamed.len(), 100_000, "{transport:?}");
        let writer = bounded(writing).await.unwrap();
        let mut ws = reader.reunite(writer).unwrap();
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        assert!(bounded(ws.recv()).await.is_none());
    }
}

/// A raw HTTP/2 client, to send what ours never would.
async fn raw_h2(port: u16) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (send, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let mut ping = connection.ping_pong().unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    // The server's SETTINGS come before its answer to a PING.
    bounded(ping.ping(h2::Ping::opaque())).await.unwrap();
    send
}

async fn raw_status(send: &h2::client::SendRequest<Bytes>, request: http::Request<()>) -> u16 {
    let mut send = send.clone().ready().await.unwrap();
    let (response, _stream) = send.send_request(request, false).unwrap();
    bounded(response).await.unwrap().status().as_u16()
}

fn connect_request(protocol: Option<&'static str>, version: Option<&str>) -> http::Request<()> {
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("http://127.0.0.1/chat")
        .version(http::Version::HTTP_2);
    if let Some(version) = version {
        request = request.header("sec-websocket-version", version);
    }
    let mut request = request.body(()).unwrap();
    if let Some(protocol) = protocol {
        request
            .extensions_mut()
            .insert(h2::ext::Protocol::from_static(protocol));
    }
    request
}

#[tokio::test]
async fn bad_extended_connects_are_refused_and_the_connection_goes_on() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let mut incoming = Listener::new(Acceptor::new())
        .http2(socketry::Http2Config::new())
        .serve(tcp);
    let send = raw_h2(port).await;
    assert!(send.is_extended_connect_protocol_enabled());
    // CONNECT without :protocol: a tunnel request, not a WebSocket.
    assert_eq!(
        raw_status(&send, connect_request(None, Some("13"))).await,
        400
    );
    // A :protocol other than websocket.
    assert_eq!(
        raw_status(&send, connect_request(Some("connect-udp"), Some("13"))).await,
        501
    );
    // Wrong or missing version.
    assert_eq!(
        raw_status(&send, connect_request(Some("websocket"), Some("8"))).await,
        400
    );
    assert_eq!(
        raw_status(&send, connect_request(Some("websocket"), None)).await,
        400
    );
    // A plain GET is no WebSocket request on HTTP/2.
    let get = http::Request::get("http://127.0.0.1/chat")
        .version(http::Version::HTTP_2)
        .body(())
        .unwrap();
    assert_eq!(raw_status(&send, get).await, 405);
    // A cross-site origin.
    let mut evil = connect_request(Some("websocket"), Some("13"));
    evil.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    assert_eq!(raw_status(&send, evil).await, 403);
    // After all that, the same connection still opens a WebSocket.
    assert_eq!(
        raw_status(&send, connect_request(Some("websocket"), Some("13"))).await,
        200
    );
    let (ws, request) = bounded(incoming.accept()).await.unwrap();
    assert!(ws.get_ref().is_http2());
    assert_eq!(request.uri().path(), "/chat");
    assert_eq!(request.version(), http::Version::HTTP_2);
}

/// A server that speaks HTTP/2 without `SETTINGS_ENABLE_CONNECT_PROTOCOL` (as Go's since
/// 1.24), and HTTP/1.1 WebSockets beside it.
async fn server_without_extended_connect() -> (u16, mpsc::UnboundedReceiver<&'static str>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                stream.peek(&mut first).await.unwrap();
                if first[0] == b'P' {
                    let _ = tx.send("h2");
                    let mut conn = h2::server::handshake(stream).await.unwrap();
                    while let Some(Ok((_request, mut respond))) = conn.accept().await {
                        let response = http::Response::builder().status(404).body(()).unwrap();
                        let _ = respond.send_response(response, true);
                    }
                } else if let Ok(ws) = socketry::accept(stream).await {
                    let _ = tx.send("http/1.1");
                    echo(ws).await;
                }
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn a_server_without_extended_connect_gets_http1() {
    let (port, mut seen) = server_without_extended_connect().await;
    let connector = Connector::new().http2(Http2::PriorKnowledge);
    let url = format!("ws://127.0.0.1:{port}/chat");
    let (mut ws, response) = bounded(connector.connect(&url)).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_11);
    assert_eq!(response.status(), 101);
    assert!(!ws.get_ref().is_http2());
    assert_eq!(seen.recv().await, Some("h2"));
    assert_eq!(seen.recv().await, Some("http/1.1"));
    assert_echo(&mut ws, "over http/1.1").await;
    // The origin is remembered: the next socket goes straight to HTTP/1.1.
    let (_ws, _) = bounded(connector.connect(&url)).await.unwrap();
    assert_eq!(seen.recv().await, Some("http/1.1"));
}

#[tokio::test]
async fn alpn_without_h2_gets_http1_on_the_same_connection() {
    // TLS without HTTP/2: the server's ALPN list is left empty (it becomes http/1.1), or
    // names h2 although HTTP/2 is off (h2 is dropped: a client picking it would get HTTP/1.1
    // answers to its preface).
    for alpn in [vec![], vec![b"h2".to_vec(), b"http/1.1".to_vec()]] {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let (server_tls, client_tls) = tls_pair();
        let mut server_tls = Arc::unwrap_or_clone(server_tls);
        server_tls.alpn_protocols = alpn;
        let mut incoming = Listener::new(Acceptor::new())
            .tls(Arc::new(server_tls))
            .serve(tcp);
        let connector = Connector::new()
            .tls_config(client_tls)
            .http2(Http2::Negotiate);
        let client = tokio::spawn(async move {
            connector
                .connect(&format!("wss://localhost:{port}/chat"))
                .await
                .unwrap()
        });
        let (ws, request) = bounded(incoming.accept()).await.unwrap();
        assert_eq!(request.version(), http::Version::HTTP_11);
        assert!(matches!(ws.get_ref(), ServerStream::Tls(_)));
        let (_ws, response) = bounded(client).await.unwrap();
        assert_eq!(response.status(), 101);
    }
}

#[tokio::test]
async fn a_refused_connect_is_an_http_error_with_its_body() {
    let (connector, url, _endings) = setup(
        Transport::Http2,
        Acceptor::new().origin_policy(socketry::OriginPolicy::allow(["https://app.example"])),
        WebSocketConfig::default(),
    )
    .await
    .echo();
    let err = connector
        .header(
            http::header::ORIGIN,
            http::HeaderValue::from_static("https://evil.example"),
        )
        .connect(&url)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::FORBIDDEN));
    let Error::Http(response) = err else {
        unreachable!()
    };
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert!(String::from_utf8_lossy(response.body()).contains("origin"));
}

#[tokio::test]
async fn the_connection_ends_with_its_last_socket() {
    let (connector, url, _endings) = setup(
        Transport::Http2Cleartext,
        Acceptor::new(),
        WebSocketConfig::default(),
    )
    .await
    .echo();
    let (mut a, _) = connector.connect(&url).await.unwrap();
    assert_eq!(stream_id(&a), Some(1));
    a.close(CloseCode::NORMAL, "").await.unwrap();
    assert!(bounded(a.recv()).await.is_none());
    drop(a);
    // No socket holds the connection: the next one opens a new connection (stream 1 again).
    let (b, _) = connector.connect(&url).await.unwrap();
    assert_eq!(stream_id(&b), Some(1));
    // While one is open, the next shares it.
    let (c, _) = connector.connect(&url).await.unwrap();
    assert_eq!(stream_id(&c), Some(3));
}

// The transport type is public: a server can tell its sockets apart.
#[allow(dead_code)]
fn transports_are_nameable(stream: &H2Stream) -> u32 {
    stream.stream_id()
}

/// A bare HTTP/2 server allowing extended CONNECT: the first connection takes its first
/// stream and refuses every later one with `REFUSED_STREAM`; later connections take all.
/// Reports each new connection.
async fn server_refusing_on_its_first_connection() -> (u16, mpsc::UnboundedReceiver<()>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((stream, _)) = tcp.accept().await {
            let _ = tx.send(());
            let refusing = std::mem::take(&mut first);
            tokio::spawn(async move {
                let mut conn = h2::server::Builder::new()
                    .enable_connect_protocol()
                    .handshake::<_, Bytes>(stream)
                    .await
                    .unwrap();
                let mut kept = Vec::new();
                while let Some(Ok((_request, mut respond))) = conn.accept().await {
                    if refusing && !kept.is_empty() {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                    } else {
                        let response = http::Response::builder().status(200).body(()).unwrap();
                        kept.push(respond.send_response(response, false).unwrap());
                    }
                }
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn a_refused_stream_is_retried_once_on_a_fresh_connection() {
    let (port, mut connections) = server_refusing_on_its_first_connection().await;
    let connector = Connector::new().http2(Http2::PriorKnowledge);
    let url = format!("ws://127.0.0.1:{port}/chat");
    let (first, _) = bounded(connector.connect(&url)).await.unwrap();
    assert_eq!(stream_id(&first), Some(1));
    assert_eq!(connections.recv().await, Some(()));
    // Refused on the shared connection, then taken on a second one (its stream 1), not sent
    // to the refusing connection again.
    let (second, response) = bounded(connector.connect(&url)).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(stream_id(&second), Some(1));
    assert_eq!(connections.recv().await, Some(()));
    assert!(connections.try_recv().is_err());
    drop(first);
}

#[tokio::test]
async fn clones_share_connections_until_a_transport_setting_changes() {
    let (connector, url, _endings) = setup(
        Transport::Http2Cleartext,
        Acceptor::new(),
        WebSocketConfig::default(),
    )
    .await
    .echo();
    let (a, _) = connector.connect(&url).await.unwrap();
    assert_eq!(stream_id(&a), Some(1));
    // A plain clone shares the connection.
    let (b, _) = connector.clone().connect(&url).await.unwrap();
    assert_eq!(stream_id(&b), Some(3));
    // A clone told to dial otherwise gets a connection of its own.
    let other = connector.clone().dial_timeout(Some(Duration::from_secs(5)));
    let (c, _) = other.connect(&url).await.unwrap();
    assert_eq!(stream_id(&c), Some(1));
    let (d, _) = connector.connect(&url).await.unwrap();
    assert_eq!(stream_id(&d), Some(5));
}

#[tokio::test]
async fn a_silent_server_gets_http1_after_the_settings_wait() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    tokio::spawn(async move {
        // The first connection is read and never answered, as by a server waiting for the
        // rest of a request line; the next is an HTTP/1.1 WebSocket.
        let (mut silent, _) = tcp.accept().await.unwrap();
        let hold = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut silent, &mut sink).await;
        });
        let (stream, _) = tcp.accept().await.unwrap();
        let ws = socketry::accept(stream).await.unwrap();
        echo(ws).await;
        hold.abort();
    });
    let connector = Connector::new()
        .http2(Http2::PriorKnowledge)
        .handshake_timeout(Duration::from_secs(8));
    let started = std::time::Instant::now();
    let (mut ws, response) = bounded(connector.connect(&format!("ws://127.0.0.1:{port}/")))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_echo(&mut ws, "late").await;
}

#[tokio::test]
async fn a_full_backlog_answers_503_and_the_connection_goes_on() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let mut incoming = Listener::new(Acceptor::new())
        .http2(socketry::Http2Config::new())
        .serve(tcp);
    let send = raw_h2(port).await;
    // Nobody accepts: the first 128 sockets fill the backlog (their streams are reset as
    // each answer is dropped, which frees the connection's stream slots).
    for _ in 0..128 {
        let request = connect_request(Some("websocket"), Some("13"));
        assert_eq!(raw_status(&send, request).await, 200);
    }
    let request = connect_request(Some("websocket"), Some("13"));
    assert_eq!(raw_status(&send, request).await, 503);
    // Taking one makes room for one.
    let (_ws, request) = bounded(incoming.accept()).await.unwrap();
    assert_eq!(request.version(), http::Version::HTTP_2);
    let request = connect_request(Some("websocket"), Some("13"));
    assert_eq!(raw_status(&send, request).await, 200);
}

/// A cleartext HTTP/2 client that sends the preface and its SETTINGS, then reads nothing and
/// answers nothing, PINGs included; returns when the server closes the connection.
async fn mute_h2_client(port: u16) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    tcp
}

async fn until_closed(mut tcp: tokio::net::TcpStream) {
    let mut sink = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut sink).await;
}

#[tokio::test]
async fn a_peer_that_never_answers_the_shutdown_ping_does_not_keep_the_connection() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let incoming = Listener::new(Acceptor::new())
        .http2(socketry::Http2Config::new().idle_timeout(None))
        .serve(tcp);
    let client = mute_h2_client(port).await;
    // Let the server take the connection, then stop it: GOAWAY and a PING nobody answers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(incoming);
    bounded(until_closed(client)).await;
}

#[tokio::test]
async fn an_idle_connection_is_ended() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let _incoming = Listener::new(Acceptor::new())
        .http2(socketry::Http2Config::new().idle_timeout(Some(Duration::from_millis(200))))
        .serve(tcp);
    let started = std::time::Instant::now();
    bounded(until_closed(mute_h2_client(port).await)).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn prior_knowledge_to_an_http1_server_is_remembered() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let (tx, mut accepted) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            let _ = tx.send(());
            // HTTP/1.1 only: the preface gets a 400 and the connection is closed.
            tokio::spawn(async move {
                if let Ok(ws) = socketry::accept(stream).await {
                    echo(ws).await;
                }
            });
        }
    });
    let connector = Connector::new().http2(Http2::PriorKnowledge);
    let url = format!("ws://127.0.0.1:{port}/chat");
    let (_a, response) = bounded(connector.connect(&url)).await.unwrap();
    assert_eq!(response.status(), 101);
    // The HTTP/2 try, then HTTP/1.1.
    assert_eq!(accepted.recv().await, Some(()));
    assert_eq!(accepted.recv().await, Some(()));
    // The next socket goes straight to HTTP/1.1.
    let (_b, response) = bounded(connector.connect(&url)).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(accepted.recv().await, Some(()));
    assert!(accepted.try_recv().is_err());
}
