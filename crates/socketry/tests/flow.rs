//! Flow control and liveness: bounded write queue, a peer that stops reading, a ping flood,
//! keepalive, read and write timeouts, handlers, and Stream + Sink.

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use socketry::{Acceptor, CloseCode, Error, Message, OpCode, Timeout, WebSocketConfig};
use support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn feed_waits_for_room_when_the_peer_stops_reading_then_everything_arrives_in_order() {
    let config = WebSocketConfig::default().write_buffer_size(64 * 1024);
    let (addr, mut rx) = serve_reporting(move |stream| async move {
        let mut ws = Acceptor::new().config(config).accept(stream).await.unwrap();
        let mut stalled_at = None;
        for i in 0..2000u32 {
            let feed = ws.feed(format!("{i:05}{}", "z".repeat(4000)));
            match tokio::time::timeout(Duration::from_millis(500), feed).await {
                Ok(result) => result.unwrap(),
                Err(_) => {
                    stalled_at.get_or_insert(i);
                    // Still blocked: wait without a bound now that the stall is proven.
                    ws.feed(format!("{i:05}{}", "z".repeat(4000)))
                        .await
                        .unwrap();
                }
            }
        }
        ws.flush().await.unwrap();
        stalled_at
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    // Do not read for a second: the server must block instead of queueing 8 MB.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for i in 0..2000u32 {
        let frame = client.read_frame().await.unwrap();
        assert_eq!(&frame.payload[..5], format!("{i:05}").as_bytes());
    }
    let stalled_at = bounded(rx.recv()).await.unwrap();
    assert!(stalled_at.is_some(), "feed never waited");
    assert!(
        stalled_at.unwrap() < 1500,
        "it waited only after queueing {stalled_at:?} messages"
    );
}

#[tokio::test]
async fn a_ping_flood_from_a_peer_that_never_reads_keeps_the_queue_bounded() {
    const PINGS: usize = 200_000;
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let (mut pings, mut largest_queue) = (0, 0);
        while let Some(Ok(message)) = ws.recv().await {
            pings += usize::from(matches!(message, Message::Ping(_)));
            largest_queue = largest_queue.max(ws.connection().outgoing().len());
            if pings == PINGS {
                break;
            }
        }
        (pings, largest_queue, ws.config().get_write_buffer_size())
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    // 26 MB of pings, never reading the pongs: the server keeps reading (it must, or two
    // peers that both send would deadlock), and its pongs coalesce once its queue is full.
    bounded(client.stream.write_all(&ping_flood(PINGS)))
        .await
        .unwrap();
    let (pings, largest_queue, bound) = bounded(rx.recv()).await.unwrap();
    assert_eq!(pings, PINGS, "every ping was read");
    assert!(
        largest_queue <= bound + 2 * 131,
        "queue grew to {largest_queue} bytes (bound {bound})"
    );
}

#[tokio::test]
async fn keepalive_closes_a_silent_peer_with_1011() {
    let config = WebSocketConfig::default().keepalive(Some((
        Duration::from_millis(100),
        Duration::from_millis(150),
    )));
    let (addr, mut rx) = serve_reporting(move |stream| async move {
        let mut ws = Acceptor::new().config(config).accept(stream).await.unwrap();
        let started = Instant::now();
        let result = ws.recv().await;
        (result.map(|r| r.map(|_| ())), started.elapsed())
    })
    .await;
    // RawClient never answers pings.
    let mut client = RawClient::connect(addr).await;
    let ping = client.read_frame().await.unwrap();
    assert_eq!(ping.opcode, OpCode::Ping);
    let close = client.read_frame().await.unwrap();
    assert_eq!(close.opcode, OpCode::Close);
    assert_eq!(&close.payload[..2], &1011u16.to_be_bytes());
    assert_eq!(&close.payload[2..], b"keepalive timeout");
    let (result, elapsed) = bounded(rx.recv()).await.unwrap();
    assert!(
        matches!(result, Some(Err(Error::Timeout(Timeout::Keepalive)))),
        "{result:?}"
    );
    assert!(elapsed >= Duration::from_millis(240), "{elapsed:?}");
}

#[tokio::test]
async fn keepalive_keeps_a_live_peer() {
    let config = WebSocketConfig::default().keepalive(Some((
        Duration::from_millis(50),
        Duration::from_millis(200),
    )));
    let (addr, mut rx) = serve_reporting(move |stream| async move {
        let mut ws = Acceptor::new().config(config).accept(stream).await.unwrap();
        let mut pongs = 0;
        let deadline = tokio::time::sleep(Duration::from_millis(600));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                message = ws.recv() => match message {
                    Some(Ok(Message::Pong(_))) => pongs += 1,
                    Some(Ok(_)) => {}
                    other => return Err(format!("{other:?}")),
                },
                () = &mut deadline => return Ok(pongs),
            }
        }
    })
    .await;
    // tokio-tungstenite answers pings while it is polled.
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut t, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), stream)
        .await
        .unwrap();
    tokio::spawn(async move { while t.next().await.is_some() {} });
    let pongs = bounded(rx.recv()).await.unwrap().unwrap();
    assert!(
        pongs >= 5,
        "only {pongs} pongs in 600 ms at a 50 ms interval"
    );
}

#[tokio::test]
async fn read_timeout_returns_an_error_and_keeps_the_connection() {
    let config = WebSocketConfig::default().read_timeout(Some(Duration::from_millis(100)));
    let (addr, mut rx) = serve_reporting(move |stream| async move {
        let mut ws = Acceptor::new().config(config).accept(stream).await.unwrap();
        let first = ws.recv().await.unwrap();
        let second = ws.recv().await.unwrap();
        (first.map(|_| ()), second.map_err(|e| e.to_string()))
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    // After the first recv timed out (100 ms), within the second one's time.
    tokio::time::sleep(Duration::from_millis(150)).await;
    client
        .send_frame(true, OpCode::Text, b"late but fine")
        .await;
    let (first, second) = bounded(rx.recv()).await.unwrap();
    assert!(
        matches!(first, Err(Error::Timeout(Timeout::Read))),
        "{first:?}"
    );
    assert_eq!(second, Ok(Message::text("late but fine")));
}

#[tokio::test]
async fn write_timeout_fails_a_send_to_a_peer_that_does_not_read() {
    let config = WebSocketConfig::default().write_timeout(Some(Duration::from_millis(200)));
    let (addr, mut rx) = serve_reporting(move |stream| async move {
        let mut ws = Acceptor::new().config(config).accept(stream).await.unwrap();
        let big = Message::binary(vec![0u8; 1 << 20]);
        for _ in 0..64 {
            if let Err(err) = ws.send(big.clone()).await {
                return Some(err);
            }
        }
        None
    })
    .await;
    let _client = RawClient::connect(addr).await; // never reads
    let err = bounded(rx.recv()).await.unwrap();
    assert!(
        matches!(err, Some(Error::Timeout(Timeout::Write))),
        "{err:?}"
    );
}

#[tokio::test]
async fn custom_ping_handler_over_a_socket() {
    let addr = serve(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        ws.set_ping_handler(Some(Box::new(|payload: &bytes::Bytes| {
            Some(bytes::Bytes::from(format!(
                "pong for {}",
                String::from_utf8_lossy(payload)
            )))
        })));
        while ws.recv().await.is_some() {}
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    client.send_frame(true, OpCode::Ping, b"7").await;
    let pong = client.read_frame().await.unwrap();
    assert_eq!(&pong.payload[..], b"pong for 7");
}

#[tokio::test]
async fn stream_and_sink_work_as_with_tokio_tungstenite() {
    // The same code a tokio-tungstenite user writes: StreamExt::next, SinkExt::send, forward.
    let addr = serve(|stream| async move {
        let ws = socketry::accept(stream).await.unwrap();
        let (stream, sink) = ws.split();
        let echoed = stream.filter(|m| {
            let keep = matches!(m, Ok(Message::Text(_) | Message::Binary(_)));
            async move { keep }
        });
        let _ = echoed.forward(sink).await;
    })
    .await;
    let (ws, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    let (mut reader, mut writer) = ws.split();
    for i in 0..10 {
        SinkExt::send(&mut writer, Message::text(format!("m{i}")))
            .await
            .unwrap();
    }
    for i in 0..10 {
        let message = bounded(reader.next()).await.unwrap().unwrap();
        assert_eq!(message, Message::text(format!("m{i}")));
    }
    SinkExt::close(&mut writer).await.unwrap();
    let close = bounded(reader.next()).await.unwrap().unwrap();
    assert!(matches!(close, Message::Close(Some(ref f)) if f.code == CloseCode::NORMAL));
    assert!(bounded(reader.next()).await.is_none());
}

#[tokio::test]
async fn an_idle_connection_holds_no_buffers_even_after_a_large_message() {
    let addr = socketry_echo_server().await;
    let (mut ws, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    ws.send(Message::binary(vec![1u8; 4 << 20])).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap().len(), 4 << 20);
    assert!(
        !ws.connection().outgoing().has_buffer(),
        "write buffer returned after the send"
    );
    // Wait in recv until it is cancelled: the read found nothing and gave its buffer back.
    let idle = tokio::time::timeout(Duration::from_millis(100), ws.recv()).await;
    assert!(idle.is_err(), "nothing was sent");
    assert_eq!(
        ws.connection().read_buffer_len().1,
        0,
        "read buffer released while idle"
    );
    // And it still works.
    ws.send("again").await.unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("again")
    );
}

/// Counts the writes that reach the transport, and the reads that returned bytes.
struct Counting<S> {
    inner: S,
    writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<S> Counting<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            writes: Default::default(),
            reads: Default::default(),
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counting<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn replies_fed_to_pipelined_messages_leave_in_one_write() {
    let (server_io, mut client_io) = tokio::io::duplex(1 << 20);
    let counted = Counting::new(server_io);
    let writes = counted.writes.clone();
    let mut server =
        socketry::WebSocket::from_raw(counted, socketry::Role::Server, WebSocketConfig::default());
    // 16 masked text frames and a ping, in one write, as a pipelining client sends them.
    let mut burst = Vec::new();
    for i in 0..16u8 {
        burst.extend_from_slice(&[0x81, 0x81, 1, 2, 3, 4, (b'a' + i) ^ 1]);
    }
    burst.extend_from_slice(&[0x89, 0x80, 0, 0, 0, 0]);
    client_io.write_all(&burst).await.unwrap();
    for i in 0..16u8 {
        let message = bounded(server.recv()).await.unwrap().unwrap();
        assert_eq!(message, Message::text(String::from(char::from(b'a' + i))));
        server.feed(message).await.unwrap();
    }
    assert!(matches!(
        bounded(server.recv()).await,
        Some(Ok(Message::Ping(_)))
    ));
    assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Nothing left buffered: this recv writes the 16 echoes and the pong, then waits.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), server.recv())
            .await
            .is_err()
    );
    assert_eq!(
        writes.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one write for 16 replies and a pong"
    );
    let mut echoed = vec![0u8; 16 * 3 + 2];
    tokio::io::AsyncReadExt::read_exact(&mut client_io, &mut echoed)
        .await
        .unwrap();
    assert_eq!(&echoed[..3], &[0x81, 0x01, b'a']);
    assert_eq!(
        &echoed[16 * 3..],
        &[0x8a, 0x00],
        "the pong follows the echoes"
    );
}

/// Frames as a client sends them: masked.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [9u8, 8, 7, 6];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// Frames as a server sends them: unmasked.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => frame.push(n as u8),
        n => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

/// Small frames around a larger one and a ping, in one write: the small ones may take the fast
/// lane (which `config` may rule out), the others the decoder. The application must see them
/// all, in order, and every reply (the echoes, the pong in its place) must leave in one write.
async fn pipelined_batch_comes_out_in_order(config: WebSocketConfig) {
    let (server_io, mut client_io) = tokio::io::duplex(1 << 20);
    let counted = Counting::new(server_io);
    let writes = counted.writes.clone();
    let mut server = socketry::WebSocket::from_raw(counted, socketry::Role::Server, config);
    let mut expected = Vec::new();
    let mut burst = Vec::new();
    let mut replies = Vec::new();
    for i in 0..40usize {
        let message = match i {
            13 => Message::binary(vec![7u8; 300]),
            27 => Message::Ping(bytes::Bytes::from_static(b"p")),
            _ if i % 2 == 0 => Message::text("x".repeat(i * 3)),
            _ => Message::binary(vec![i as u8; i]),
        };
        let opcode = match &message {
            Message::Text(_) => 1,
            Message::Binary(_) => 2,
            _ => 9,
        };
        burst.extend(client_frame(opcode, message.as_payload()));
        let reply_opcode = if opcode == 9 { 10 } else { opcode };
        replies.extend(server_frame(reply_opcode, message.as_payload()));
        expected.push(message);
    }
    client_io.write_all(&burst).await.unwrap();
    for want in &expected {
        let got = bounded(server.recv()).await.unwrap().unwrap();
        assert_eq!(&got, want);
        if got.is_text() || got.is_binary() {
            server.feed(got).await.unwrap();
        }
    }
    assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), server.recv())
            .await
            .is_err()
    );
    assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 1);
    let mut written = vec![0u8; replies.len()];
    bounded(tokio::io::AsyncReadExt::read_exact(
        &mut client_io,
        &mut written,
    ))
    .await
    .unwrap();
    assert_eq!(written, replies);
}

#[tokio::test]
async fn a_pipelined_batch_comes_out_in_order() {
    pipelined_batch_comes_out_in_order(WebSocketConfig::default()).await;
}

#[tokio::test]
async fn a_pipelined_batch_comes_out_in_order_with_deadlines_armed() {
    pipelined_batch_comes_out_in_order(
        WebSocketConfig::default()
            .read_timeout(Some(Duration::from_secs(30)))
            .keepalive(Some((Duration::from_secs(30), Duration::from_secs(30)))),
    )
    .await;
}

#[tokio::test]
async fn a_passed_keepalive_deadline_comes_before_messages_still_buffered() {
    // Small messages a read brought at once are handed out without the deadlines' poll only
    // while no deadline passed: a due ping is sent first, and once its pong is overdue the
    // keepalive fails the read even with messages left in the buffer. (Only lower bounds on
    // time matter here: every sleep is longer than the deadline it waits out.)
    let (server_io, mut client_io) = tokio::io::duplex(1 << 20);
    let keepalive = Duration::from_millis(100);
    let config = WebSocketConfig::default().keepalive(Some((keepalive, keepalive)));
    let mut server = socketry::WebSocket::from_raw(server_io, socketry::Role::Server, config);
    let mut burst = Vec::new();
    for text in ["one", "two", "three", "four"] {
        burst.extend(client_frame(1, text.as_bytes()));
    }
    client_io.write_all(&burst).await.unwrap();
    let first = bounded(server.recv()).await.unwrap().unwrap();
    assert_eq!(first, Message::text("one"));
    tokio::time::sleep(keepalive * 3).await;
    // The ping was due: it is queued (its pong due from now), then the next message comes.
    let second = bounded(server.recv()).await.unwrap().unwrap();
    assert_eq!(second, Message::text("two"));
    tokio::time::sleep(keepalive * 3).await;
    assert!(matches!(
        bounded(server.recv()).await,
        Some(Err(Error::Timeout(Timeout::Keepalive)))
    ));
    // The ping went out before the close the failure queued.
    let mut head = [0u8; 2];
    bounded(tokio::io::AsyncReadExt::read_exact(
        &mut client_io,
        &mut head,
    ))
    .await
    .unwrap();
    assert_eq!(head[0], 0x89, "a ping first");
}

#[tokio::test]
async fn a_stream_of_large_messages_is_read_one_read_per_message_once_warm() {
    // Each 16 KiB message is wholly in the transport before the server reads: once the read
    // size has grown to fit one, every message must take one read. (The read size used to
    // shrink after the small read that finished a frame, so every other message took two.)
    let (ours, mut theirs) = tokio::io::duplex(1 << 20);
    let io = Counting::new(ours);
    let reads = io.reads.clone();
    let mut ws =
        socketry::WebSocket::from_raw(io, socketry::Role::Server, WebSocketConfig::default());
    let payload = binary_of(16 * 1024);
    let mut frame = vec![0x82, 0xfe, 0x40, 0x00, 1, 2, 3, 4];
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ [1, 2, 3, 4][i & 3]),
    );
    let mut counted = 0;
    for round in 0..40 {
        theirs.write_all(&frame).await.unwrap();
        let before = reads.load(std::sync::atomic::Ordering::SeqCst);
        let message = bounded(ws.recv()).await.unwrap().unwrap();
        assert_eq!(message.as_payload(), &payload[..]);
        if round >= 8 {
            counted += reads.load(std::sync::atomic::Ordering::SeqCst) - before;
        }
    }
    assert_eq!(counted, 32, "reads for 32 warm messages");
}

#[tokio::test]
async fn a_peer_that_announces_a_large_frame_and_stalls_holds_no_more_than_it_sent() {
    // A 15 MiB frame announced, 100 bytes of it sent, then nothing: the read buffer must stay
    // near what arrived (it used to take 256 KiB at once, what the header announced up to
    // the read cap), whatever the read size had grown to before.
    let (ours, mut theirs) = tokio::io::duplex(1 << 20);
    let mut ws =
        socketry::WebSocket::from_raw(ours, socketry::Role::Server, WebSocketConfig::default());
    // First grow the read size with large messages.
    let payload = binary_of(200 * 1024);
    let mut big = vec![0x82, 0xff];
    big.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    big.extend_from_slice(&[0, 0, 0, 0]);
    big.extend_from_slice(&payload);
    for _ in 0..4 {
        theirs.write_all(&big).await.unwrap();
        let message = bounded(ws.recv()).await.unwrap().unwrap();
        assert_eq!(message.as_payload().len(), payload.len());
    }
    let mut stall = vec![0x82, 0xff];
    stall.extend_from_slice(&(15u64 << 20).to_be_bytes());
    stall.extend_from_slice(&[0, 0, 0, 0]);
    stall.extend_from_slice(&[7u8; 100]);
    theirs.write_all(&stall).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), ws.recv())
            .await
            .is_err(),
        "the frame is not complete"
    );
    let (held, capacity) = ws.connection().read_buffer_len();
    assert_eq!(held, 100);
    assert!(
        capacity <= 64 * 1024,
        "read buffer of {capacity} bytes for 100 received"
    );
}
