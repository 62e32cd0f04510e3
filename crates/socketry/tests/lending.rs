//! The lending receive, `WebSocket::recv_with`: against tokio-tungstenite (a peer nobody here
//! wrote), with compression, with a peer that breaks UTF-8, with one that stops reading, with
//! a read timeout, and through the close.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use socketry::{
    Acceptor, CloseCode, Error, Message, MessageRef, OpCode, Timeout, WebSocket, WebSocketConfig,
    proto::extensions::deflate::DeflateConfig,
};
use support::*;
use tokio_tungstenite::tungstenite::{self, protocol::frame::Frame};

type TMessage = tungstenite::Message;

/// Echoes data messages through `recv_with` until the connection ends; reports every
/// message it was lent (as owned copies) and how the loop ended.
async fn lending_echo<S>(mut ws: WebSocket<S>) -> (Vec<Message>, Option<Error>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut seen = Vec::new();
    while let Some(lent) = ws
        .recv_with(|message, replies| {
            let copy = message.to_message();
            let replied = if message.is_text() || message.is_binary() {
                replies.feed(message)
            } else {
                Ok(())
            };
            (copy, replied)
        })
        .await
    {
        match lent {
            Ok((message, replied)) => {
                seen.push(message);
                if let Err(err) = replied {
                    return (seen, Some(err));
                }
            }
            Err(err) => return (seen, Some(err)),
        }
    }
    (seen, None)
}

async fn lending_echo_server(
    config: WebSocketConfig,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(Vec<Message>, Option<Error>)>,
) {
    serve_reporting(move |stream| async move {
        let ws = Acceptor::new().config(config).accept(stream).await.unwrap();
        lending_echo(ws).await
    })
    .await
}

/// A raw client that sends 2,000 numbered small text messages and reads nothing yet.
async fn flooding_client(addr: std::net::SocketAddr) -> RawClient {
    let mut client = RawClient::connect(addr).await;
    for i in 0..2000u32 {
        client
            .send_frame(true, OpCode::Text, format!("{i:05}").as_bytes())
            .await;
    }
    client
}

#[tokio::test]
async fn a_tungstenite_client_gets_every_message_back_small_large_fragmented_and_pipelined() {
    let (addr, mut reports) = lending_echo_server(WebSocketConfig::default()).await;
    let mut client = tungstenite_client(addr).await;
    // Every length boundary, one at a time.
    assert_tungstenite_echo_at_every_length(&mut client).await;
    // Pipelined: many small messages in one write, so most are lent from one read's batch,
    // with a ping and a fragmented message among them.
    for i in 0..200u32 {
        client.feed(TMessage::text(format!("m{i}"))).await.unwrap();
        if i == 50 {
            client
                .feed(TMessage::Ping(b"between".to_vec().into()))
                .await
                .unwrap();
        }
        if i == 100 {
            client
                .feed(TMessage::Frame(Frame::message(
                    b"frag".to_vec(),
                    tungstenite::protocol::frame::coding::OpCode::Data(
                        tungstenite::protocol::frame::coding::Data::Text,
                    ),
                    false,
                )))
                .await
                .unwrap();
            client
                .feed(TMessage::Frame(Frame::message(
                    b"mented".to_vec(),
                    tungstenite::protocol::frame::coding::OpCode::Data(
                        tungstenite::protocol::frame::coding::Data::Continue,
                    ),
                    true,
                )))
                .await
                .unwrap();
        }
    }
    client.flush().await.unwrap();
    let mut got = Vec::new();
    while got.len() < 201 {
        match bounded(client.next()).await.unwrap().unwrap() {
            TMessage::Text(text) => got.push(text.to_string()),
            TMessage::Pong(payload) => assert_eq!(&payload[..], b"between"),
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut want: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    want.insert(101, "fragmented".to_owned());
    assert_eq!(got, want);
    client.close(None).await.unwrap();
    let (seen, ended) = bounded(reports.recv()).await.unwrap();
    assert!(ended.is_none(), "a clean close: {ended:?}");
    // The ping was lent too (answered before), and the peer's close came last.
    assert!(seen.contains(&Message::Ping("between".into())));
    assert_eq!(seen.last(), Some(&Message::Close(None)));
}

#[tokio::test]
async fn replies_are_compressed_when_permessage_deflate_was_negotiated() {
    let deflate = DeflateConfig::default().threshold(0);
    let config = WebSocketConfig::default().compression(Some(deflate));
    let (addr, _reports) = lending_echo_server(config).await;
    let (mut client, _) = socketry::Connector::new()
        .config(config)
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    assert!(client.compression().is_some());
    for len in [0, 5, 125, 126, 4000, 100_000] {
        assert_echo(&mut client, &text_of(len)).await;
    }
    client.close(CloseCode::NORMAL, "").await.unwrap();
}

#[tokio::test]
async fn invalid_utf8_in_a_small_text_frame_fails_the_connection_with_1007() {
    let (addr, mut reports) = lending_echo_server(WebSocketConfig::default()).await;
    let mut client = RawClient::connect(addr).await;
    client.send_frame(true, OpCode::Text, b"fine").await;
    client
        .send_frame(true, OpCode::Text, &[b'a', 0xc3, 0x28])
        .await;
    let echoed = bounded(client.read_frame()).await.unwrap();
    assert_eq!(&echoed.payload[..], b"fine");
    assert_eq!(client.read_close_code().await, 1007);
    let (seen, ended) = bounded(reports.recv()).await.unwrap();
    assert_eq!(seen, [Message::text("fine")]);
    assert!(matches!(ended, Some(Error::Protocol(_))), "{ended:?}");
}

#[tokio::test]
async fn replies_wait_for_room_when_the_peer_stops_reading_then_all_arrive_in_order() {
    let config = WebSocketConfig::default().write_buffer_size(64 * 1024);
    let (addr, mut reports) = serve_reporting(move |stream| async move {
        let mut ws = Acceptor::new().config(config).accept(stream).await.unwrap();
        let big = "z".repeat(4000);
        let mut stalled_at = None;
        for i in 0..2000u32 {
            let reply = |message: MessageRef<'_>, replies: &mut socketry::Replies<'_>| {
                assert_eq!(message, MessageRef::Text(&format!("{i:05}")));
                replies.feed(&format!("{i:05}{big}"))
            };
            let received = ws.recv_with(reply);
            match tokio::time::timeout(Duration::from_millis(500), received).await {
                Ok(result) => result.unwrap().unwrap().unwrap(),
                Err(_) => {
                    stalled_at.get_or_insert(i);
                    ws.recv_with(reply).await.unwrap().unwrap().unwrap();
                }
            }
        }
        ws.flush().await.unwrap();
        stalled_at
    })
    .await;
    let mut client = flooding_client(addr).await;
    // Do not read for a second: the server must stop receiving rather than queue 8 MB.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for i in 0..2000u32 {
        let frame = bounded(client.read_frame()).await.unwrap();
        assert_eq!(&frame.payload[..5], format!("{i:05}").as_bytes());
        assert_eq!(frame.payload.len(), 4005);
    }
    let stalled_at = bounded(reports.recv()).await.unwrap();
    let stalled_at = stalled_at.expect("the server waited for room");
    // 64 KiB of queue plus what the kernel's buffers took: far from all 2000 (8 MB).
    assert!(stalled_at < 1500, "stalled only at {stalled_at}");
}

#[tokio::test]
async fn the_write_timeout_bounds_the_wait_for_room_as_it_bounds_feed() {
    let config = WebSocketConfig::default()
        .write_buffer_size(64 * 1024)
        .write_timeout(Some(Duration::from_millis(300)));
    let (addr, mut reports) = serve_reporting(move |stream| async move {
        let mut ws = Acceptor::new().config(config).accept(stream).await.unwrap();
        let big = "z".repeat(4000);
        for i in 0..2000u32 {
            match ws.recv_with(|_, replies| replies.feed(&*big)).await {
                Some(Ok(replied)) => replied.unwrap(),
                Some(Err(err)) => {
                    // Still owed: the next call waits (and times out) again, lending nothing.
                    let again = ws
                        .recv_with(|_, _| panic!("lent while the queue is full"))
                        .await;
                    assert!(
                        matches!(again, Some(Err(Error::Timeout(Timeout::Write)))),
                        "{again:?}"
                    );
                    return Some((i, err));
                }
                None => return None,
            }
        }
        None
    })
    .await;
    let client = flooding_client(addr).await;
    // Never read.
    let (at, err) = bounded(reports.recv())
        .await
        .unwrap()
        .expect("the wait timed out");
    assert!(matches!(err, Error::Timeout(Timeout::Write)), "{err:?}");
    assert!(at < 1500, "timed out only at {at}");
    drop(client);
}

#[tokio::test]
async fn keepalive_runs_while_replies_wait_for_room_and_ends_a_vanished_peer() {
    let config = WebSocketConfig::default()
        .write_buffer_size(64 * 1024)
        .keepalive(Some((
            Duration::from_millis(100),
            Duration::from_millis(200),
        )));
    let (addr, mut reports) = serve_reporting(move |stream| async move {
        let mut ws = Acceptor::new().config(config).accept(stream).await.unwrap();
        let big = "z".repeat(4000);
        for _ in 0..2000u32 {
            match ws.recv_with(|_, replies| replies.feed(&*big)).await {
                Some(Ok(_)) => {}
                Some(Err(err)) => return Some(err),
                None => return None,
            }
        }
        None
    })
    .await;
    let client = flooding_client(addr).await;
    // Never read, never answer the pings: keepalive fails the connection during the wait.
    let err = bounded(reports.recv())
        .await
        .unwrap()
        .expect("keepalive ended it");
    assert!(matches!(err, Error::Timeout(Timeout::Keepalive)), "{err:?}");
    drop(client);
}

#[tokio::test]
async fn a_read_timeout_is_handed_out_and_the_connection_stays_usable() {
    let config = WebSocketConfig::default().read_timeout(Some(Duration::from_millis(100)));
    let (addr, mut reports) = serve_reporting(move |stream| async move {
        let mut ws = Acceptor::new().config(config).accept(stream).await.unwrap();
        let first = ws.recv_with(|m, _| m.to_message()).await.unwrap();
        let timed_out = matches!(first, Err(Error::Timeout(Timeout::Read)));
        // Each wait is bounded by the timeout again, until the message comes.
        for _ in 0..50 {
            match ws.recv_with(|m, _| m.to_message()).await.unwrap() {
                Ok(message) => return (timed_out, Some(message)),
                Err(Error::Timeout(Timeout::Read)) => {}
                Err(err) => panic!("{err}"),
            }
        }
        (timed_out, None)
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    client.send_frame(true, OpCode::Binary, b"late").await;
    let (timed_out, second) = bounded(reports.recv()).await.unwrap();
    assert!(timed_out);
    assert_eq!(second, Some(Message::binary(&b"late"[..])));
}

#[tokio::test]
async fn a_closer_ends_the_wait_for_room_with_the_closing_handshake_not_an_error() {
    let config = WebSocketConfig::default().write_buffer_size(64 * 1024);
    // Told when the first reply is refused: the close started while the peer still reads
    // nothing, so it is the close that ended the wait.
    let (refused_tx, mut refused) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (addr, mut reports) = serve_reporting(move |stream| {
        let refused_tx = refused_tx.clone();
        async move {
            let mut ws = Acceptor::new().config(config).accept(stream).await.unwrap();
            let closer = ws.closer();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                closer.close(CloseCode::NORMAL, "bye").unwrap();
            });
            let big = "z".repeat(4000);
            let mut last = None;
            for _ in 0..10_000 {
                // Replies after our close are refused (AlreadyClosed): that is `f`'s to see.
                match ws
                    .recv_with(|m, replies| (m.to_message(), replies.feed(&*big).is_ok()))
                    .await
                {
                    Some(Ok((message, replied))) => {
                        if !replied {
                            let _ = refused_tx.send(());
                        }
                        last = Some(message);
                    }
                    Some(Err(err)) => return Err(err),
                    None => return Ok(last),
                }
            }
            Ok(last)
        }
    })
    .await;
    let mut client = flooding_client(addr).await;
    // Not reading: the server's queue fills and its receive waits for room when the close
    // request comes, which ends the wait: the replies stop there, then the close frame.
    bounded(refused.recv())
        .await
        .expect("the close ended the wait");
    let mut replies = 0;
    let code = loop {
        let frame = bounded(client.read_frame()).await.unwrap();
        match frame.opcode {
            OpCode::Text => replies += 1,
            OpCode::Close => break u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, 1000);
    assert!(replies < 2000, "the close came after all {replies} replies");
    client
        .send_frame(true, OpCode::Close, &1000u16.to_be_bytes())
        .await;
    let ended = bounded(reports.recv()).await.unwrap();
    assert_eq!(
        ended.unwrap(),
        Some(Message::Close(Some(socketry::CloseFrame::new(
            CloseCode::NORMAL,
            ""
        ))))
    );
}
