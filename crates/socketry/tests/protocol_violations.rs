//! Every protocol violation sends the close code RFC 6455 requires, closes the transport, and
//! reaches the handler as a typed error; no input panics the server.

mod support;

use socketry::{Acceptor, CloseCode, Error, OpCode, ProtocolError, WebSocketConfig};
use support::*;
use tokio::{io::AsyncWriteExt, sync::mpsc};

/// A server that reports what `recv` ended with, and the code its client sees.
async fn violation(
    config: WebSocketConfig,
    attack: impl AsyncFnOnce(&mut RawClient),
) -> (Error, u16, bool) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = serve(move |stream| {
        let tx = tx.clone();
        async move {
            let mut ws = Acceptor::new().config(config).accept(stream).await.unwrap();
            while let Some(result) = ws.recv().await {
                if let Err(err) = result {
                    let _ = tx.send(err);
                    assert!(ws.recv().await.is_none(), "nothing after an error");
                    return;
                }
            }
        }
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    attack(&mut client).await;
    let code = client.read_close_code().await;
    let closed = client.closed_by_server().await;
    let err = bounded(rx.recv()).await.unwrap();
    (err, code, closed)
}

#[tokio::test]
async fn unmasked_frame_gets_1002() {
    let (err, code, closed) = violation(WebSocketConfig::default(), async |c| {
        c.stream.write_all(b"\x81\x02hi").await.unwrap();
    })
    .await;
    assert!(matches!(
        err,
        Error::Protocol(ProtocolError::UnmaskedClientFrame)
    ));
    assert_eq!(code, 1002);
    assert!(closed);
}

#[tokio::test]
async fn reserved_opcode_gets_1002() {
    let (err, code, _) = violation(WebSocketConfig::default(), async |c| {
        c.stream.write_all(&[0x83, 0x80, 1, 2, 3, 4]).await.unwrap();
    })
    .await;
    assert!(matches!(
        err,
        Error::Protocol(ProtocolError::ReservedOpcode(3))
    ));
    assert_eq!(code, 1002);
}

#[tokio::test]
async fn invalid_utf8_split_across_fragments_gets_1007_at_the_first_bad_fragment() {
    let (err, code, _) = violation(WebSocketConfig::default(), async |c| {
        c.send_frame(false, OpCode::Text, "κόσμε".as_bytes()).await;
        c.send_frame(false, OpCode::Continuation, &[0xce]).await;
        c.send_frame(false, OpCode::Continuation, &[0xff]).await;
        // No final fragment: the server must not wait for one.
    })
    .await;
    assert!(matches!(err, Error::Protocol(ProtocolError::InvalidUtf8)));
    assert_eq!(code, 1007);
    assert_eq!(err.close_code(), Some(CloseCode::INVALID_PAYLOAD));
}

#[tokio::test]
async fn oversized_message_gets_1009() {
    let config = WebSocketConfig::default().max_message_size(Some(1000));
    let (err, code, _) = violation(config, async |c| {
        c.send_frame(false, OpCode::Binary, &[0; 600]).await;
        c.send_frame(true, OpCode::Continuation, &[0; 600]).await;
    })
    .await;
    assert!(matches!(
        err,
        Error::Protocol(ProtocolError::MessageTooBig { .. })
    ));
    assert_eq!(code, 1009);
}

#[tokio::test]
async fn header_announcing_2_pow_63_minus_1_bytes_gets_1009_without_allocating_it() {
    let (err, code, _) = violation(WebSocketConfig::default(), async |c| {
        let mut header = vec![0x82, 0xff];
        header.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        c.stream.write_all(&header).await.unwrap();
    })
    .await;
    assert!(matches!(
        err,
        Error::Protocol(ProtocolError::FrameTooBig { .. })
    ));
    assert_eq!(code, 1009);
}

#[tokio::test]
async fn peer_vanishing_mid_frame_is_an_abnormal_closure() {
    let (addr, mut rx) = serve_reporting(move |stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let result = ws.recv().await;
        result.map(|r| r.map(|_| ()))
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    client
        .stream
        .write_all(&[0x82, 0x85, 1, 2, 3, 4, 9])
        .await
        .unwrap(); // 1 of 5 bytes
    drop(client);
    let result = bounded(rx.recv()).await.unwrap();
    assert!(
        matches!(result, Some(Err(Error::AbnormalClosure))),
        "{result:?}"
    );
}

#[tokio::test]
async fn random_garbage_never_panics_the_server() {
    let (addr, mut rx) = serve_reporting(move |stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        while ws.recv().await.is_some() {}
    })
    .await;
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..200 {
        let mut client = RawClient::connect(addr).await;
        let len = (seed % 300) as usize;
        let garbage: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = client.stream.write_all(&garbage).await;
        drop(client);
        bounded(rx.recv()).await.unwrap();
    }
    // Still serving.
    let mut client = RawClient::connect(addr).await;
    client.send_frame(true, OpCode::Ping, b"ok").await;
    assert_eq!(client.read_frame().await.unwrap().opcode, OpCode::Pong);
}
