//! Split halves and control handles: reading and writing from different tasks, replies and
//! control frames between the fragments of a message being written, closing from anywhere.

mod support;

use std::time::Duration;

use socketry::{CloseCode, Message, OpCode, Role};
use support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn reader_and_writer_run_in_different_tasks() {
    let addr = serve(|stream| async move {
        let ws = socketry::accept(stream).await.unwrap();
        let (mut reader, mut writer) = ws.split();
        // The writer pushes its own stream while the reader echoes counts back through a channel.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let writing = tokio::spawn(async move {
            for i in 0..500u32 {
                writer.send(format!("push {i}")).await.unwrap();
            }
            while let Some(n) = rx.recv().await {
                writer.send(format!("got {n}")).await.unwrap();
            }
            writer
        });
        let mut received = 0u32;
        while let Some(Ok(message)) = reader.recv().await {
            if message.is_text() {
                received += 1;
                let _ = tx.send(received);
            }
        }
        drop(tx);
        let _ = writing.await;
    })
    .await;
    let (mut ws, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    for i in 0..300u32 {
        ws.feed(format!("msg {i}")).await.unwrap();
    }
    ws.flush().await.unwrap();
    let (mut pushes, mut acks) = (0, 0);
    while pushes < 500 || acks < 300 {
        match bounded(ws.recv()).await.unwrap().unwrap() {
            Message::Text(t) if t.starts_with("push ") => {
                assert_eq!(t.as_str(), format!("push {pushes}"), "writer's order kept");
                pushes += 1;
            }
            Message::Text(t) if t.starts_with("got ") => {
                acks += 1;
                assert_eq!(t.as_str(), format!("got {acks}"));
            }
            other => panic!("{other:?}"),
        }
    }
    bounded(ws.close(CloseCode::NORMAL, "")).await.unwrap();
}

#[tokio::test]
async fn pong_goes_out_between_fragments_while_the_writer_is_mid_message() {
    let addr = serve(|stream| async move {
        let ws = socketry::accept(stream).await.unwrap();
        let (mut reader, mut writer) = ws.split();
        tokio::spawn(async move { while reader.recv().await.is_some() {} });
        let mut message = writer.message_writer_with(OpCode::Binary, 4);
        for _ in 0..10 {
            message.write_all(b"abcd").await.unwrap();
            message.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        message.shutdown().await.unwrap();
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    let first = client.read_frame().await.unwrap();
    assert_eq!((first.opcode, first.fin), (OpCode::Binary, false));
    client.send_frame(true, OpCode::Ping, b"now").await;
    let mut seen_pong_before_fin = false;
    loop {
        let frame = client.read_frame().await.unwrap();
        match frame.opcode {
            OpCode::Pong => {
                assert_eq!(&frame.payload[..], b"now");
                seen_pong_before_fin = true;
            }
            OpCode::Continuation if frame.fin => break,
            OpCode::Continuation => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(
        seen_pong_before_fin,
        "the pong did not wait for the message to end"
    );
}

#[tokio::test]
async fn a_handle_closes_from_a_third_task_while_both_halves_are_busy() {
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let ws = socketry::accept(stream).await.unwrap();
        let (mut reader, mut writer) = ws.split();
        let handle = writer.handle();
        let writing = tokio::spawn(async move {
            let mut message = writer.message_writer_with(OpCode::Text, 3);
            let mut result = Ok(());
            for _ in 0..100 {
                result = message.write_all(b"xyz").await;
                if result.is_ok() {
                    result = message.flush().await;
                }
                if result.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            result
        });
        let closer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            handle.ping("before close").await.unwrap();
            handle
                .close(CloseCode::GOING_AWAY, "shutting down")
                .await
                .unwrap();
            handle.close(CloseCode::GOING_AWAY, "twice").await.unwrap(); // idempotent
        });
        let mut last = None;
        while let Some(message) = reader.recv().await {
            last = Some(message.unwrap());
        }
        closer.await.unwrap();
        let write_result = writing.await.unwrap();
        (last, write_result.is_err())
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    let mut frames = Vec::new();
    loop {
        let frame = client.read_frame().await.unwrap();
        let opcode = frame.opcode;
        frames.push(frame);
        if opcode == OpCode::Close {
            break;
        }
    }
    let close = frames.last().unwrap();
    assert_eq!(&close.payload[..2], &1001u16.to_be_bytes());
    assert_eq!(&close.payload[2..], b"shutting down");
    assert!(frames.iter().any(|f| f.opcode == OpCode::Ping));
    client
        .send_frame(true, OpCode::Close, &1001u16.to_be_bytes())
        .await;
    assert!(client.closed_by_server().await);
    let (last, writer_failed) = bounded(rx.recv()).await.unwrap();
    assert!(matches!(last, Some(Message::Close(Some(ref f))) if f.code == CloseCode::GOING_AWAY));
    assert!(writer_failed, "the writer learns the connection closed");
}

#[tokio::test]
async fn reunited_halves_keep_their_handlers_and_no_automatic_replies() {
    let (ours, theirs) = tokio::io::duplex(4096);
    let mut ws = socketry::WebSocket::from_raw(ours, Role::Server, Default::default());
    ws.set_ping_handler(Some(Box::new(|_| Some("custom".into()))));
    let (reader, writer) = ws.split();
    let mut ws = reader.reunite(writer).unwrap();
    let mut peer = socketry::WebSocket::from_raw(theirs, Role::Client, Default::default());
    peer.send(Message::Ping("hi".into())).await.unwrap();
    let server = tokio::spawn(async move {
        let ping = ws.recv().await;
        let _ = ws.flush().await;
        (ping, ws)
    });
    let pong = bounded(peer.recv()).await.unwrap().unwrap();
    assert_eq!(
        pong,
        Message::Pong("custom".into()),
        "the handler's pong, once"
    );
    let (ping, mut ws) = bounded(server).await.unwrap();
    assert!(matches!(ping, Some(Ok(Message::Ping(_)))));
    let closing = tokio::spawn(async move { ws.close(CloseCode::NORMAL, "").await });
    let next = bounded(peer.recv()).await.unwrap().unwrap();
    assert!(
        matches!(next, Message::Close(_)),
        "no second pong: {next:?}"
    );
    drop(peer);
    let _ = bounded(closing).await;
}

#[tokio::test]
async fn halves_reunite_unless_a_handle_lives() {
    let addr = socketry_echo_server().await;
    let (ws, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    let (reader, writer) = ws.split();
    let handle = writer.handle();
    let (reader, writer) = reader.reunite(writer).unwrap_err();
    drop(handle);
    let mut ws = reader.reunite(writer).unwrap();
    ws.send("whole again").await.unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("whole again")
    );
}

#[tokio::test]
async fn split_reader_recv_is_cancel_safe_under_load() {
    cancel_reads_under_load(false).await;
}

#[tokio::test]
async fn split_reader_stream_is_cancel_safe_under_load() {
    cancel_reads_under_load(true).await;
}

/// Cancels reads at arbitrary polls while 2,000 messages of varied sizes arrive; checks every
/// one arrives, in order.
async fn cancel_reads_under_load(as_stream: bool) {
    let addr = serve(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        for i in 0..2000u32 {
            let body = "y".repeat((i as usize * 7919) % 5000);
            ws.feed(format!("{i}:{body}")).await.unwrap();
            if i % 50 == 0 {
                ws.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        }
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    })
    .await;
    let (ws, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    let (mut reader, _writer) = ws.split();
    let mut next = 0u32;
    let mut cancelled = 0u32;
    let mut seed = 12345u64;
    loop {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let polls = 1 + (seed >> 61) as u32; // cancel at the 1st to 8th poll
        tokio::select! {
            biased;
            message = async {
                if as_stream {
                    futures_util::StreamExt::next(&mut reader).await
                } else {
                    reader.recv().await
                }
            } => match message {
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
    assert_eq!(next, 2000);
    assert!(cancelled > 0);
}

/// A transport whose first write answers `Pending` after waking the task itself: readiness
/// that arrives between the transport's answer and the waiter's registration.
struct WakesBeforeRegistration {
    inner: tokio::io::DuplexStream,
    raced: bool,
}

impl tokio::io::AsyncRead for WakesBeforeRegistration {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for WakesBeforeRegistration {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if !std::mem::replace(&mut self.raced, true) {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
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
async fn a_write_wakeup_between_pending_and_registration_is_not_lost() {
    let (ours, theirs) = tokio::io::duplex(1024);
    let transport = WakesBeforeRegistration {
        inner: ours,
        raced: false,
    };
    let ws = socketry::WebSocket::from_raw(transport, Role::Server, Default::default());
    let (_reader, mut writer) = ws.split();
    let mut peer = socketry::WebSocket::from_raw(theirs, Role::Client, Default::default());
    // Only the send's own wakeups count: a timer around it would poll it again when it fires.
    tokio::select! {
        biased;
        () = tokio::time::sleep(Duration::from_secs(5)) => panic!("the wakeup was lost"),
        sent = writer.send("woken") => sent.unwrap(),
    }
    assert_eq!(
        bounded(peer.recv()).await.unwrap().unwrap(),
        Message::text("woken")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_and_handles_under_load_on_the_multi_thread_runtime_never_stall() {
    // Small socket buffers make writes pend often, so wakeups race with registration.
    let (addr, mut rx) = serve_reporting(|stream| async move {
        stream.set_nodelay(true).unwrap();
        let ws = socketry::accept(stream).await.unwrap();
        let (mut reader, mut writer) = ws.split();
        let handles: Vec<_> = (0..4).map(|_| writer.handle()).collect();
        let pingers: Vec<_> = handles
            .into_iter()
            .map(|handle| {
                tokio::spawn(async move {
                    for i in 0..200u32 {
                        handle.ping(i.to_be_bytes().to_vec()).await.unwrap();
                    }
                })
            })
            .collect();
        let sending = tokio::spawn(async move {
            for i in 0..300u32 {
                let mut payload = vec![0u8; 16 * 1024];
                payload[..4].copy_from_slice(&i.to_be_bytes());
                writer.send(Message::binary(payload)).await.unwrap();
            }
            writer
        });
        // The reader answers the client's pings meanwhile.
        let reading = tokio::spawn(async move {
            let mut pings = 0;
            while let Some(Ok(message)) = reader.recv().await {
                pings += usize::from(matches!(message, Message::Ping(_)));
            }
            pings
        });
        for pinger in pingers {
            pinger.await.unwrap();
        }
        let mut writer = sending.await.unwrap();
        writer.close(CloseCode::NORMAL, "done").await.unwrap();
        reading.await.unwrap()
    })
    .await;
    let (mut client, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    let handle_pings = tokio::spawn(async move {
        let mut received = 0u32;
        let mut pings_sent = 0;
        loop {
            if pings_sent < 100 {
                client.send(Message::Ping(vec![1].into())).await.unwrap();
                pings_sent += 1;
            }
            match bounded(client.recv()).await {
                Some(Ok(Message::Binary(payload))) => {
                    assert_eq!(payload[..4], received.to_be_bytes(), "in order");
                    received += 1;
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => panic!("{err}"),
                None => return received,
            }
        }
    });
    let received = tokio::time::timeout(Duration::from_secs(60), handle_pings)
        .await
        .expect("no stall")
        .unwrap();
    assert_eq!(received, 300);
    let pings = bounded(rx.recv()).await.unwrap();
    assert_eq!(pings, 100);
}

/// Sends three 4 MiB messages from a writer task while the reader receives the peer's three.
async fn exchange<S>(ws: socketry::WebSocket<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    const SIZE: usize = 4 << 20;
    let (mut reader, mut writer) = ws.split();
    let sending = tokio::spawn(async move {
        for i in 0..3u8 {
            writer.send(Message::binary(vec![i; SIZE])).await.unwrap();
        }
        writer
    });
    for i in 0..3u8 {
        let message = reader.recv().await.unwrap().unwrap();
        assert_eq!(message.len(), SIZE);
        assert_eq!(message.as_payload()[SIZE - 1], i);
    }
    sending.await.unwrap();
}

#[tokio::test]
async fn two_peers_sending_large_messages_to_each_other_while_both_read_finish() {
    let config = socketry::WebSocketConfig::default().write_buffer_size(64 * 1024);
    let (addr, mut rx) = serve_reporting(move |stream| async move {
        let ws = socketry::Acceptor::new()
            .config(config)
            .accept(stream)
            .await
            .unwrap();
        exchange(ws).await;
    })
    .await;
    let (client, _) = socketry::Connector::new()
        .config(config)
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), exchange(client))
        .await
        .expect("both directions finished: no deadlock");
    bounded(rx.recv()).await.unwrap();
}

#[tokio::test]
async fn a_handler_may_use_the_connections_handle() {
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let ws = socketry::accept(stream).await.unwrap();
        let (mut reader, writer) = ws.split();
        let handle = writer.handle();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        // On the old design this handler ran under the split's lock and `state` deadlocked.
        reader.set_ping_handler(Some(Box::new(move |payload| {
            log.lock().unwrap().push(handle.state());
            Some(payload.clone())
        })));
        let pong_handle = writer.handle();
        reader.set_pong_handler(Some(Box::new(move |_| {
            let _ = pong_handle.state();
        })));
        let close_handle = writer.handle();
        reader.set_close_handler(Some(Box::new(move |frame| {
            assert_eq!(close_handle.state(), socketry::State::Closed);
            Some(socketry::CloseFrame::new(
                frame.map_or(CloseCode::NORMAL, |f| f.code),
                "handled",
            ))
        })));
        while let Some(Ok(_)) = reader.recv().await {}
        drop(writer);
        seen.lock().unwrap().clone()
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    client.send_frame(true, OpCode::Ping, b"hi").await;
    let pong = client.read_frame().await.unwrap();
    assert_eq!((pong.opcode, &pong.payload[..]), (OpCode::Pong, &b"hi"[..]));
    client.send_frame(true, OpCode::Pong, b"").await;
    client
        .send_frame(true, OpCode::Close, &1001u16.to_be_bytes())
        .await;
    let close = client.read_frame().await.unwrap();
    assert_eq!(close.opcode, OpCode::Close);
    assert_eq!(
        &close.payload[2..],
        b"handled",
        "the close handler chose the reply"
    );
    let states = bounded(rx.recv()).await.unwrap();
    assert_eq!(states, [socketry::State::Open]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_keeps_sending_while_the_reader_inflates_a_large_message() {
    // Before, the whole inflation ran under the split's lock: the writer stalled for all of
    // it. Now the lock is released between slices; what remains are the few copies that grow
    // the message's buffer.
    kept_going("writer", "inflation", writer_during_inflation).await;
}

/// Passes if the other half kept going during the long operation in one run of three
/// (`run` gives the operation's duration, the other half's longest gap during it and how
/// often it made progress meanwhile). A machine busy with other tests can deschedule a
/// thread for a while; a design that holds the other half up stalls it in every run.
async fn kept_going<F, Fut>(half: &str, operation: &str, run: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (Duration, Duration, usize)>,
{
    let mut last = String::new();
    for _ in 0..3 {
        let (took, longest, meanwhile) = run().await;
        // Too quick to tell anything apart.
        if took <= Duration::from_millis(20) || (meanwhile > 0 && longest < took * 3 / 4) {
            return;
        }
        last = format!(
            "the {half} stalled {longest:?} of the {took:?} {operation} ({meanwhile} times meanwhile)"
        );
    }
    panic!("{last}");
}

/// One run of a 60 MiB inflation on the server while its writer sends: how long the
/// inflation took, the writer's longest gap during it, and how many sends it made meanwhile.
async fn writer_during_inflation() -> (Duration, Duration, usize) {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    };
    use std::time::Instant;
    const SIZE: usize = 60 << 20;
    let config =
        socketry::WebSocketConfig::default().compression(Some(socketry::DeflateConfig::default()));
    let sends: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let (addr, mut rx) = serve_reporting({
        let sends = sends.clone();
        move |stream| {
            let sends = sends.clone();
            async move {
                let ws = socketry::Acceptor::new()
                    .config(config)
                    .accept(stream)
                    .await
                    .unwrap();
                let (mut reader, mut writer) = ws.split();
                let stop = Arc::new(AtomicBool::new(false));
                let writing = tokio::spawn({
                    let stop = stop.clone();
                    async move {
                        while !stop.load(Ordering::Relaxed) {
                            if writer.send("tick").await.is_err() {
                                break;
                            }
                            sends.lock().unwrap().push(Instant::now());
                        }
                        writer
                    }
                });
                let big = reader.recv().await.unwrap().unwrap();
                let inflated_at = Instant::now();
                stop.store(true, Ordering::Relaxed);
                let _writer = writing.await.unwrap();
                (big.len(), inflated_at)
            }
        }
    })
    .await;
    let (client, _) = socketry::Connector::new()
        .config(config)
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    let (mut client_reader, mut client_writer) = client.split();
    tokio::spawn(async move { while let Some(Ok(_)) = client_reader.recv().await {} });
    // Let the ticks flow, then send what inflates to 60 MiB (zeros: a few KiB on the wire).
    tokio::time::sleep(Duration::from_millis(50)).await;
    client_writer
        .send(Message::binary(vec![0u8; SIZE]))
        .await
        .unwrap();
    let sent_at = Instant::now();
    let (len, inflated_at) = bounded(rx.recv()).await.unwrap();
    assert_eq!(len, SIZE);
    // The inflation ran between the send and the reader's return.
    let inflating = inflated_at.saturating_duration_since(sent_at);
    let sends = sends.lock().unwrap().clone();
    let (longest, meanwhile) = longest_gap(sent_at, inflated_at, &sends);
    (inflating, longest, meanwhile)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_keeps_reading_while_the_writer_compresses_a_large_message() {
    // Compressing under the split's lock, the reader read nothing for all of it.
    kept_going("reader", "compression", reader_during_compression).await;
}

/// One run of a 48 MiB compression on the server while the client pings: how long the
/// compression took, the server reader's longest gap between pings during it, and how many
/// it read meanwhile.
async fn reader_during_compression() -> (Duration, Duration, usize) {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    const SIZE: usize = 48 << 20;
    let config =
        socketry::WebSocketConfig::default().compression(Some(socketry::DeflateConfig::default()));
    let (addr, mut rx) = serve_reporting(move |stream| async move {
        let ws = socketry::Acceptor::new()
            .config(config)
            .accept(stream)
            .await
            .unwrap();
        let (mut reader, mut writer) = ws.split();
        let pings: Arc<Mutex<Vec<Instant>>> = Arc::default();
        // The reader gets a thread of its own, so that only the split's lock (not the
        // scheduler, busy compressing on the writer's thread) can hold it up.
        let _reading = std::thread::spawn({
            let pings = pings.clone();
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    while let Some(Ok(message)) = reader.recv().await {
                        if let Message::Ping(_) = message {
                            pings.lock().unwrap().push(Instant::now());
                        }
                    }
                });
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await; // pings flow
        // Not all zeros: a text that takes zlib real work. Compressed on a thread of its own
        // too, so that the runtime serving the sockets stays free.
        let text: String = (0..SIZE)
            .map(|i| char::from(b'a' + (i * 7 % 23) as u8))
            .collect();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let started = Instant::now();
                writer.send(text).await.unwrap();
                let _ = done_tx.send((started, Instant::now()));
            });
        });
        // Awaited, not joined: this runtime keeps serving the sockets meanwhile.
        let (started, sent) = done_rx.await.unwrap();
        let pings = pings.lock().unwrap().clone();
        (started, sent, pings)
    })
    .await;
    let (client, _) = socketry::Connector::new()
        .config(config)
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    let (mut client_reader, mut client_writer) = client.split();
    tokio::spawn(async move { while let Some(Ok(_)) = client_reader.recv().await {} });
    let pinging = tokio::spawn(async move {
        loop {
            if client_writer.send(Message::Ping("p".into())).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let (started, sent, pings) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .unwrap()
        .unwrap();
    pinging.abort();
    let (longest, meanwhile) = longest_gap(started, sent, &pings);
    (sent - started, longest, meanwhile)
}

/// The longest stretch within `from..=to` in which none of `times` fell.
fn longest_gap(
    from: std::time::Instant,
    to: std::time::Instant,
    times: &[std::time::Instant],
) -> (Duration, usize) {
    let during: Vec<_> = times
        .iter()
        .copied()
        .filter(|t| *t >= from && *t <= to)
        .collect();
    let mut longest = Duration::ZERO;
    let mut last = from;
    for t in during.iter().copied().chain([to]) {
        longest = longest.max(t - last);
        last = t;
    }
    (longest, during.len())
}
