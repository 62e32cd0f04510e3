//! Client extras: an HTTP CONNECT proxy with basic auth (a small real proxy written here),
//! cookies, the dial timeout.

mod support;

use std::{net::SocketAddr, time::Duration};

use socketry::{Connector, Error, Message, Timeout, http::StatusCode};
use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A CONNECT proxy that wants `Proxy-Authorization: Basic <credentials>`; reports each
/// request line it served.
async fn connect_proxy(
    credentials: &'static str,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8(head).unwrap();
                let line = head.lines().next().unwrap().to_owned();
                let _ = tx.send(line.clone());
                let expected = format!("proxy-authorization: basic {credentials}");
                if !head
                    .to_ascii_lowercase()
                    .contains(&expected.to_ascii_lowercase())
                {
                    let _ = client
                        .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let target = line.split_whitespace().nth(1).unwrap().to_owned();
                let mut upstream = TcpStream::connect(target).await.unwrap();
                client
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn connects_through_a_connect_proxy_with_basic_auth() {
    let server = socketry_echo_server().await;
    // base64("ann:s3cret")
    let (proxy, mut requests) = connect_proxy("YW5uOnMzY3JldA==").await;
    let (mut ws, _) = Connector::new()
        .proxy(&format!("http://ann:s3cret@{proxy}"))
        .connect(&format!("ws://{server}/via-proxy"))
        .await
        .unwrap();
    assert_eq!(
        bounded(requests.recv()).await.unwrap(),
        format!("CONNECT {server} HTTP/1.1")
    );
    ws.send("through the tunnel").await.unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("through the tunnel")
    );
}

#[tokio::test]
async fn a_proxy_refusal_carries_its_status() {
    let server = socketry_echo_server().await;
    let (proxy, _requests) = connect_proxy("c29tZW9uZTplbHNl").await;
    let err = Connector::new()
        .proxy(&format!("http://ann:wrong@{proxy}"))
        .connect(&format!("ws://{server}/"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Proxy(StatusCode::PROXY_AUTHENTICATION_REQUIRED)),
        "{err:?}"
    );
}

#[tokio::test]
async fn cookies_are_joined_into_one_header() {
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let (_ws, request) = socketry::Acceptor::new()
            .accept_with_request(stream)
            .await
            .unwrap();
        request
            .headers()
            .get("cookie")
            .map(|v| v.to_str().unwrap().to_owned())
    })
    .await;
    let _ = Connector::new()
        .cookie("session", "abc")
        .cookie("theme", "dark")
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    assert_eq!(
        bounded(rx.recv()).await.unwrap().as_deref(),
        Some("session=abc; theme=dark")
    );
}

#[tokio::test]
async fn dial_timeout_bounds_the_tcp_connect() {
    // A loopback listener that never accepts, its accept queue full: Linux drops further SYNs
    // (it counts them as listen overflows), so a connect to it hangs until something ends it.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    let mut hangs = false;
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => queued.push(stream),
            Ok(Err(err)) => panic!("connect failed instead of hanging: {err}"),
            Err(_) => {
                hangs = true;
                break;
            }
        }
    }
    assert!(
        hangs,
        "the accept queue never filled: connects cannot be made to hang here"
    );

    let started = std::time::Instant::now();
    let result = Connector::new()
        .dial_timeout(Some(Duration::from_millis(200)))
        .connect(&format!("ws://{addr}/"))
        .await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(Error::Timeout(Timeout::Dial))),
        "{:?}",
        result.map(|_| ())
    );
    assert!(
        elapsed >= Duration::from_millis(190) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    drop((queued, listener));
}

#[tokio::test]
async fn url_credentials_become_basic_auth_and_never_reach_host() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tokio::io::AsyncReadExt::read_exact(&mut stream, &mut byte)
                .await
                .unwrap();
            head.push(byte[0]);
        }
        String::from_utf8(head).unwrap().to_ascii_lowercase()
    });
    // The password holds an '@', percent-encoded in the URL.
    let url = format!("ws://ann:p%40ss@{addr}/");
    let _ = tokio::time::timeout(Duration::from_secs(2), socketry::connect(&url)).await;
    let head = bounded(server).await.unwrap();
    assert!(head.contains(&format!("host: {addr}\r\n")), "{head}");
    assert!(!head.contains("ann"), "no credentials in clear: {head}");
    let expected = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("ann:p@ss")
    };
    assert!(
        head.contains(&format!(
            "authorization: basic {}",
            expected.to_ascii_lowercase()
        )),
        "{head}"
    );
}
