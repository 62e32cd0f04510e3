//! The server's opening handshake over real sockets: each malformed request gets its status,
//! and the server keeps serving. The client's side: a refused handshake carries the status.

mod support;

use std::time::Duration;

use socketry::{Acceptor, Error, HandshakeError, http::StatusCode};
use support::*;
use tokio::{io::AsyncWriteExt, net::TcpStream};

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[tokio::test]
async fn each_malformed_request_gets_its_status_and_the_server_keeps_serving() {
    let addr = socketry_echo_server().await;
    let up = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    let v13 = "Sec-WebSocket-Version: 13\r\n";
    let host = "Host: test\r\n";
    // (request, expected status line prefix, a header the answer must carry)
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        (
            format!("POST / HTTP/1.1\r\n{host}{up}{v13}{KEY}\r\n"),
            "HTTP/1.1 405",
            Some("allow: GET"),
        ),
        (
            format!("GET / HTTP/1.0\r\n{host}{up}{v13}{KEY}\r\n"),
            "HTTP/1.1 400",
            None,
        ),
        (
            format!("GET / HTTP/1.1\r\n{host}Connection: Upgrade\r\n{v13}{KEY}\r\n"),
            "HTTP/1.1 426",
            Some("upgrade: websocket"),
        ),
        (
            format!("GET / HTTP/1.1\r\n{host}Upgrade: websocket\r\n{v13}{KEY}\r\n"),
            "HTTP/1.1 400",
            None,
        ),
        (
            format!("GET / HTTP/1.1\r\n{host}{up}Sec-WebSocket-Version: 8\r\n{KEY}\r\n"),
            "HTTP/1.1 426",
            Some("sec-websocket-version: 13"),
        ),
        (
            format!("GET / HTTP/1.1\r\n{host}{up}{KEY}\r\n"),
            "HTTP/1.1 426",
            Some("sec-websocket-version: 13"),
        ),
        (
            format!("GET / HTTP/1.1\r\n{host}{up}{v13}\r\n"),
            "HTTP/1.1 400",
            None,
        ),
        (
            format!("GET / HTTP/1.1\r\n{host}{up}{v13}Sec-WebSocket-Key: short\r\n\r\n"),
            "HTTP/1.1 400",
            None,
        ),
        (
            format!("GET / HTTP/1.1\r\n{up}{v13}{KEY}\r\n"),
            "HTTP/1.1 400",
            None,
        ),
        (
            "\x16\x03\x01\x02\x00 not http at all\r\n\r\n".to_owned(),
            "HTTP/1.1 400",
            None,
        ),
        (
            format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000)),
            "HTTP/1.1 431",
            None,
        ),
        // RFC 6455 §11.3.1: one Sec-WebSocket-Key.
        (
            format!("GET / HTTP/1.1\r\n{host}{up}{v13}{KEY}{KEY}\r\n"),
            "HTTP/1.1 400",
            None,
        ),
        // Cross-site WebSocket hijacking: a page from another host is refused by default.
        (
            format!("GET / HTTP/1.1\r\n{host}{up}{v13}{KEY}Origin: http://evil.example\r\n\r\n"),
            "HTTP/1.1 403",
            None,
        ),
    ];
    for (request, status, header) in cases {
        let answer = raw_exchange(addr, request.as_bytes()).await;
        assert!(answer.starts_with(status), "{request:?} got {answer:?}");
        if let Some(header) = header {
            assert!(
                answer
                    .to_ascii_lowercase()
                    .contains(&header.to_ascii_lowercase()),
                "{request:?} got {answer:?}"
            );
        }
        // And a good client is still served.
        let mut client = RawClient::connect(addr).await;
        client
            .send_frame(true, socketry::OpCode::Text, b"still here")
            .await;
        assert_eq!(
            &client.read_frame().await.unwrap().payload[..],
            b"still here"
        );
    }
}

#[tokio::test]
async fn a_silent_client_is_cut_at_the_handshake_timeout() {
    let (addr, mut rx) = serve_reporting(move |stream| async move {
        let acceptor = Acceptor::new().handshake_timeout(Duration::from_millis(200));
        let result = acceptor.accept(stream).await;
        result.map(|_| ())
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap(); // and nothing more
    let started = std::time::Instant::now();
    let result = bounded(rx.recv()).await.unwrap();
    assert!(matches!(result, Err(Error::Timeout(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn pipelined_frame_after_the_request_is_not_lost() {
    let addr = socketry_echo_server().await;
    let mut request = upgrade_request(addr).into_bytes();
    // A masked text frame "hi" sent in the same write as the request.
    request.extend_from_slice(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.ends_with(b"\x81\x02hi") {
        let n = bounded(tokio::io::AsyncReadExt::read(&mut stream, &mut chunk))
            .await
            .unwrap();
        assert!(
            n > 0,
            "closed before the echo: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn subprotocol_is_the_first_of_the_clients_order_that_the_server_supports() {
    let addr = serve(|stream| async move {
        let acceptor = Acceptor::new().protocols(["v1.chat", "v2.chat"]);
        if let Ok(ws) = acceptor.accept(stream).await {
            echo(ws).await;
        }
    })
    .await;
    let (ws, response) = socketry::Connector::new()
        .protocols(["v3.chat", "v2.chat", "v1.chat"])
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some("v2.chat"));
    assert_eq!(response.headers()["sec-websocket-protocol"], "v2.chat");
}

#[tokio::test]
async fn subprotocol_can_follow_the_servers_order() {
    let addr = serve(|stream| async move {
        let acceptor = Acceptor::new()
            .protocols(["v1.chat", "v2.chat"])
            .protocol_order(socketry::ProtocolOrder::Server);
        if let Ok(ws) = acceptor.accept(stream).await {
            echo(ws).await;
        }
    })
    .await;
    let (ws, _) = socketry::Connector::new()
        .protocols(["v3.chat", "v2.chat", "v1.chat"])
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some("v1.chat"));
}

#[tokio::test]
async fn client_gets_the_status_of_a_refused_handshake() {
    let addr = serve(|mut stream| async move {
        let mut buf = [0u8; 2048];
        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
        let _ = stream
            .write_all(
                b"HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer\r\n\
                  content-length: 20\r\n\r\n{\"error\":\"no token\"}",
            )
            .await;
    })
    .await;
    let err = socketry::connect(&format!("ws://{addr}/"))
        .await
        .unwrap_err();
    let Error::Http(response) = &err else {
        panic!("expected the whole response: {err:?}")
    };
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(&response.body()[..], br#"{"error":"no token"}"#);
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
}

#[tokio::test]
async fn client_refuses_a_wrong_accept_value() {
    let addr = serve(|mut stream| async move {
        let mut buf = [0u8; 2048];
        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
        let _ = stream
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            )
            .await;
    })
    .await;
    let err = socketry::connect(&format!("ws://{addr}/"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Handshake(HandshakeError::InvalidAccept)),
        "{err:?}"
    );
}

#[tokio::test]
async fn client_extra_headers_reach_the_server() {
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let (_ws, request) = Acceptor::new().accept_with_request(stream).await.unwrap();
        request
    })
    .await;
    let (_ws, _) = socketry::Connector::new()
        .header(
            socketry::http::header::COOKIE,
            socketry::http::HeaderValue::from_static("session=abc"),
        )
        .connect(&format!("ws://{addr}/room/7?user=ann"))
        .await
        .unwrap();
    let request = bounded(rx.recv()).await.unwrap();
    assert_eq!(request.uri(), "/room/7?user=ann");
    assert_eq!(request.headers()["cookie"], "session=abc");
}

#[tokio::test]
async fn connect_times_out_against_a_server_that_never_answers() {
    let addr = serve(|stream| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(stream);
    })
    .await;
    let err = socketry::Connector::new()
        .handshake_timeout(Duration::from_millis(200))
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn the_origin_policy_admits_same_host_pages_and_configured_origins() {
    let addr = socketry_echo_server().await;
    let with_origin = |addr, origin: &str| {
        upgrade_request(addr).replacen("\r\n\r\n", &format!("\r\nOrigin: {origin}\r\n\r\n"), 1)
    };
    // `RawClient::connect_with` asserts the 101.
    RawClient::connect_with(addr, &format!("Origin: http://{addr}\r\n")).await;
    RawClient::connect_with(addr, &format!("Origin: https://{addr}\r\n")).await;
    let evil = raw_exchange(addr, with_origin(addr, "https://evil.example").as_bytes()).await;
    assert!(evil.starts_with("HTTP/1.1 403"), "{evil}");

    let listed = serve(|stream| async move {
        let policy = socketry::OriginPolicy::allow(["https://app.example"]);
        if let Ok(ws) = Acceptor::new().origin_policy(policy).accept(stream).await {
            echo(ws).await;
        }
    })
    .await;
    RawClient::connect_with(listed, "Origin: https://app.example\r\n").await;
    let refused = raw_exchange(
        listed,
        with_origin(listed, &format!("http://{listed}")).as_bytes(),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
}
