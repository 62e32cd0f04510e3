//! `Closer`: closing a whole (unsplit) connection from another task, before and after a split.

mod support;

use std::time::Duration;

use socketry::{CloseCode, Error, Message, OpCode};
use support::*;

/// The server side's view of a close that a `Closer` started: the last message `recv` handed
/// out, and whether a send after it failed with `AlreadyClosed`.
type Seen = (Option<Message>, bool);

/// Reads frames up to the server's close and answers it; returns the close's code and reason.
async fn answer_close(client: &mut RawClient) -> (u16, Vec<u8>) {
    loop {
        let frame = bounded(client.read_frame()).await.expect("a close frame");
        if frame.opcode == OpCode::Close {
            let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
            client
                .send_frame(true, OpCode::Close, &frame.payload[..2])
                .await;
            assert!(
                client.closed_by_server().await,
                "transport closed after the handshake"
            );
            return (code, frame.payload[2..].to_vec());
        }
    }
}

/// Connects a raw client, answers the server's close (which must carry `code` and `reason`),
/// and returns what the server reported.
async fn closed_with(
    addr: std::net::SocketAddr,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>,
    code: u16,
    reason: &[u8],
) -> Seen {
    let mut client = RawClient::connect(addr).await;
    let (got_code, got_reason) = answer_close(&mut client).await;
    assert_eq!((got_code, got_reason.as_slice()), (code, reason));
    bounded(rx.recv()).await.unwrap()
}

/// Connects a raw client that sends and reads nothing after the handshake, and returns the
/// server's verdict.
async fn verdict_with_a_silent_client(
    addr: std::net::SocketAddr,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>,
) -> bool {
    let _client = RawClient::connect(addr).await;
    bounded(rx.recv()).await.unwrap().1
}

/// Accepts with a close timeout of 200 ms, for the tests of peers that stop reading.
async fn accept_closing_fast(
    stream: tokio::net::TcpStream,
) -> socketry::WebSocket<tokio::net::TcpStream> {
    let config = socketry::WebSocketConfig::default().close_timeout(Duration::from_millis(200));
    socketry::Acceptor::new()
        .config(config)
        .accept(stream)
        .await
        .unwrap()
}

/// A message that fills a socket whose peer does not read within a few sends.
fn big_message() -> Message {
    Message::binary(vec![7u8; 1 << 20])
}

/// Reads until the server's close frame (which a socketry client answers) and returns it.
async fn read_to_close<S>(client: &mut socketry::WebSocket<S>) -> Option<socketry::CloseFrame>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(message) = bounded(client.recv()).await {
        if let Message::Close(frame) = message.unwrap() {
            return frame;
        }
    }
    None
}

#[tokio::test]
async fn a_closer_wakes_a_whole_connection_parked_in_recv_and_closes_it() {
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let closer = ws.closer();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            closer.close(CloseCode::GOING_AWAY, "going away").unwrap();
            // Later requests change nothing.
            closer.close(CloseCode::NORMAL, "second").unwrap();
        });
        let mut last = None;
        while let Some(message) = ws.recv().await {
            last = Some(message.unwrap());
        }
        let send_failed = matches!(ws.send("late").await, Err(Error::AlreadyClosed));
        (last, send_failed)
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    // Nothing is sent by the client: the server sits in `recv` until the closer wakes it.
    let (code, reason) = answer_close(&mut client).await;
    assert_eq!((code, reason.as_slice()), (1001, &b"going away"[..]));
    let (last, send_failed): Seen = bounded(rx.recv()).await.unwrap();
    assert!(
        matches!(last, Some(Message::Close(Some(ref f))) if f.code == CloseCode::GOING_AWAY),
        "the peer's answer is handed out last: {last:?}"
    );
    assert!(
        send_failed,
        "a send after the close fails with AlreadyClosed"
    );
}

#[tokio::test]
async fn a_request_made_before_the_first_poll_is_acted_on_by_it() {
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let closer = ws.closer();
        closer.close(CloseCode::GOING_AWAY, "early").unwrap();
        assert!(closer.is_requested());
        // A feed only queues (no poll): the message goes out ahead of the close frame.
        ws.feed("before").await.unwrap();
        let mut last = None;
        while let Some(message) = ws.recv().await {
            last = Some(message.unwrap());
        }
        let send_failed = matches!(ws.send("after").await, Err(Error::AlreadyClosed));
        (last, send_failed)
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    let first = bounded(client.read_frame()).await.unwrap();
    assert_eq!(
        (first.opcode, &first.payload[..]),
        (OpCode::Text, &b"before"[..])
    );
    let (code, reason) = answer_close(&mut client).await;
    assert_eq!((code, reason.as_slice()), (1001, &b"early"[..]));
    let (last, send_failed): Seen = bounded(rx.recv()).await.unwrap();
    assert!(matches!(last, Some(Message::Close(_))), "{last:?}");
    assert!(send_failed);
}

#[tokio::test]
async fn a_request_not_yet_acted_on_wins_over_the_owners_later_close() {
    // The request comes first, then the owner closes before any poll saw it (a controller
    // that returned on a shutdown signal, say): the request's frame goes out.
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let closer = ws.closer();
        closer
            .close(CloseCode::GOING_AWAY, "requested first")
            .unwrap();
        ws.close(CloseCode::NORMAL, "the owner's").await.unwrap();
        (None, false)
    })
    .await;
    let _ = closed_with(addr, &mut rx, 1001, b"requested first").await;
}

#[tokio::test]
async fn a_send_that_picks_up_a_request_writes_the_close_behind_its_message() {
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let closer = ws.closer();
        closer.close(CloseCode::GOING_AWAY, "").unwrap();
        // The send polls: its message, then the close frame, are written before it returns.
        ws.send("last").await.unwrap();
        let failed = matches!(ws.send("too late").await, Err(Error::AlreadyClosed));
        // Dropped without reading the answer: what went out must already be on the wire.
        drop(ws);
        (None, failed)
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    let (_, failed): Seen = bounded(rx.recv()).await.unwrap();
    assert!(failed);
    let first = bounded(client.read_frame()).await.unwrap();
    assert_eq!(&first.payload[..], b"last");
    let close = bounded(client.read_frame()).await.unwrap();
    assert_eq!(
        (close.opcode, &close.payload[..2]),
        (OpCode::Close, &1001u16.to_be_bytes()[..])
    );
}

#[tokio::test]
async fn an_invalid_code_is_refused_and_requests_nothing() {
    let addr = socketry_echo_server().await;
    let (mut ws, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    let closer = ws.closer();
    for code in [1005u16, 1006, 1015, 999, 2999] {
        let err = closer.close(CloseCode::from(code), "").unwrap_err();
        assert!(matches!(err, Error::InvalidMessage(_)), "{code}: {err:?}");
    }
    assert!(!closer.is_requested());
    assert_echo(&mut ws, "still open").await;
    bounded(ws.close(CloseCode::NORMAL, "")).await.unwrap();
}

#[tokio::test]
async fn the_owners_own_close_stands_over_a_later_request() {
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let closer = ws.closer();
        let closing = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            closer
                .close(CloseCode::GOING_AWAY, "from the closer")
                .unwrap();
        });
        ws.close(CloseCode::NORMAL, "from the owner").await.unwrap();
        closing.await.unwrap();
        (None, false)
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    let (code, reason) = answer_close(&mut client).await;
    assert_eq!((code, reason.as_slice()), (1000, &b"from the owner"[..]));
    let _: Seen = bounded(rx.recv()).await.unwrap();
}

#[tokio::test]
async fn a_closer_made_before_a_split_closes_the_halves() {
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let closer = ws.closer();
        let (mut reader, mut writer) = ws.split();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            closer.close(CloseCode::GOING_AWAY, "split").unwrap();
        });
        // The writer idles in another task until the reader ended; the reader is parked until
        // the request wakes it.
        let (ended, reader_ended) = tokio::sync::oneshot::channel::<()>();
        let writing = tokio::spawn(async move {
            let _ = reader_ended.await;
            matches!(writer.send("late").await, Err(Error::AlreadyClosed))
        });
        let mut last = None;
        while let Some(message) = reader.recv().await {
            last = Some(message.unwrap());
        }
        let _ = ended.send(());
        (last, writing.await.unwrap())
    })
    .await;
    let (last, send_failed) = closed_with(addr, &mut rx, 1001, b"split").await;
    assert!(matches!(last, Some(Message::Close(_))), "{last:?}");
    assert!(send_failed, "the writer sees the close the reader started");
}

#[tokio::test]
async fn a_split_writer_alone_acts_on_a_request() {
    // The reader is not polled (it is held, not dropped): the writer's next send starts the
    // close and fails, so a send-only controller ends.
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let closer = ws.closer();
        let (reader, mut writer) = ws.split();
        writer.send("one").await.unwrap();
        closer.close(CloseCode::GOING_AWAY, "").unwrap();
        // The send's flush polls: "two" goes out, then the close frame.
        writer.send("two").await.unwrap();
        let failed = matches!(writer.send("three").await, Err(Error::AlreadyClosed));
        // With the reader gone, a handle completes the handshake.
        let handle = writer.handle();
        drop(reader);
        handle.closed().await;
        (None, failed)
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    for expected in [&b"one"[..], b"two"] {
        let frame = bounded(client.read_frame()).await.unwrap();
        assert_eq!(&frame.payload[..], expected);
    }
    let (code, _) = answer_close(&mut client).await;
    assert_eq!(code, 1001);
    let (_, failed): Seen = bounded(rx.recv()).await.unwrap();
    assert!(failed, "a send after the close started fails");
}

#[tokio::test]
async fn with_the_reader_gone_closed_acts_on_a_request_alone() {
    // Nobody reads and nobody writes: only `closed()` polls the connection.
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let closer = ws.closer();
        let (reader, writer) = ws.split();
        let handle = writer.handle();
        drop(reader);
        let waiting = tokio::spawn(async move { handle.closed().await });
        tokio::time::sleep(Duration::from_millis(30)).await;
        closer.close(CloseCode::GOING_AWAY, "nobody reads").unwrap();
        bounded(waiting).await.unwrap();
        drop(writer);
        (None, true)
    })
    .await;
    let _ = closed_with(addr, &mut rx, 1001, b"nobody reads").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_from_another_thread_are_never_lost_while_messages_flow() {
    // The request races the connection's polls on the other worker: whether it lands before
    // the registration, between it and the check, or while parked, the close must start.
    for round in 0..40u64 {
        let (addr, mut rx) = serve_reporting(move |stream| async move {
            let mut ws = socketry::accept(stream).await.unwrap();
            let closer = ws.closer();
            let request = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_micros(round * 150));
                closer.close(CloseCode::GOING_AWAY, "race").unwrap();
            });
            let mut echoed = 0u32;
            while let Some(message) = ws.recv().await {
                let message = message.unwrap();
                if message.is_text() && ws.send(message).await.is_ok() {
                    echoed += 1;
                }
            }
            request.join().unwrap();
            (Some(Message::text(echoed.to_string())), false)
        })
        .await;
        let (mut client, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
        let mut close = None;
        // The client sends a few messages and then goes silent, so that most requests find
        // the connection parked in `recv`: only the request's wakeup can end it then.
        let messages = (round % 8) as u32 * 5;
        for i in 0..messages {
            if client.send(format!("m{i}")).await.is_err() {
                break;
            }
            match bounded(client.recv()).await {
                Some(Ok(Message::Close(frame))) => {
                    close = frame;
                    break;
                }
                Some(Ok(_)) => {}
                other => panic!("round {round}: {other:?}"),
            }
        }
        if close.is_none() {
            // Silent now: wait for the close alone.
            close = read_to_close(&mut client).await;
        }
        let close = close.unwrap_or_else(|| panic!("round {round}: no close from the server"));
        assert_eq!(close.code, CloseCode::GOING_AWAY, "round {round}");
        let _: Seen = bounded(rx.recv()).await.unwrap();
    }
}

#[tokio::test]
async fn the_owners_invalid_code_is_refused_even_with_a_request_pending() {
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let closer = ws.closer();
        closer.close(CloseCode::GOING_AWAY, "pending").unwrap();
        let refused = matches!(
            ws.close(CloseCode::from(1005), "").await,
            Err(Error::InvalidMessage(_))
        );
        // The request is still there for the next poll.
        while ws.recv().await.is_some() {}
        (None, refused)
    })
    .await;
    let (_, refused) = closed_with(addr, &mut rx, 1001, b"pending").await;
    assert!(refused, "1005 may not be sent, whatever is pending");
}

#[tokio::test]
async fn a_sink_send_that_picks_up_a_request_writes_the_close_behind_its_message() {
    // As `send`: the message was queued before the request was seen, so it goes out, then
    // the close; the next one is refused.
    use futures_util::SinkExt;
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let closer = ws.closer();
        closer.close(CloseCode::GOING_AWAY, "sink").unwrap();
        SinkExt::send(&mut ws, Message::text("last")).await.unwrap();
        let failed = matches!(
            SinkExt::send(&mut ws, Message::text("refused")).await,
            Err(Error::AlreadyClosed)
        );
        drop(ws);
        (None, failed)
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    let (_, failed): Seen = bounded(rx.recv()).await.unwrap();
    assert!(failed);
    let first = bounded(client.read_frame()).await.unwrap();
    assert_eq!(&first.payload[..], b"last");
    let close = bounded(client.read_frame()).await.unwrap();
    assert_eq!(close.opcode, OpCode::Close, "nothing after the close");
    assert_eq!(
        &close.payload[..],
        &[&1001u16.to_be_bytes()[..], b"sink"].concat()[..]
    );
}

#[tokio::test]
async fn with_the_reader_gone_a_request_wakes_every_task_that_waits_in_closed() {
    // Two tasks wait in `closed()`; the one that polled last gives up (a timeout) and its task
    // ends. The request must still wake the other one, which then acts on it.
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let closer = ws.closer();
        let (reader, writer) = ws.split();
        let handle = writer.handle();
        drop(reader);
        let staying = tokio::spawn({
            let handle = handle.clone();
            async move { handle.closed().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let leaving = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_millis(20), handle.closed())
                .await
                .is_err()
        });
        assert!(leaving.await.unwrap(), "the second waiter timed out");
        closer.close(CloseCode::GOING_AWAY, "wake all").unwrap();
        bounded(staying).await.unwrap();
        drop(writer);
        (None, true)
    })
    .await;
    let _ = closed_with(addr, &mut rx, 1001, b"wake all").await;
}

#[tokio::test]
async fn a_closer_made_from_a_handle_while_the_reader_is_parked_wakes_it() {
    // The reader polled (and parked) before any closer existed: making one registers it.
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let ws = socketry::accept(stream).await.unwrap();
        let (mut reader, writer) = ws.split();
        let handle = writer.handle();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let closer = handle.closer();
            closer.close(CloseCode::GOING_AWAY, "late closer").unwrap();
        });
        let mut last = None;
        while let Some(message) = reader.recv().await {
            last = Some(message.unwrap());
        }
        drop(writer);
        (last, false)
    })
    .await;
    let (last, _) = closed_with(addr, &mut rx, 1001, b"late closer").await;
    assert!(matches!(last, Some(Message::Close(_))), "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_from_another_thread_reach_split_halves_whatever_the_timing() {
    // Reader and writer in their own tasks on two workers; in odd rounds the reader is
    // dropped partway (the writer then acts on the request). The request lands anywhere.
    for round in 0..30u64 {
        let (addr, mut rx) = serve_reporting(move |stream| async move {
            let mut ws = socketry::accept(stream).await.unwrap();
            let closer = ws.closer();
            let (mut reader, mut writer) = ws.split();
            let request = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_micros(round * 200));
                closer.close(CloseCode::GOING_AWAY, "race").unwrap();
            });
            let writing = tokio::spawn(async move {
                for i in 0..200u32 {
                    if writer.send(format!("w{i}")).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_micros(100)).await;
                }
                writer
            });
            if round % 2 == 1 {
                tokio::time::sleep(Duration::from_micros(round * 100)).await;
                drop(reader);
            } else {
                while reader.recv().await.is_some() {}
            }
            let writer = writing.await.unwrap();
            writer.handle().closed().await;
            request.join().unwrap();
            (None, true)
        })
        .await;
        let (mut client, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
        let close = read_to_close(&mut client)
            .await
            .unwrap_or_else(|| panic!("round {round}: no close frame"));
        assert_eq!(close.code, CloseCode::GOING_AWAY, "round {round}");
        let _: Seen = bounded(rx.recv()).await.unwrap();
    }
}

#[tokio::test]
async fn a_close_sent_as_a_message_after_an_unseen_request_sends_the_requests_frame() {
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let closer = ws.closer();
        closer.close(CloseCode::GOING_AWAY, "requested").unwrap();
        let frame = socketry::CloseFrame::new(CloseCode::NORMAL, "as a message");
        ws.send(Message::Close(Some(frame))).await.unwrap();
        while ws.recv().await.is_some() {}
        (None, true)
    })
    .await;
    let _ = closed_with(addr, &mut rx, 1001, b"requested").await;
}

#[tokio::test]
async fn a_send_refused_after_a_receive_that_acted_on_a_request_leaves_the_close_written() {
    // The receive that acts on the request has a message buffered: it returns it and writes
    // nothing. The send after it is refused; before, it wrote nothing either, and a caller
    // that then dropped the socket left the peer without a close frame.
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let first = ws.recv().await.unwrap().unwrap();
        ws.closer().close(CloseCode::GOING_AWAY, "bye").unwrap();
        let second = ws.recv().await.unwrap().unwrap();
        let refused = matches!(ws.send(first).await, Err(Error::AlreadyClosed));
        drop(ws);
        (Some(second), refused)
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    client
        .send_frames(&[
            (OpCode::Text, b"one"),
            (OpCode::Text, b"two"),
            (OpCode::Text, b"three"),
        ])
        .await;
    let (second, refused) = bounded(rx.recv()).await.unwrap();
    assert_eq!(second, Some(Message::text("two")));
    assert!(refused, "no message may follow the close frame");
    assert_eq!(client.read_close_code().await, 1001);
}

#[tokio::test]
async fn a_split_writers_refused_send_leaves_the_close_written_after_the_reader_acted() {
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let closer = ws.closer();
        let (mut reader, mut writer) = ws.split();
        let first = reader.recv().await.unwrap().unwrap();
        closer.close(CloseCode::GOING_AWAY, "bye").unwrap();
        // Acts on the request and returns the buffered message: nothing written yet.
        let second = reader.recv().await.unwrap().unwrap();
        drop(reader);
        let refused = matches!(writer.send(first).await, Err(Error::AlreadyClosed));
        drop(writer);
        (Some(second), refused)
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    client
        .send_frames(&[(OpCode::Text, b"one"), (OpCode::Text, b"two")])
        .await;
    let (second, refused) = bounded(rx.recv()).await.unwrap();
    assert_eq!(second, Some(Message::text("two")));
    assert!(refused);
    assert_eq!(client.read_close_code().await, 1001);
}

#[tokio::test]
async fn a_closer_made_after_the_reader_left_wakes_the_tasks_parked_in_closed() {
    // The task parked in `closed()` before any closer existed, so it registered no interest
    // in requests; making the closer must bring it back, or the request wakes nobody.
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let ws = socketry::accept(stream).await.unwrap();
        let (reader, writer) = ws.split();
        let handle = writer.handle();
        drop(reader);
        let waiting = tokio::spawn({
            let handle = handle.clone();
            async move { handle.closed().await }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        handle
            .closer()
            .close(CloseCode::GOING_AWAY, "after the reader")
            .unwrap();
        bounded(waiting).await.unwrap();
        drop(writer);
        (None, true)
    })
    .await;
    let _ = closed_with(addr, &mut rx, 1001, b"after the reader").await;
}

#[tokio::test]
async fn a_closer_made_after_a_request_was_acted_on_reports_it() {
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        ws.closer().close(CloseCode::GOING_AWAY, "first").unwrap();
        let mut last = None;
        while let Some(message) = ws.recv().await {
            last = Some(message.unwrap());
        }
        let later = ws.closer();
        assert!(later.is_requested(), "the connection is closing: {later:?}");
        // And changes nothing.
        later.close(CloseCode::NORMAL, "second").unwrap();
        (last, true)
    })
    .await;
    let _ = closed_with(addr, &mut rx, 1001, b"first").await;
}

#[tokio::test]
async fn the_tasks_a_request_would_wake_are_not_kept_alive() {
    use std::sync::Arc;
    use std::task::{Context, Wake, Waker};
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let _closer = ws.closer();
        let (reader, mut writer) = ws.split();
        let handle = writer.handle();
        drop(reader);
        // A thousand short-lived tasks poll the writer once each (an `Arc<Mutex<writer>>`
        // shared by per-event tasks, say), and as many ping through a handle: only the
        // writer's latest task is kept, for the request to wake.
        let wakers: Vec<Arc<Noop>> = (0..2000).map(|_| Arc::new(Noop)).collect();
        for (i, noop) in wakers.iter().enumerate() {
            if i % 32 == 0 {
                // A fresh budget: past tokio's, the socket answers `Pending` (and keeps the
                // waker until it is writable, as it must).
                tokio::task::yield_now().await;
            }
            let waker = Waker::from(noop.clone());
            let mut cx = Context::from_waker(&waker);
            if i % 2 == 0 {
                let _ = std::pin::pin!(writer.flush()).as_mut().poll(&mut cx);
            } else {
                let _ = std::pin::pin!(handle.ping("")).as_mut().poll(&mut cx);
            }
        }
        let kept = wakers.iter().filter(|w| Arc::strong_count(w) > 1).count();
        drop(writer);
        (None::<Message>, kept <= 1)
    })
    .await;
    let kept_one = verdict_with_a_silent_client(addr, &mut rx).await;
    assert!(kept_one, "at most the writer's last waker is kept");
}

#[tokio::test]
async fn a_writer_parked_before_the_reader_left_is_woken_by_a_later_request() {
    // The writer parked on a peer that does not read while the reader had the requests;
    // the reader leaves, then the request comes: it must reach the writer, whose send then
    // ends at the close timeout.
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = accept_closing_fast(stream).await;
        let closer = ws.closer();
        let (reader, mut writer) = ws.split();
        let writing = tokio::spawn(async move {
            let big = big_message();
            loop {
                if let Err(err) = writer.send(big.clone()).await {
                    return err;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(reader);
        tokio::time::sleep(Duration::from_millis(50)).await;
        closer.close(CloseCode::GOING_AWAY, "stop").unwrap();
        let ended = bounded(writing).await.unwrap();
        (None::<Message>, matches!(ended, Error::AlreadyClosed))
    })
    .await;
    let ended = verdict_with_a_silent_client(addr, &mut rx).await;
    assert!(ended, "the parked send ended with AlreadyClosed");
}

#[tokio::test]
async fn a_writer_held_up_by_a_peer_that_stopped_reading_gives_up_at_the_close_timeout() {
    // No write timeout: before, a send parked on a full socket stayed parked after the
    // request was acted on, for as long as the peer kept not reading.
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = accept_closing_fast(stream).await;
        let closer = ws.closer();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            closer.close(CloseCode::GOING_AWAY, "stop").unwrap();
        });
        let big = big_message();
        let mut sent = 0usize;
        let ended = loop {
            match ws.send(big.clone()).await {
                Ok(()) => sent += 1,
                Err(err) => break err,
            }
        };
        (
            None::<Message>,
            sent > 0 && matches!(ended, Error::AlreadyClosed),
        )
    })
    .await;
    // Upgraded, then never reads again.
    let gave_up = verdict_with_a_silent_client(addr, &mut rx).await;
    assert!(gave_up, "the sends went out, then ended with AlreadyClosed");
}

#[tokio::test]
async fn a_handles_close_on_a_peer_that_stopped_reading_ends_at_the_close_timeout() {
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let ws = accept_closing_fast(stream).await;
        let (reader, mut writer) = ws.split();
        let handle = writer.handle();
        drop(reader);
        // Fills the socket: the peer reads nothing.
        let _writing = tokio::spawn(async move {
            let big = big_message();
            while writer.send(big.clone()).await.is_ok() {}
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Before, this flush waited for as long as the peer did not read.
        let _ = bounded(handle.close(CloseCode::GOING_AWAY, "")).await;
        (None::<Message>, true)
    })
    .await;
    let _client = RawClient::connect(addr).await;
    assert!(
        bounded(rx.recv()).await.is_some(),
        "the handle's close ended"
    );
}
