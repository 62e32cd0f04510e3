//! `wss://` through rustls against a TLS server with a self-signed certificate, and the hyper
//! 1.x upgrade path with our client and tokio-tungstenite's.

mod support;

use std::sync::Arc;

use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use socketry::{Acceptor, Bytes, Connector, Error, Message, upgrade};
use support::*;
use tokio::net::TcpListener;
use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer};

#[tokio::test]
async fn wss_client_talks_to_a_tls_server() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_der = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let addr = serve(move |stream| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            if let Ok(ws) = socketry::accept(tls).await {
                echo(ws).await;
            }
        }
    })
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let url = format!("wss://localhost:{}/secure", addr.port());
    let (mut ws, _) = Connector::new()
        .tls_config(Arc::new(client_config))
        .connect(&url)
        .await
        .unwrap();
    for len in [0, 125, 70_000] {
        ws.send(text_message(len)).await.unwrap();
        assert_eq!(
            bounded(ws.recv()).await.unwrap().unwrap(),
            text_message(len)
        );
    }
    bounded(ws.close(socketry::CloseCode::NORMAL, ""))
        .await
        .unwrap();

    // The default configuration trusts only the webpki roots: the self-signed certificate fails.
    let err = socketry::connect(&url).await.unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
}

async fn hyper_server() -> std::net::SocketAddr {
    async fn handler(
        mut request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, hyper::Error> {
        let acceptor = Acceptor::new().protocols(["echo"]);
        let (response, websocket) = match acceptor.upgrade(&mut request) {
            Ok(upgrade) => upgrade,
            Err(err) => return Ok(upgrade::reject(&err)),
        };
        tokio::spawn(async move {
            // A plain TCP socket served by hyper is taken out of hyper's wrapper; were it
            // not, nothing is echoed and the tests fail.
            if let Ok(ws) = websocket.await
                && ws.get_ref().is_tcp()
            {
                echo(ws).await;
            }
        });
        Ok(response)
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(handler))
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn hyper_upgrade_serves_our_client_and_tungstenite() {
    use futures_util::{SinkExt, StreamExt};
    let addr = hyper_server().await;

    let (mut ws, response) = Connector::new()
        .protocols(["echo"])
        .connect(&format!("ws://{addr}/ws"))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(ws.protocol(), Some("echo"));
    ws.send(Message::binary(binary_of(65536))).await.unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::binary(binary_of(65536))
    );
    bounded(ws.close(socketry::CloseCode::NORMAL, ""))
        .await
        .unwrap();

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut t, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
        .await
        .unwrap();
    t.send(tokio_tungstenite::tungstenite::Message::text("hi"))
        .await
        .unwrap();
    let reply = bounded(t.next()).await.unwrap().unwrap();
    assert_eq!(reply, tokio_tungstenite::tungstenite::Message::text("hi"));
}

#[tokio::test]
async fn hyper_upgrade_rejects_a_plain_request_with_426() {
    let addr = hyper_server().await;
    let answer = raw_exchange(
        addr,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13")
    );
}

#[tokio::test]
async fn hyper_upgrade_refuses_a_cross_site_origin_with_403() {
    let addr = hyper_server().await;
    let request = upgrade_request(addr).replacen(
        "\r\n\r\n",
        "\r\nOrigin: http://evil.example\r\nConnection: close\r\n\r\n",
        1,
    );
    let answer = raw_exchange(addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
}

#[tokio::test]
async fn bytes_sent_right_behind_the_upgrade_request_are_not_lost() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = hyper_server().await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The request and a masked text frame "hi" in one write: hyper reads both at once and
    // must hand the frame over with the socket.
    let mut wire = upgrade_request(addr).into_bytes();
    wire.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
    stream.write_all(&wire).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(&[0x81, 0x02, b'h', b'i']) {
        let n = bounded(stream.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 101"));
}
