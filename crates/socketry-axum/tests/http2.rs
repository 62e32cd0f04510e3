//! socketry-axum over HTTP/2 (RFC 8441): `socketry_axum::serve` with and without TLS, and
//! `axum::serve`, with our client multiplexing sockets on one connection: the controller's
//! automatic close, panics, origin checks, the hub and graceful shutdown, as on HTTP/1.1.

mod support;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use socketry::{CloseCode, Connector, Http2, MaybeTlsStream, Message, WebSocket};
use socketry_axum::{
    Conn, Controller, Request, Settings, Shutdown, Upgrader, handler_fn,
    hub::{ClientInfo, Hub},
};
use support::bounded;
use tokio::net::TcpListener;

/// Records the peer's close frame; answers it with its code, as by default.
fn record_close(
    ws: &mut WebSocket<MaybeTlsStream>,
) -> Arc<std::sync::Mutex<Option<(u16, String)>>> {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let record = seen.clone();
    ws.set_close_handler(Some(Box::new(
        move |frame: Option<&socketry::CloseFrame>| {
            *record.lock().unwrap() = frame.map(|c| (u16::from(c.code), c.reason.clone()));
            frame.map(|c| socketry::CloseFrame::new(c.code, ""))
        },
    )));
    seen
}

/// Reads until the end; returns the close the server sent.
async fn close_of(mut ws: WebSocket<MaybeTlsStream>) -> Option<(u16, String)> {
    let seen = record_close(&mut ws);
    while let Some(next) = bounded(ws.recv()).await {
        assert!(next.is_ok(), "{next:?}");
    }
    seen.lock().unwrap().clone()
}

/// Serves `app` with `socketry_axum::serve` on cleartext (HTTP/2 by prior knowledge).
async fn serve_h2c(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { socketry_axum::serve(listener, app).await.unwrap() });
    addr
}

fn h2c() -> Connector {
    Connector::new().http2(Http2::PriorKnowledge)
}

fn stream_id(ws: &WebSocket<MaybeTlsStream>) -> u32 {
    match ws.get_ref() {
        MaybeTlsStream::H2(stream) => stream.stream_id(),
        other => panic!("not an HTTP/2 stream: {other:?}"),
    }
}

/// Echoes, and answers "peer" with the peer address and HTTP version it saw.
fn echo_upgrader() -> Upgrader<impl Controller> {
    Upgrader::new(handler_fn(|conn, request| {
        let seen = format!(
            "{:?} {:?}",
            request.remote_addr().map(|a| a.ip()),
            request.version()
        );
        Box::pin(async move {
            while let Some(message) = conn.recv().await {
                let message = message?;
                if message == Message::text("peer") {
                    conn.send(seen.clone()).await?;
                } else if message == Message::text("fail") {
                    return Err(socketry::Error::InvalidMessage("asked to fail"));
                } else if message == Message::text("panic") {
                    panic!("asked to panic");
                } else if message.is_text() || message.is_binary() {
                    conn.send(message).await?;
                }
            }
            Ok::<(), socketry::Error>(())
        })
    }))
}

#[tokio::test]
async fn sockets_share_one_connection_and_controllers_close_them_as_on_http1() {
    let addr = serve_h2c(echo_upgrader().route(Router::new(), "/ws")).await;
    let url = format!("ws://{addr}/ws");
    let connector = h2c();
    let mut sockets = Vec::new();
    for _ in 0..20 {
        let (ws, response) = bounded(connector.connect(&url)).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        sockets.push(ws);
    }
    let ids: Vec<u32> = sockets.iter().map(stream_id).collect();
    assert_eq!(ids, (0..20).map(|i| 2 * i + 1).collect::<Vec<_>>());
    for ws in &mut sockets {
        ws.send("peer").await.unwrap();
        let seen = bounded(ws.recv()).await.unwrap().unwrap();
        assert_eq!(seen, Message::text("Some(127.0.0.1) HTTP/2.0"));
        for len in [0, 1, 126, 65_536, 200_000] {
            let message = Message::binary(vec![3u8; len]);
            ws.send(message.clone()).await.unwrap();
            assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), message);
        }
    }
    // An error in serve closes its socket with 1011, a panic too; the others stay open.
    let mut failing = sockets.pop().unwrap();
    failing.send("fail").await.unwrap();
    assert_eq!(close_of(failing).await.map(|c| c.0), Some(1011));
    let mut panicking = sockets.pop().unwrap();
    panicking.send("panic").await.unwrap();
    assert_eq!(close_of(panicking).await.map(|c| c.0), Some(1011));
    // A client's close: serve returns Ok, the handshake completes.
    let mut leaving = sockets.pop().unwrap();
    leaving.close(CloseCode::NORMAL, "bye").await.unwrap();
    assert!(bounded(leaving.recv()).await.is_none());
    for ws in &mut sockets {
        ws.send("still").await.unwrap();
        assert_eq!(
            bounded(ws.recv()).await.unwrap().unwrap(),
            Message::text("still")
        );
    }
}

#[tokio::test]
async fn a_controller_that_returns_closes_with_1000_server_closed_connection() {
    let upgrader = Upgrader::new(handler_fn(|conn, _| {
        Box::pin(async move {
            conn.send("hello").await?;
            Ok::<(), socketry::Error>(())
        })
    }));
    let addr = serve_h2c(upgrader.route(Router::new(), "/ws")).await;
    let (mut ws, _) = bounded(h2c().connect(&format!("ws://{addr}/ws")))
        .await
        .unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("hello")
    );
    assert_eq!(
        close_of(ws).await,
        Some((1000, socketry_axum::NORMAL_CLOSURE_MESSAGE.to_owned()))
    );
}

#[tokio::test]
async fn a_refused_origin_gets_the_json_error_over_http2() {
    let upgrader =
        echo_upgrader().settings(Settings::default().allowed_origins(["https://app.example"]));
    let addr = serve_h2c(upgrader.route(Router::new(), "/ws")).await;
    let err = h2c()
        .header(
            http::header::ORIGIN,
            http::HeaderValue::from_static("https://evil.example"),
        )
        .connect(&format!("ws://{addr}/ws"))
        .await
        .unwrap_err();
    let socketry::Error::Http(response) = err else {
        panic!("expected an HTTP error, got {err}");
    };
    assert_eq!(response.status(), 403);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn the_hub_fans_out_to_sockets_multiplexed_on_one_connection() {
    let hub = Hub::default();
    let server_hub = hub.clone();
    let upgrader = Upgrader::new(handler_fn(move |conn, _request| {
        let hub = server_hub.clone();
        Box::pin(async move {
            let member = conn.attach(&hub, ClientInfo::default())?;
            member.join("room")?;
            while let Some(message) = conn.recv().await {
                let message = message?;
                if message.is_text() {
                    member.publish("room", message)?;
                }
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        })
    }));
    let addr = serve_h2c(upgrader.route(Router::new(), "/ws")).await;
    let connector = h2c();
    let mut sockets = Vec::new();
    for _ in 0..10 {
        sockets.push(
            bounded(connector.connect(&format!("ws://{addr}/ws")))
                .await
                .unwrap()
                .0,
        );
    }
    bounded(async {
        while hub.room_size("room") < 10 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    for i in 0..20 {
        sockets[i % 10].send(format!("message {i}")).await.unwrap();
    }
    // Every member gets all twenty, in the order they were published by each sender.
    for ws in &mut sockets {
        let mut got = Vec::new();
        for _ in 0..20 {
            let message = bounded(ws.recv()).await.unwrap().unwrap();
            got.push(String::from_utf8(message.into_payload().to_vec()).unwrap());
        }
        let mut sorted = got.clone();
        sorted.sort_by_key(|m| m[8..].parse::<u32>().unwrap());
        assert_eq!(sorted.len(), 20);
        for sender in 0..10 {
            let from: Vec<_> = got
                .iter()
                .filter(|m| m[8..].parse::<usize>().unwrap() % 10 == sender)
                .collect();
            assert_eq!(from.len(), 2);
            assert!(from[0][8..].parse::<u32>().unwrap() < from[1][8..].parse::<u32>().unwrap());
        }
    }
}

#[tokio::test]
async fn graceful_shutdown_closes_http2_sockets_with_1001_and_the_server_ends() {
    let shutdown = Shutdown::new();
    let upgrader = echo_upgrader().settings(Settings::default().shutdown(shutdown.clone()));
    let app = upgrader.route(Router::new(), "/ws");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = shutdown.on(
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    );
    let server = tokio::spawn(async move {
        socketry_axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
    });
    let connector = h2c();
    let mut sockets = Vec::new();
    for _ in 0..5 {
        sockets.push(
            bounded(connector.connect(&format!("ws://{addr}/ws")))
                .await
                .unwrap()
                .0,
        );
    }
    let closes = sockets.into_iter().map(|ws| tokio::spawn(close_of(ws)));
    let closes: Vec<_> = closes.collect();
    stop.send(()).unwrap();
    for close in closes {
        assert_eq!(bounded(close).await.unwrap().map(|c| c.0), Some(1001));
    }
    bounded(server).await.unwrap().unwrap();
}

/// A self-signed certificate for `localhost`: the server's config and a client trusting it.
fn tls_pair() -> (
    Arc<tokio_rustls::rustls::ServerConfig>,
    Arc<tokio_rustls::rustls::ClientConfig>,
) {
    use tokio_rustls::rustls;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem_cert = cert.cert.pem();
    let pem_key = cert.signing_key.serialize_pem();
    let server =
        socketry::tls::server_config_from_pem(pem_cert.as_bytes(), pem_key.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, Arc::new(client))
}

#[tokio::test]
async fn tls_serves_http2_and_http1_by_alpn() {
    let (server_tls, client_tls) = tls_pair();
    let app = echo_upgrader()
        .route(Router::new(), "/ws")
        .route("/", axum::routing::get(|| async { "page" }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { socketry_axum::serve(listener, app).tls(server_tls).await });
    let url = format!("wss://localhost:{port}/ws");
    // HTTP/2 by ALPN: two sockets, one connection.
    let connector = Connector::new()
        .tls_config(client_tls.clone())
        .http2(Http2::Negotiate);
    let (mut a, response) = bounded(connector.connect(&url)).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let (b, _) = bounded(connector.connect(&url)).await.unwrap();
    assert_eq!((stream_id(&a), stream_id(&b)), (1, 3));
    a.send("peer").await.unwrap();
    assert_eq!(
        bounded(a.recv()).await.unwrap().unwrap(),
        Message::text("Some(127.0.0.1) HTTP/2.0")
    );
    // HTTP/1.1 over TLS from a client that does not offer h2.
    let (mut c, response) = bounded(Connector::new().tls_config(client_tls).connect(&url))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    c.send("peer").await.unwrap();
    assert_eq!(
        bounded(c.recv()).await.unwrap().unwrap(),
        Message::text("Some(127.0.0.1) HTTP/1.1")
    );
}

#[tokio::test]
async fn axum_serve_with_http2_takes_extended_connect_too() {
    let app = echo_upgrader().route(Router::new(), "/ws");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let connector = h2c();
    let (mut ws, response) = bounded(connector.connect(&format!("ws://{addr}/ws")))
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    ws.send("over axum::serve").await.unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("over axum::serve")
    );
}

// The Request context type is the one controllers get; nothing HTTP/2-specific in it.
#[allow(dead_code)]
fn controllers_are_unchanged(_: &mut Conn, _: &Request) {}

#[tokio::test]
async fn a_fallback_serves_plain_requests_and_leaves_extended_connect_to_the_controller() {
    let upgrader = echo_upgrader().fallback(|| async { "the chat page" });
    let addr = serve_h2c(upgrader.route(Router::new(), "/chat")).await;
    // The WebSocket over HTTP/2 reaches the controller, not the fallback.
    let (mut ws, response) = bounded(h2c().connect(&format!("ws://{addr}/chat")))
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    ws.send("peer").await.unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("Some(127.0.0.1) HTTP/2.0")
    );
    // A plain GET over HTTP/2 on the same path gets the page.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, connection) = bounded(h2::client::handshake(tcp)).await.unwrap();
    tokio::spawn(connection);
    let get = http::Request::get(format!("http://{addr}/chat"))
        .body(())
        .unwrap();
    let (response, _) = send.send_request(get, true).unwrap();
    let response = bounded(response).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut page = Vec::new();
    while let Some(chunk) = bounded(body.data()).await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        page.extend_from_slice(&chunk);
    }
    assert_eq!(page, b"the chat page");
}

#[tokio::test]
async fn a_connection_that_sends_no_request_is_dropped_after_the_handshake_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = echo_upgrader().route(Router::new(), "/ws");
    tokio::spawn(async move {
        socketry_axum::serve(listener, app)
            .handshake_timeout(Duration::from_millis(300))
            .await
            .unwrap()
    });
    let started = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut sink = Vec::new();
    bounded(tokio::io::AsyncReadExt::read_to_end(&mut silent, &mut sink))
        .await
        .unwrap();
    assert!(sink.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A connection that asks in time is served past the timeout.
    let (mut ws, _) = bounded(h2c().connect(&format!("ws://{addr}/ws")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    ws.send("still here").await.unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("still here")
    );
}

#[tokio::test]
async fn serve_gives_http1_websockets_their_tcp_stream() {
    let upgrader = Upgrader::new(handler_fn(|conn, _| {
        let tcp = conn.is_tcp();
        Box::pin(async move {
            conn.send(format!("tcp: {tcp}")).await?;
            while let Some(message) = conn.recv().await {
                message?;
            }
            Ok::<(), socketry::Error>(())
        })
    }));
    let addr = serve_h2c(upgrader.route(Router::new(), "/ws")).await;
    let url = format!("ws://{addr}/ws");
    // HTTP/1.1: no wrapper between the WebSocket and its socket.
    let (mut ws, response) = bounded(Connector::new().connect(&url)).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_11);
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("tcp: true")
    );
    // HTTP/2: a stream of the connection, through hyper.
    let (mut ws, _) = bounded(h2c().connect(&url)).await.unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("tcp: false")
    );
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_connection_that_sent_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = echo_upgrader().route(Router::new(), "/ws");
    let server = tokio::spawn(async move {
        socketry_axum::serve(listener, app)
            .handshake_timeout(Duration::from_secs(3600))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    // Connected, in the preface sniff, silent.
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    bounded(server).await.unwrap().unwrap();
}
