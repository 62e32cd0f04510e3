//! The send side: a streamed message's final frame is queued once however its shutdown is
//! polled or cancelled, an unfinished message never looks whole to the peer, and large read
//! sizes are accepted.

mod support;

use std::time::Duration;

use socketry::{CloseCode, Error, Message, OpCode, Role, WebSocket, WebSocketConfig};
use support::*;
use tokio::io::{AsyncWriteExt, DuplexStream};

/// Our server end and a client peer over a transport that takes 64 bytes at a time.
fn tiny_pipe() -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (ours, theirs) = tokio::io::duplex(64);
    (
        WebSocket::from_raw(ours, Role::Server, WebSocketConfig::default()),
        WebSocket::from_raw(theirs, Role::Client, WebSocketConfig::default()),
    )
}

/// Our server end and a raw peer that reads 16 bytes a millisecond until end of file, then
/// decodes what it got as a client would: the messages, or the protocol error.
fn slow_raw_peer() -> (
    WebSocket<DuplexStream>,
    tokio::task::JoinHandle<Result<Vec<Message>, socketry::ProtocolError>>,
) {
    let (ours, mut theirs) = tokio::io::duplex(64);
    let peer = tokio::spawn(async move {
        let mut wire = Vec::new();
        let mut chunk = [0u8; 16];
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            match tokio::io::AsyncReadExt::read(&mut theirs, &mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => wire.extend_from_slice(&chunk[..n]),
            }
        }
        let mut client = socketry::proto::Connection::new(Role::Client, Default::default());
        client.receive_data(&wire);
        let mut messages = Vec::new();
        while let Some(message) = client.next_message()? {
            messages.push(message);
        }
        Ok(messages)
    });
    (
        WebSocket::from_raw(ours, Role::Server, WebSocketConfig::default()),
        peer,
    )
}

#[tokio::test]
async fn a_cancelled_shutdown_queues_the_final_frame_once() {
    let (mut ws, peer) = slow_raw_peer();
    {
        let mut message = ws.message_writer_with(OpCode::Binary, 100);
        message.write_all(&[7u8; 1000]).await.unwrap();
        // Cancel the shutdown while its flush waits for the slow reader, again and again.
        let mut cancelled = 0;
        while tokio::time::timeout(Duration::from_millis(1), message.shutdown())
            .await
            .is_err()
        {
            cancelled += 1;
        }
        assert!(cancelled > 0, "the flush pended at least once");
    }
    ws.send("next").await.unwrap();
    drop(ws);
    let got = bounded(peer).await.unwrap().expect("no protocol error");
    assert_eq!(
        got,
        [Message::binary(vec![7u8; 1000]), Message::text("next")]
    );
}

#[tokio::test]
async fn dropping_after_a_cancelled_shutdown_sends_nothing_more() {
    let (mut ws, peer) = slow_raw_peer();
    {
        let mut message = ws.message_writer_with(OpCode::Text, 100);
        message.write_all("é".repeat(300).as_bytes()).await.unwrap();
        let cancelled = tokio::time::timeout(Duration::from_millis(1), message.shutdown()).await;
        assert!(cancelled.is_err(), "the flush pended");
    }
    ws.send("next").await.unwrap();
    drop(ws);
    let got = bounded(peer).await.unwrap().expect("no protocol error");
    assert_eq!(got, [Message::text("é".repeat(300)), Message::text("next")]);
}

#[tokio::test]
async fn a_message_abandoned_midway_fails_the_connection_instead_of_looking_whole() {
    let (mut ws, mut peer) = tiny_pipe();
    let reading = tokio::spawn(async move { peer.recv().await });
    {
        let mut message = ws.message_writer_with(OpCode::Binary, 100);
        message.write_all(&[1u8; 250]).await.unwrap();
        message.flush().await.unwrap();
        // Dropped here, as `?` would: 200 bytes are out, the message is not finished.
    }
    assert!(matches!(ws.send("after").await, Err(Error::AlreadyClosed)));
    let closing = tokio::spawn(async move { ws.close(CloseCode::NORMAL, "").await });
    match bounded(reading).await.unwrap() {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::INTERNAL_ERROR);
            assert_eq!(frame.reason, "message abandoned");
        }
        other => panic!("expected the 1011 close, got {other:?}"),
    }
    bounded(closing).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_message_dropped_before_anything_was_sent_is_just_discarded() {
    let (mut ws, peer) = slow_raw_peer();
    {
        let mut message = ws.message_writer_with(OpCode::Binary, 100);
        message.write_all(&[1u8; 50]).await.unwrap();
    }
    ws.send("only").await.unwrap();
    drop(ws);
    let got = bounded(peer).await.unwrap().expect("no protocol error");
    assert_eq!(got, [Message::text("only")]);
}

#[tokio::test]
async fn a_read_buffer_larger_than_the_largest_read_works() {
    let config = WebSocketConfig::default().read_buffer_size(1 << 20);
    let addr = serve(move |stream| async move {
        if let Ok(ws) = socketry::Acceptor::new()
            .config(config)
            .accept(stream)
            .await
        {
            echo(ws).await;
        }
    })
    .await;
    let (mut ws, _) = socketry::Connector::new()
        .config(config)
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    ws.send(Message::binary(vec![3u8; 300_000])).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap().len(), 300_000);
    assert_eq!(
        WebSocketConfig::default()
            .read_buffer_size(usize::MAX)
            .get_read_buffer_size(),
        socketry::MAX_READ_BUFFER_SIZE
    );
}
