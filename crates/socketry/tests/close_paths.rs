//! Every way to start the close ends within the close timeout against a peer that stays
//! silent, split or not: the deadline lives in the core, and whoever starts the close wakes
//! the task that sleeps on it. After the connection ended (timeout, end of file), the state
//! says `Closed` and sends fail with `AlreadyClosed`.

mod support;

use std::time::{Duration, Instant};

use socketry::{CloseCode, Error, Message, Role, State, WebSocket, WebSocketConfig};
use support::*;
use tokio::io::{AsyncReadExt, DuplexStream};

const CLOSE_TIMEOUT: Duration = Duration::from_millis(300);
/// Generous for a loaded 2-core machine; far below the 10 s a hang would take.
const MARGIN: Duration = Duration::from_millis(1500);

/// A server connection and the raw transport of a peer that reads but never writes.
fn with_silent_peer() -> (WebSocket<DuplexStream>, DuplexStream) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let config = WebSocketConfig::default().close_timeout(CLOSE_TIMEOUT);
    (WebSocket::from_raw(ours, Role::Server, config), theirs)
}

/// Reads what the silent peer gets until end of file; returns whether a close frame came.
async fn peer_sees_close_then_eof(mut peer: DuplexStream) -> bool {
    let mut received = Vec::new();
    bounded(peer.read_to_end(&mut received)).await.unwrap();
    received.first() == Some(&0x88)
}

fn assert_within_close_timeout(started: Instant) {
    let elapsed = started.elapsed();
    assert!(elapsed >= CLOSE_TIMEOUT, "gave up early: {elapsed:?}");
    assert!(elapsed < CLOSE_TIMEOUT + MARGIN, "took {elapsed:?}");
}

#[tokio::test]
async fn websocket_close_ends_within_the_close_timeout() {
    let (mut ws, peer) = with_silent_peer();
    let peer = tokio::spawn(peer_sees_close_then_eof(peer));
    let started = Instant::now();
    bounded(ws.close(CloseCode::NORMAL, "bye")).await.unwrap();
    assert_within_close_timeout(started);
    assert!(
        bounded(peer).await.unwrap(),
        "close frame, then end of file"
    );
    assert_eq!(ws.state(), State::Closed);
}

#[tokio::test]
async fn sending_a_close_then_receiving_ends_within_the_close_timeout() {
    let (mut ws, peer) = with_silent_peer();
    let peer = tokio::spawn(peer_sees_close_then_eof(peer));
    let started = Instant::now();
    ws.send(Message::Close(None)).await.unwrap();
    assert!(bounded(ws.recv()).await.is_none());
    assert_within_close_timeout(started);
    assert!(bounded(peer).await.unwrap());
}

/// Splits, parks the reader in `recv`, runs `close` from another task and checks the reader
/// ends (and the transport closes) within the close timeout.
async fn split_close_ends_the_parked_reader<F, Fut>(close: F)
where
    F: FnOnce(socketry::WebSocketWriter<DuplexStream>) -> Fut,
    Fut: std::future::Future<Output = socketry::WebSocketWriter<DuplexStream>>,
{
    let (ws, peer) = with_silent_peer();
    let peer = tokio::spawn(peer_sees_close_then_eof(peer));
    let (mut reader, writer) = ws.split();
    let reading = tokio::spawn(async move {
        let result = reader.recv().await.map(|r| r.map(|_| ()));
        (result.is_none(), Instant::now(), reader.state())
    });
    // Let the reader park in a read first: the close must reach a sleeping task.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let writer = close(writer).await;
    let (ended_cleanly, ended_at, state) = bounded(reading).await.unwrap();
    assert!(
        ended_cleanly,
        "no message, no error: the peer just never answered"
    );
    let elapsed = ended_at - started;
    assert!(elapsed >= CLOSE_TIMEOUT, "gave up early: {elapsed:?}");
    assert!(elapsed < CLOSE_TIMEOUT + MARGIN, "took {elapsed:?}");
    assert_eq!(state, State::Closed);
    assert!(
        bounded(peer).await.unwrap(),
        "close frame, then end of file"
    );
    drop(writer);
}

#[tokio::test]
async fn writer_close_ends_the_parked_reader_within_the_close_timeout() {
    split_close_ends_the_parked_reader(|mut writer| async move {
        writer.close(CloseCode::NORMAL, "bye").await.unwrap();
        writer
    })
    .await;
}

#[tokio::test]
async fn handle_close_ends_the_parked_reader_within_the_close_timeout() {
    split_close_ends_the_parked_reader(|writer| async move {
        let handle = writer.handle();
        tokio::spawn(async move { handle.close(CloseCode::GOING_AWAY, "restart").await })
            .await
            .unwrap()
            .unwrap();
        writer
    })
    .await;
}

#[tokio::test]
async fn writer_close_without_a_reader_completes_the_handshake_itself() {
    let (ws, peer) = with_silent_peer();
    let peer = tokio::spawn(peer_sees_close_then_eof(peer));
    let (reader, mut writer) = ws.split();
    drop(reader);
    let started = Instant::now();
    bounded(writer.close(CloseCode::NORMAL, "bye"))
        .await
        .unwrap();
    assert_within_close_timeout(started);
    assert_eq!(writer.state(), State::Closed);
    assert!(bounded(peer).await.unwrap());
}

#[tokio::test]
async fn after_the_close_timeout_sends_fail_with_already_closed() {
    let (mut ws, peer) = with_silent_peer();
    let _peer = tokio::spawn(peer_sees_close_then_eof(peer));
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    assert_eq!(ws.state(), State::Closed);
    assert!(matches!(ws.send("late").await, Err(Error::AlreadyClosed)));
}

#[tokio::test]
async fn after_end_of_file_the_state_is_closed_and_sends_fail_with_already_closed() {
    let (mut ws, peer) = with_silent_peer();
    drop(peer);
    assert!(matches!(
        bounded(ws.recv()).await,
        Some(Err(Error::AbnormalClosure))
    ));
    assert_eq!(ws.state(), State::Closed);
    assert!(matches!(ws.send("late").await, Err(Error::AlreadyClosed)));
    assert!(bounded(ws.recv()).await.is_none());
}

#[tokio::test]
async fn after_a_write_failure_the_state_is_closed_and_sends_fail_with_already_closed() {
    let (mut ws, peer) = with_silent_peer();
    drop(peer);
    assert!(matches!(ws.send("first").await, Err(Error::Io(_))));
    assert_eq!(ws.state(), State::Closed);
    assert!(matches!(ws.send("second").await, Err(Error::AlreadyClosed)));
}

#[tokio::test]
async fn a_client_close_ends_within_the_close_timeout_when_the_server_never_answers() {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let config = WebSocketConfig::default().close_timeout(CLOSE_TIMEOUT);
    let mut ws = WebSocket::from_raw(ours, Role::Client, config);
    let _peer = tokio::spawn(peer_sees_close_then_eof(theirs));
    let started = Instant::now();
    bounded(ws.close(CloseCode::NORMAL, "bye")).await.unwrap();
    assert_within_close_timeout(started);
    assert_eq!(ws.state(), State::Closed);
}

#[tokio::test]
async fn a_close_ends_within_the_close_timeout_when_the_peer_reads_nothing_at_all() {
    // 16 bytes of room and a peer that never reads: the close frame cannot even be written.
    let (ours, _theirs) = tokio::io::duplex(16);
    let config = WebSocketConfig::default().close_timeout(CLOSE_TIMEOUT);
    let mut ws = WebSocket::from_raw(ours, Role::Server, config);
    let _ = tokio::time::timeout(Duration::from_millis(50), ws.send(vec![0u8; 1000])).await;
    let started = Instant::now();
    bounded(ws.close(CloseCode::NORMAL, "bye")).await.unwrap();
    assert_within_close_timeout(started);
}

#[tokio::test]
async fn waiting_for_the_end_of_an_open_connection_does_not_end_it() {
    let (ws, mut peer) = with_silent_peer();
    let (mut reader, mut writer) = ws.split();
    let handle = writer.handle();
    tokio::spawn(async move { while reader.recv().await.is_some() {} });
    let waiting = tokio::spawn(async move { handle.closed().await });
    tokio::time::sleep(CLOSE_TIMEOUT * 3).await;
    assert!(!waiting.is_finished(), "the connection is open and healthy");
    writer.send("still here").await.unwrap();
    let mut first = [0u8; 2];
    bounded(peer.read_exact(&mut first)).await.unwrap();
    assert_eq!(first, [0x81, 10], "the message went out");
    waiting.abort();
}

#[tokio::test]
async fn a_writer_close_after_the_reader_armed_the_deadline_and_went_away_still_ends() {
    let (ws, peer) = with_silent_peer();
    let _peer = tokio::spawn(peer_sees_close_then_eof(peer));
    let (mut reader, mut writer) = ws.split();
    writer.handle().start_close(CloseCode::NORMAL, "").unwrap();
    // The reader takes the close's deadline over (and the "moved" flag with it), then leaves.
    let _ = tokio::time::timeout(Duration::from_millis(50), reader.recv()).await;
    drop(reader);
    let started = Instant::now();
    bounded(writer.close(CloseCode::NORMAL, "")).await.unwrap();
    assert!(
        started.elapsed() < CLOSE_TIMEOUT + MARGIN,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(writer.state(), State::Closed);
}

#[tokio::test]
async fn a_writer_parked_on_a_peer_that_does_not_read_learns_when_the_connection_ends() {
    let (ours, _theirs) = tokio::io::duplex(16);
    let config = WebSocketConfig::default().close_timeout(CLOSE_TIMEOUT);
    let ws = WebSocket::from_raw(ours, Role::Server, config);
    let (mut reader, mut writer) = ws.split();
    let handle = writer.handle();
    let sending = tokio::spawn(async move { writer.send(vec![0u8; 100_000]).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!sending.is_finished(), "parked on write readiness");
    handle.start_close(CloseCode::GOING_AWAY, "").unwrap();
    // The reader gives up on the close; the parked writer must be woken and told.
    assert!(bounded(reader.recv()).await.is_none());
    let sent = bounded(sending).await.unwrap();
    assert!(matches!(sent, Err(Error::AlreadyClosed)), "{sent:?}");
}

#[tokio::test]
async fn a_close_started_while_a_closed_waiter_drives_the_connection_still_ends() {
    let (ws, peer) = with_silent_peer();
    let _peer = tokio::spawn(peer_sees_close_then_eof(peer));
    let (reader, writer) = ws.split();
    drop(reader);
    let handle = writer.handle();
    // A waiter drives the open connection (the reader is gone), parked on a read...
    let waiting = tokio::spawn({
        let handle = handle.clone();
        async move { handle.closed().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...when the close starts elsewhere, queued only: the waiter must write it and end.
    let started = Instant::now();
    handle.start_close(CloseCode::GOING_AWAY, "").unwrap();
    bounded(waiting).await.unwrap();
    assert!(
        started.elapsed() < CLOSE_TIMEOUT + MARGIN,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(handle.state(), State::Closed);
    drop(writer);
}
