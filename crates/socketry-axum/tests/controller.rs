//! The controller layer over loopback: a real axum server, real clients (tokio-tungstenite,
//! socketry, raw HTTP).

mod support;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::Router;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue};
use socketry::Message;
use socketry_axum::{Conn, Controller, Request, ServeError, Settings, Upgrader, handler_fn};
use support::{bounded, serve};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_tungstenite::tungstenite::{self, protocol::CloseFrame};

type Client = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn client(addr: SocketAddr, path: &str) -> Client {
    let stream = TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(format!("ws://{addr}{path}"), stream)
        .await
        .unwrap()
        .0
}

/// Reads until the server's close frame; returns it.
async fn close_frame(ws: &mut Client) -> Option<CloseFrame> {
    while let Some(message) = bounded(ws.next()).await {
        if let Ok(tungstenite::Message::Close(frame)) = message {
            return frame;
        }
    }
    None
}

/// A raw HTTP exchange; returns the whole answer.
async fn raw(addr: SocketAddr, request: String) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 8192];
    let n = bounded(stream.read(&mut answer)).await.unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

fn upgrade_request(addr: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

struct Scripted {
    /// What serve does: "ok", "error", "panic", "close4000".
    mode: &'static str,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Controller for Scripted {
    type Error = String;

    async fn serve(&self, conn: &mut Conn, _request: &Request) -> Result<(), String> {
        conn.send("hi").await.map_err(|e| e.to_string())?;
        match self.mode {
            "ok" => Ok(()),
            "error" => Err(format!("database unreachable: {}", "é".repeat(100))),
            "panic" => panic!("controller exploded"),
            "close4000" => {
                conn.close(4000.into(), "done here").await.unwrap();
                conn.close(4001.into(), "again").await.unwrap(); // idempotent
                Ok(())
            }
            _ => unreachable!(),
        }
    }

    fn on_error(&self, _request: &Request, error: &ServeError) {
        self.errors.lock().unwrap().push(error.to_string());
    }
}

async fn scripted(mode: &'static str, settings: Settings) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let controller = Scripted {
        mode,
        errors: errors.clone(),
    };
    let app = Upgrader::new(controller)
        .settings(settings)
        .route(Router::new(), "/ws");
    (serve(app).await, errors)
}

#[tokio::test]
async fn ok_closes_with_1000_server_closed_connection() {
    let (addr, errors) = scripted("ok", Settings::default()).await;
    let mut ws = client(addr, "/ws").await;
    let frame = close_frame(&mut ws).await.unwrap();
    assert_eq!(u16::from(frame.code), 1000);
    assert_eq!(frame.reason.as_str(), "Server closed connection");
    assert!(errors.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_error_goes_to_on_error_and_closes_with_1011() {
    let (addr, errors) = scripted("error", Settings::default()).await;
    let mut ws = client(addr, "/ws").await;
    let frame = close_frame(&mut ws).await.unwrap();
    assert_eq!(u16::from(frame.code), 1011);
    assert_eq!(frame.reason.as_str(), "Internal server error");
    assert!(errors.lock().unwrap()[0].starts_with("database unreachable"));
}

#[tokio::test]
async fn debug_mode_sends_the_error_text_truncated_on_a_char_boundary() {
    let (addr, _) = scripted("error", Settings::default().debug(true)).await;
    let mut ws = client(addr, "/ws").await;
    let frame = close_frame(&mut ws).await.unwrap();
    assert_eq!(u16::from(frame.code), 1011);
    assert!(frame.reason.as_str().starts_with("database unreachable: é"));
    assert!(
        frame.reason.len() <= 123 && frame.reason.len() >= 121,
        "{}",
        frame.reason.len()
    );
}

#[tokio::test]
async fn panics_are_caught_closed_with_1011_and_the_server_survives_100_of_them() {
    let (addr, errors) = scripted("panic", Settings::default()).await;
    for _ in 0..100 {
        let mut ws = client(addr, "/ws").await;
        let frame = close_frame(&mut ws).await.unwrap();
        assert_eq!(u16::from(frame.code), 1011);
    }
    let errors = errors.lock().unwrap();
    assert_eq!(errors.len(), 100);
    assert_eq!(errors[0], "panic: controller exploded");
}

#[tokio::test]
async fn a_recover_handler_replaces_on_error_for_panics() {
    let recovered = Arc::new(AtomicUsize::new(0));
    let seen = recovered.clone();
    let settings = Settings::default().recover(move |_request, panic| {
        assert_eq!(panic.message, "controller exploded");
        seen.fetch_add(1, Ordering::SeqCst);
    });
    let (addr, errors) = scripted("panic", settings).await;
    let mut ws = client(addr, "/ws").await;
    assert_eq!(u16::from(close_frame(&mut ws).await.unwrap().code), 1011);
    assert_eq!(recovered.load(Ordering::SeqCst), 1);
    assert!(errors.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_connection_serve_closed_is_not_closed_twice() {
    let (addr, _) = scripted("close4000", Settings::default()).await;
    let mut ws = client(addr, "/ws").await;
    let mut closes = Vec::new();
    while let Some(message) = bounded(ws.next()).await {
        match message {
            Ok(tungstenite::Message::Close(frame)) => closes.push(frame.unwrap()),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(closes.len(), 1);
    assert_eq!(u16::from(closes[0].code), 4000);
    assert_eq!(closes[0].reason.as_str(), "done here");
}

#[tokio::test]
async fn origins_same_origin_by_default_allow_list_and_missing() {
    let (addr, _) = scripted("ok", Settings::default()).await;
    let same = raw(
        addr,
        upgrade_request(addr, "/ws", &format!("Origin: http://{addr}\r\n")),
    )
    .await;
    assert!(same.starts_with("HTTP/1.1 101"), "{same}");
    let missing = raw(addr, upgrade_request(addr, "/ws", "")).await;
    assert!(missing.starts_with("HTTP/1.1 101"), "{missing}");
    let other = raw(
        addr,
        upgrade_request(addr, "/ws", "Origin: http://evil.example\r\n"),
    )
    .await;
    assert!(other.starts_with("HTTP/1.1 403"), "{other}");
    assert!(other.contains(r#"{"error":"Forbidden"}"#), "{other}");
    // An app that terminates TLS itself serves its page on https://host:port: the request
    // URI carries no scheme, so only host and port can be compared (as gorilla does).
    let https_page = raw(
        addr,
        upgrade_request(addr, "/ws", &format!("Origin: https://{addr}\r\n")),
    )
    .await;
    assert!(https_page.starts_with("HTTP/1.1 101"), "{https_page}");
    let other_port = raw(
        addr,
        upgrade_request(addr, "/ws", "Origin: http://127.0.0.1:1\r\n"),
    )
    .await;
    assert!(other_port.starts_with("HTTP/1.1 403"), "{other_port}");
    // Forwarded headers count only when the policy trusts them.
    let forwarded = "Origin: https://public.example\r\nX-Forwarded-Host: public.example\r\n";
    let untrusted = raw(addr, upgrade_request(addr, "/ws", forwarded)).await;
    assert!(untrusted.starts_with("HTTP/1.1 403"), "{untrusted}");
    let trusting = Settings::default()
        .origin_policy(socketry::OriginPolicy::same_host().trust_forwarded_host(true));
    let (proxied, _) = scripted("ok", trusting).await;
    let trusted = raw(proxied, upgrade_request(proxied, "/ws", forwarded)).await;
    assert!(trusted.starts_with("HTTP/1.1 101"), "{trusted}");

    let listed = Settings::default()
        .allowed_origins(["https://app.example"])
        .allow_missing_origin(false);
    let (addr, _) = scripted("ok", listed).await;
    let ok = raw(
        addr,
        upgrade_request(addr, "/ws", "Origin: https://app.example\r\n"),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
    let missing = raw(addr, upgrade_request(addr, "/ws", "")).await;
    assert!(missing.starts_with("HTTP/1.1 403"), "{missing}");
    let (addr, _) = scripted("ok", Settings::default().allowed_origins(["*"])).await;
    let any = raw(
        addr,
        upgrade_request(addr, "/ws", "Origin: http://whatever\r\n"),
    )
    .await;
    assert!(any.starts_with("HTTP/1.1 101"), "{any}");
}

#[tokio::test]
async fn failed_upgrades_answer_json_with_the_right_status() {
    let (addr, _) = scripted("ok", Settings::default()).await;
    let plain = raw(addr, format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n\r\n")).await;
    assert!(plain.starts_with("HTTP/1.1 426"), "{plain}");
    assert!(plain.contains(r#"{"error":"Upgrade Required"}"#), "{plain}");
    assert!(
        plain
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13")
    );
    let post = raw(
        addr,
        upgrade_request(addr, "/ws", "").replacen("GET", "POST", 1),
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(post.contains(r#"{"error":"Method Not Allowed"}"#), "{post}");
    let bad_key = raw(
        addr,
        upgrade_request(addr, "/ws", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "short"),
    )
    .await;
    assert!(bad_key.starts_with("HTTP/1.1 400"), "{bad_key}");

    let (addr, _) = scripted("ok", Settings::default().debug(true)).await;
    let plain = raw(addr, format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n\r\n")).await;
    assert!(
        plain.contains("'websocket' token not found"),
        "debug shows the reason: {plain}"
    );
}

#[tokio::test]
async fn the_filter_rejects_with_426_before_serve() {
    let settings = Settings::default().filter(|request| request.uri().query() != Some("deny"));
    let (addr, _) = scripted("ok", settings).await;
    let denied = raw(addr, upgrade_request(addr, "/ws?deny", "")).await;
    assert!(denied.starts_with("HTTP/1.1 426"), "{denied}");
    let allowed = raw(addr, upgrade_request(addr, "/ws?allow", "")).await;
    assert!(allowed.starts_with("HTTP/1.1 101"), "{allowed}");
}

struct Hooks;

impl Controller for Hooks {
    type Error = socketry::Error;

    async fn serve(&self, conn: &mut Conn, request: &Request) -> Result<(), Self::Error> {
        let local = request.local::<Local>().map_or(0, |l| l.0);
        let summary = format!(
            "room={} user={} theme={} agent={} local={local} remote={} protocol={:?}",
            request.param_or("room", "?"),
            request.query_or("user", "anonymous"),
            request.cookie_or("theme", "light"),
            request.header("x-agent").unwrap_or("-"),
            request.remote_addr().is_some(),
            conn.protocol(),
        );
        conn.send(summary).await?;
        while let Some(message) = conn.recv().await {
            message?;
        }
        Ok(())
    }

    fn check_origin(&self, request: &Request) -> Option<bool> {
        request.header("origin").map(|o| o.ends_with(".trusted"))
    }

    fn upgrade_headers(&self, _request: &Request) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-served-by", HeaderValue::from_static("socketry"));
        headers
    }

    fn on_upgrade_error(
        &self,
        _request: &Request,
        error: &socketry_axum::UpgradeError,
        _debug: bool,
    ) -> axum::response::Response {
        // The typed error: the status, and which refusal it was.
        let kind = match error {
            socketry_axum::UpgradeError::OriginRejected => "origin",
            socketry_axum::UpgradeError::Handshake(_) => "handshake",
            _ => "other",
        };
        axum::response::IntoResponse::into_response((
            error.status(),
            format!("custom body: {kind}"),
        ))
    }

    fn register_route(
        &self,
        router: Router,
        path: &str,
        handler: axum::routing::MethodRouter,
    ) -> Router {
        router.route(&format!("/v2{path}"), handler)
    }
}

#[derive(Clone)]
struct Local(u32);

#[tokio::test]
async fn hooks_and_the_request_context() {
    let settings = Settings::default().protocols(["chat"]);
    let app = Upgrader::new(Hooks)
        .settings(settings)
        .route(Router::new(), "/rooms/{room}")
        .layer(axum::Extension(Local(7)));
    let addr = serve(app).await;

    let stream = TcpStream::connect(addr).await.unwrap();
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{addr}/v2/rooms/lobby?user=ann%20b"
    ))
    .unwrap();
    let headers = request.headers_mut();
    headers.insert("cookie", HeaderValue::from_static("theme=dark; x=1"));
    headers.insert("x-agent", HeaderValue::from_static("test"));
    headers.insert("origin", HeaderValue::from_static("https://app.trusted"));
    headers.insert("sec-websocket-protocol", HeaderValue::from_static("chat"));
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert_eq!(response.headers()["x-served-by"], "socketry");
    let summary = bounded(ws.next()).await.unwrap().unwrap();
    assert_eq!(
        summary.into_text().unwrap().as_str(),
        r#"room=lobby user=ann b theme=dark agent=test local=7 remote=true protocol=Some("chat")"#
    );
    ws.close(None).await.unwrap();

    let refused = raw(
        addr,
        upgrade_request(addr, "/v2/rooms/x", "Origin: https://evil\r\n"),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(refused.ends_with("custom body: origin"), "{refused}");
    let not_registered = raw(addr, upgrade_request(addr, "/rooms/x", "")).await;
    assert!(
        not_registered.starts_with("HTTP/1.1 404"),
        "register_route moved it: {not_registered}"
    );
}

#[tokio::test]
async fn a_closure_controller_works_with_our_client() {
    let app = Upgrader::new(handler_fn(|conn, request| {
        Box::pin(async move {
            let name = request.query_or("name", "guest").to_owned();
            conn.send(format!("hello {name}")).await?;
            while let Some(message) = conn.recv().await {
                let message = message?;
                if message.is_text() {
                    conn.send(message).await?;
                }
            }
            Ok::<(), socketry::Error>(())
        })
    }))
    .route(Router::new(), "/ws");
    let addr = serve(app).await;
    let (mut ws, _) = socketry::connect(&format!("ws://{addr}/ws?name=zoe"))
        .await
        .unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("hello zoe")
    );
    ws.send("echo me").await.unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("echo me")
    );
    ws.close(socketry::CloseCode::NORMAL, "").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_100_live_connections_with_1001_within_the_deadline() {
    let shutdown = socketry_axum::Shutdown::new();
    let upgrader = Upgrader::new(handler_fn(|conn, _| {
        Box::pin(async move {
            while let Some(message) = conn.recv().await {
                conn.send(message?).await?;
            }
            Ok::<(), socketry::Error>(())
        })
    }))
    .settings(Settings::default().shutdown(shutdown.clone()));
    let app = upgrader.route(Router::new(), "/ws");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, triggered) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.on(
                async move {
                    let _ = triggered.await;
                },
                Duration::from_secs(5),
            ))
            .into_future(),
    );
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(client(addr, "/ws").await);
    }
    // Every connection is live and echoing.
    for ws in &mut clients {
        ws.send(tungstenite::Message::text("ping")).await.unwrap();
        assert!(bounded(ws.next()).await.unwrap().unwrap().is_text());
    }
    assert_eq!(shutdown.live(), 100);
    // Clients keep reading (tungstenite answers the close) while the server shuts down.
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { close_frame(&mut ws).await }))
        .collect();
    let started = std::time::Instant::now();
    trigger.send(()).unwrap();
    bounded(server).await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for reader in readers {
        let frame = bounded(reader).await.unwrap().expect("a close frame");
        assert_eq!(u16::from(frame.code), 1001);
        assert_eq!(frame.reason.as_str(), "Going Away");
    }
    assert_eq!(shutdown.live(), 0);
    assert!(shutdown.is_shutting_down());
}

#[tokio::test]
async fn close_waits_for_the_peer_only_up_to_the_per_connection_timeout() {
    let app = Upgrader::new(handler_fn(|conn, _| {
        Box::pin(async move {
            conn.set_close_handshake_timeout(Duration::from_millis(200));
            assert_eq!(conn.close_handshake_timeout(), Duration::from_millis(200));
            conn.close_normal().await?;
            assert!(conn.is_closed());
            Ok::<(), socketry::Error>(())
        })
    }))
    .route(Router::new(), "/ws");
    let addr = serve(app).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(upgrade_request(addr, "/ws", "").as_bytes())
        .await
        .unwrap();
    // Never answer the close frame: read until the server gives up and closes TCP.
    let started = std::time::Instant::now();
    let mut all = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = bounded(stream.read(&mut buf)).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 101"));
    assert!(
        text.contains("Server closed connection"),
        "the close frame came: {text:?}"
    );
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(3),
        "closed after the 200 ms timeout: {elapsed:?}"
    );
}

#[tokio::test]
async fn the_connection_settings_reach_every_connection() {
    let config = socketry::WebSocketConfig::default()
        .compression(Some(socketry::DeflateConfig::default()))
        .max_message_size(Some(1024));
    let app = Upgrader::new(handler_fn(|conn, _| {
        Box::pin(async move {
            let compressed = conn.is_compressed();
            conn.send(format!("compressed={compressed}")).await?;
            while let Some(message) = conn.recv().await {
                conn.send(message?).await?;
            }
            Ok::<(), socketry::Error>(())
        })
    }))
    .settings(Settings::default().config(config))
    .route(Router::new(), "/ws");
    let addr = serve(app).await;

    let (mut ws, _) = socketry::Connector::new()
        .config(config)
        .connect(&format!("ws://{addr}/ws"))
        .await
        .unwrap();
    assert!(ws.compression().is_some(), "client side negotiated");
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("compressed=true")
    );
    let fits = "x".repeat(1000);
    ws.send(fits.as_str()).await.unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text(fits)
    );
    // Over the server's limit: 1009, and serve sees the error.
    ws.send("y".repeat(2000)).await.unwrap();
    match bounded(ws.recv()).await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1009),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
}

/// Counts the connections it serves; answers the upgrade with a 16 MiB header, which a client
/// that does not read cannot take in one go.
struct HugeUpgrade(Arc<AtomicUsize>);

impl Controller for HugeUpgrade {
    type Error = socketry::Error;

    async fn serve(&self, _conn: &mut Conn, _request: &Request) -> Result<(), Self::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn upgrade_headers(&self, _request: &Request) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let big = HeaderValue::from_str(&"z".repeat(16 << 20)).unwrap();
        headers.insert("x-padding", big);
        headers
    }
}

#[tokio::test]
async fn an_upgrade_that_cannot_be_written_is_dropped_at_the_handshake_timeout() {
    let served = Arc::new(AtomicUsize::new(0));
    let app = Upgrader::new(HugeUpgrade(served.clone()))
        .settings(Settings::default().handshake_timeout(Duration::from_millis(200)))
        .route(Router::new(), "/ws");
    let addr = serve(app).await;

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = upgrade_request(addr, "/ws", "");
    stream.write_all(request.as_bytes()).await.unwrap();
    // Not reading: the 101 cannot be flushed, the timeout passes...
    tokio::time::sleep(Duration::from_millis(600)).await;
    // ...then reading it all lets hyper finish; the upgrade was given up on by then.
    let mut sink = vec![0u8; 1 << 20];
    let mut total = 0usize;
    while total < 16 << 20 {
        match bounded(stream.read(&mut sink)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    // How much of the 101 left before the timeout depends on the machine's load (nothing at
    // all on a busy one, where the connection is reset); what matters is that serve never ran.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        served.load(Ordering::SeqCst),
        0,
        "serve ran after the timeout"
    );
}
