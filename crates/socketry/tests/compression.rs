//! permessage-deflate over real sockets: our client and server, the controls, the safety
//! limit, refusing an answer we did not offer, and broadcast.

mod support;

use socketry::{
    Acceptor, Connector, Error, HandshakeError, Message, OpCode, PreparedMessage, ProtocolError,
    WebSocketConfig, proto::extensions::deflate::DeflateConfig,
};
use support::*;
use tokio::io::AsyncWriteExt;

fn compressed(config: DeflateConfig) -> WebSocketConfig {
    WebSocketConfig::default().compression(Some(config))
}

async fn compressed_echo_server(config: DeflateConfig) -> std::net::SocketAddr {
    serve(move |stream| async move {
        if let Ok(ws) = Acceptor::new()
            .config(compressed(config))
            .accept(stream)
            .await
        {
            echo(ws).await;
        }
    })
    .await
}

#[tokio::test]
async fn compressed_echo_between_our_client_and_server_in_every_mode() {
    let modes = [
        DeflateConfig::default(),
        DeflateConfig::default()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true),
        DeflateConfig::default()
            .server_max_window_bits(9)
            .client_max_window_bits(10),
        DeflateConfig::default().level(9).threshold(0),
    ];
    for mode in modes {
        let addr = compressed_echo_server(mode).await;
        let (mut ws, response) = Connector::new()
            .config(compressed(mode))
            .connect(&format!("ws://{addr}/"))
            .await
            .unwrap();
        assert!(
            response.headers().contains_key("sec-websocket-extensions"),
            "{mode:?}"
        );
        assert!(ws.compression().is_some());
        for len in [0, 10, 1000, 70_000, 1 << 20] {
            let text = text_of(len);
            ws.send(text.clone()).await.unwrap();
            assert_eq!(
                bounded(ws.recv()).await.unwrap().unwrap(),
                Message::text(text),
                "{mode:?} {len}"
            );
            ws.send(Message::binary(binary_of(len))).await.unwrap();
            assert_eq!(
                bounded(ws.recv()).await.unwrap().unwrap(),
                Message::binary(binary_of(len))
            );
        }
        bounded(ws.close(socketry::CloseCode::NORMAL, ""))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn compression_is_off_unless_both_sides_enable_it() {
    let plain = socketry_echo_server().await;
    let (ws, response) = Connector::new()
        .config(compressed(DeflateConfig::default()))
        .connect(&format!("ws://{plain}/"))
        .await
        .unwrap();
    assert!(!response.headers().contains_key("sec-websocket-extensions"));
    assert!(
        ws.compression().is_none(),
        "declined: plain connection, not an error"
    );

    let deflating = compressed_echo_server(DeflateConfig::default()).await;
    let (ws, _) = socketry::connect(&format!("ws://{deflating}/"))
        .await
        .unwrap();
    assert!(ws.compression().is_none(), "the client did not offer");
}

/// Reads the frames a compressing server sends and reports their RSV1 bits.
async fn rsv1_of_replies(addr: std::net::SocketAddr, payloads: &[&[u8]]) -> Vec<bool> {
    let mut client =
        RawClient::connect_with(addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    let mut bits = Vec::new();
    for payload in payloads {
        client.send_frame(true, OpCode::Binary, payload).await;
        let frame = client.read_frame().await.unwrap();
        bits.push(frame.rsv & socketry::proto::frame::RSV1 != 0);
    }
    bits
}

#[tokio::test]
async fn threshold_and_per_message_switch_decide_what_is_compressed() {
    let addr = serve(|stream| async move {
        let config = compressed(DeflateConfig::default().threshold(100));
        let mut ws = Acceptor::new().config(config).accept(stream).await.unwrap();
        let mut n = 0;
        while let Some(Ok(message)) = ws.recv().await {
            n += 1;
            ws.set_compression(n != 3); // the third reply goes out uncompressed
            ws.send(message).await.unwrap();
        }
    })
    .await;
    let small = [1u8; 10];
    let large = [2u8; 1000];
    let bits = rsv1_of_replies(addr, &[&small, &large, &large, &large]).await;
    assert_eq!(bits, [false, true, false, true]);
}

#[tokio::test]
async fn a_compressed_bomb_gets_1009_without_inflating_it() {
    let config = WebSocketConfig::default()
        .compression(Some(DeflateConfig::default()))
        .max_message_size(Some(1 << 20));
    let (addr, mut rx) = serve_reporting(move |stream| async move {
        let mut ws = Acceptor::new().config(config).accept(stream).await.unwrap();
        ws.recv().await.map(|r| r.map(|_| ()))
    })
    .await;
    // 64 MiB of zeros compress to a few dozen KiB; sent whole in one compressed frame.
    let mut compressor =
        flate2::Compress::new_with_window_bits(flate2::Compression::best(), false, 15);
    let mut bomb = Vec::with_capacity(1 << 20);
    compressor
        .compress_vec(&vec![0u8; 64 << 20], &mut bomb, flate2::FlushCompress::Sync)
        .unwrap();
    assert!(bomb.len() < 1 << 20);
    let mut client =
        RawClient::connect_with(addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    let mut frame = bytes::BytesMut::new();
    socketry::proto::frame::encode_frame(
        &mut frame,
        true,
        socketry::proto::frame::RSV1,
        OpCode::Binary,
        Some([1, 2, 3, 4]),
        &bomb,
    );
    client.stream.write_all(&frame).await.unwrap();
    assert_eq!(client.read_close_code().await, 1009);
    let result = bounded(rx.recv()).await.unwrap();
    assert!(
        matches!(
            result,
            Some(Err(Error::Protocol(ProtocolError::MessageTooBig { .. })))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn the_client_refuses_an_extension_it_did_not_offer_and_just_closes_tcp() {
    let (addr, mut rx) = serve_reporting(|mut stream| async move {
        let mut buf = vec![0u8; 4096];
        let n = tokio::io::AsyncReadExt::read(&mut stream, &mut buf)
            .await
            .unwrap();
        let request = String::from_utf8_lossy(&buf[..n]).to_string();
        let key = request
            .lines()
            .find_map(|l| l.strip_prefix("sec-websocket-key: "))
            .unwrap()
            .trim()
            .to_owned();
        let accept = socketry::proto::handshake::accept_key(key.as_bytes());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate; \
             server_max_window_bits=12\r\n\r\n"
        );
        stream.write_all(response.as_bytes()).await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest).await;
        rest
    })
    .await;
    // Our offer limits the server window to 10 bits; the answer says 12.
    let offer = DeflateConfig::default().server_max_window_bits(10);
    let err = Connector::new()
        .config(compressed(offer))
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Handshake(HandshakeError::UnexpectedExtension(_))
        ),
        "{err:?}"
    );
    // The handshake failed, so there never was a WebSocket connection to close with 1010
    // (RFC 6455 §4.1): TCP just ends.
    let rest = bounded(rx.recv()).await.unwrap();
    assert!(
        rest.is_empty(),
        "no frame after a failed handshake: {rest:?}"
    );
}

#[tokio::test]
async fn a_prepared_message_reaches_compressed_and_plain_connections() {
    let no_context = DeflateConfig::default().server_no_context_takeover(true);
    let modes = [None, Some(DeflateConfig::default()), Some(no_context)];
    let prepared = PreparedMessage::new(Message::text(text_of(50_000)));
    for mode in modes {
        let (addr, mut rx) = serve_reporting(move |stream| async move {
            let config = WebSocketConfig::default().compression(mode);
            Acceptor::new().config(config).accept(stream).await.unwrap()
        })
        .await;
        let (mut client, _) = Connector::new()
            .config(WebSocketConfig::default().compression(mode))
            .connect(&format!("ws://{addr}/"))
            .await
            .unwrap();
        let mut server = bounded(rx.recv()).await.unwrap();
        for _ in 0..3 {
            server.send_prepared(&prepared).await.unwrap();
            assert_eq!(
                bounded(client.recv()).await.unwrap().unwrap(),
                prepared.message().clone(),
                "{mode:?}"
            );
        }
    }
}
