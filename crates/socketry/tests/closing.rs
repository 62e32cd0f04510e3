//! The closing handshake (RFC 6455 §7): bounded by its timeout, always closes the transport,
//! idempotent; and replies (pong, close) go out without waiting for the application to write.

mod support;

use std::time::{Duration, Instant};

use socketry::{Acceptor, CloseCode, Error, Message, OpCode, WebSocketConfig};
use support::*;
use tokio::sync::mpsc;

fn quick_close() -> Acceptor {
    Acceptor::new().config(WebSocketConfig::default().close_timeout(Duration::from_millis(300)))
}

#[tokio::test]
async fn close_gives_up_on_a_silent_peer_after_the_timeout_and_closes_the_socket() {
    let (addr, mut rx) = serve_reporting(move |stream| async move {
        let mut ws = quick_close().accept(stream).await.unwrap();
        let started = Instant::now();
        let result = ws.close(CloseCode::NORMAL, "bye").await;
        (result.is_ok(), started.elapsed())
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    // Read the close frame but never answer it.
    let frame = client.read_frame().await.unwrap();
    assert_eq!(frame.opcode, OpCode::Close);
    assert_eq!(&frame.payload[..], b"\x03\xe8bye");
    assert!(
        client.closed_by_server().await,
        "socket closed after the timeout"
    );
    let (ok, elapsed) = bounded(rx.recv()).await.unwrap();
    assert!(ok);
    assert!(
        elapsed >= Duration::from_millis(250),
        "waited for the peer: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "but not forever: {elapsed:?}"
    );
}

#[tokio::test]
async fn close_completes_at_once_with_a_peer_that_answers() {
    let (addr, mut rx) = serve_reporting(move |stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap(); // 10 s timeout
        let started = Instant::now();
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        let second = ws.close(CloseCode::NORMAL, "").await;
        let send = ws.send("late").await;
        (started.elapsed(), second.is_ok(), send)
    })
    .await;
    let (mut client, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    let close = bounded(client.recv()).await.unwrap().unwrap();
    assert_eq!(
        close,
        Message::Close(Some(socketry::CloseFrame::new(CloseCode::NORMAL, "")))
    );
    assert!(bounded(client.recv()).await.is_none());
    let (elapsed, second_ok, send) = bounded(rx.recv()).await.unwrap();
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert!(second_ok, "close is idempotent");
    assert!(matches!(send, Err(Error::AlreadyClosed)), "{send:?}");
}

#[tokio::test]
async fn peer_close_is_echoed_then_the_server_closes_the_socket() {
    let addr = socketry_echo_server().await;
    let mut client = RawClient::connect(addr).await;
    client
        .send_frame(true, OpCode::Close, b"\x0f\xa0done")
        .await; // 4000
    let reply = client.read_frame().await.unwrap();
    assert_eq!(reply.opcode, OpCode::Close);
    assert_eq!(&reply.payload[..], b"\x0f\xa0");
    assert!(client.closed_by_server().await);
}

#[tokio::test]
async fn pong_goes_out_while_the_application_only_waits_in_recv() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = serve(move |stream| {
        let tx = tx.clone();
        async move {
            let mut ws = socketry::accept(stream).await.unwrap();
            // The application never writes; it only receives.
            while let Some(Ok(message)) = ws.recv().await {
                let _ = tx.send(message);
            }
        }
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    for i in 0..3u8 {
        client.send_frame(true, OpCode::Ping, &[i]).await;
        let pong = client.read_frame().await.unwrap();
        assert_eq!((pong.opcode, &pong.payload[..]), (OpCode::Pong, &[i][..]));
        assert_eq!(
            bounded(rx.recv()).await.unwrap(),
            Message::Ping(vec![i].into())
        );
    }
}

#[tokio::test]
async fn recv_is_cancel_safe_under_select() {
    let addr = serve(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        for i in 0..200u32 {
            // Trickle messages so reads get cancelled mid-message.
            let payload = format!("{i}:{}", "x".repeat((i as usize * 37) % 3000));
            ws.send(payload).await.unwrap();
            if i % 16 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    })
    .await;
    let (mut ws, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    let mut next = 0u32;
    let mut cancelled = 0;
    let deadline = Instant::now() + TIMEOUT;
    let mut polls = 0u32;
    while Instant::now() < deadline {
        polls = polls % 5 + 1;
        tokio::select! {
            biased;
            message = ws.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    let (n, _) = text.split_once(':').unwrap();
                    assert_eq!(n.parse::<u32>().unwrap(), next, "in order, none lost");
                    next += 1;
                }
                Some(Ok(Message::Close(_))) => {}
                None => break,
                other => panic!("{other:?}"),
            },
            () = after_polls(polls) => cancelled += 1,
        }
    }
    assert_eq!(next, 200);
    assert!(cancelled > 0, "the test cancelled at least one recv");
}
