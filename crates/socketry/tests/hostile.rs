//! Hostile peers over loopback, each while a normal client keeps being served by the same
//! server: slowloris handshakes, a 1 GiB deflate bomb (memory measured), peers that vanish
//! mid-frame (tasks counted after), and a peer that floods pings without reading.

mod support;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use socketry::{Acceptor, DeflateConfig, Message, OpCode, WebSocketConfig};
use support::*;
use tokio::{io::AsyncWriteExt, net::TcpStream};

/// An echo server built from `acceptor`; counts the connection tasks still running.
async fn guarded_echo_server(acceptor: Acceptor) -> (SocketAddr, Arc<AtomicUsize>) {
    let live = Arc::new(AtomicUsize::new(0));
    let counter = live.clone();
    let addr = serve(move |stream| {
        let acceptor = acceptor.clone();
        let live = counter.clone();
        async move {
            live.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut ws) = acceptor.accept(stream).await {
                while let Some(Ok(message)) = ws.recv().await {
                    if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err()
                    {
                        break;
                    }
                }
            }
            live.fetch_sub(1, Ordering::SeqCst);
        }
    })
    .await;
    (addr, live)
}

/// A normal client: connects, echoes `rounds` messages, closes. Panics on any failure.
async fn normal_client(addr: SocketAddr, rounds: usize) {
    let (mut ws, _) = bounded(socketry::connect(&format!("ws://{addr}/")))
        .await
        .unwrap();
    for i in 0..rounds {
        let text = format!("normal {i}");
        bounded(ws.send(text.as_str())).await.unwrap();
        assert_eq!(
            bounded(ws.recv()).await.unwrap().unwrap(),
            Message::text(text)
        );
    }
    bounded(ws.close(socketry::CloseCode::NORMAL, ""))
        .await
        .unwrap();
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn wait_until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_handshakes_are_cut_at_the_handshake_timeout() {
    let timeout = Duration::from_millis(1500);
    let (addr, live) = guarded_echo_server(Acceptor::new().handshake_timeout(timeout)).await;
    let started = Instant::now();
    // 500 sockets, each sending its opening request one byte per second.
    let request = upgrade_request(addr).into_bytes();
    let mut slow = Vec::new();
    for _ in 0..500 {
        let request = request.clone();
        slow.push(tokio::spawn(async move {
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                return None;
            };
            for byte in request {
                if stream.write_all(&[byte]).await.is_err() {
                    return Some(Instant::now()); // cut by the server
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            None
        }));
    }
    // Meanwhile, a normal client is served.
    normal_client(addr, 20).await;
    let mut cut = 0;
    for task in slow {
        if let Some(at) = bounded(task).await.unwrap() {
            cut += 1;
            // The write that fails comes up to a second (the sleep) plus the RST after the cut.
            assert!(at - started < timeout + Duration::from_secs(4), "cut late");
        }
    }
    assert_eq!(cut, 500, "every slow handshake is cut");
    wait_until("all tasks end", Duration::from_secs(5), || {
        live.load(Ordering::SeqCst) == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_deflate_bomb_gets_1009_and_memory_stays_bounded() {
    let limit = 16 << 20;
    let config = WebSocketConfig::default()
        .compression(Some(DeflateConfig::default()))
        .max_message_size(Some(limit));
    let (addr, _live) = guarded_echo_server(Acceptor::new().config(config)).await;
    // 1 GiB of zeros as one compressed message: ~1 MiB on the wire, in 64 KiB frames.
    let mut compressor =
        flate2::Compress::new_with_window_bits(flate2::Compression::best(), false, 15);
    let zeros = vec![0u8; 1 << 20];
    let mut bomb = Vec::with_capacity(2 << 20);
    for _ in 0..1024 {
        bomb.reserve(64 << 10);
        compressor
            .compress_vec(&zeros, &mut bomb, flate2::FlushCompress::None)
            .unwrap();
    }
    compressor
        .compress_vec(&[], &mut bomb, flate2::FlushCompress::Sync)
        .unwrap();
    assert!(bomb.len() < 4 << 20, "bomb is {} bytes", bomb.len());
    drop(zeros);
    let before = vm_rss_kib();

    let mut client =
        RawClient::connect_with(addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    let normal = tokio::spawn(normal_client(addr, 50));
    let chunks: Vec<&[u8]> = bomb.chunks(64 << 10).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        let rsv = if i == 0 {
            socketry::proto::frame::RSV1
        } else {
            0
        };
        let mut frame = bytes::BytesMut::new();
        socketry::proto::frame::encode_frame(
            &mut frame,
            i + 1 == chunks.len(),
            rsv,
            opcode,
            Some([9, 8, 7, 6]),
            chunk,
        );
        if client.stream.write_all(&frame).await.is_err() {
            break; // the server already closed
        }
    }
    assert_eq!(client.read_close_code().await, 1009);
    bounded(normal).await.unwrap();
    let grown_mib = vm_rss_kib().saturating_sub(before) / 1024;
    // The limit (16 MiB), the buffers that led to it, and test noise; never the 1 GiB.
    assert!(grown_mib < 64, "RSS grew by {grown_mib} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_vanishing_mid_frame_end_their_tasks_and_leak_nothing() {
    let (addr, live) = guarded_echo_server(Acceptor::new()).await;
    let normal = tokio::spawn(normal_client(addr, 100));
    for i in 0..100u32 {
        let mut client = RawClient::connect(addr).await;
        // Half a frame: header of 100 bytes, 10 of them sent.
        client
            .stream
            .write_all(&[0x82, 0xe4, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            .await
            .unwrap();
        if i % 2 == 0 {
            // A reset (linger 0), not a clean FIN.
            client.stream.set_zero_linger().unwrap();
        } else {
            client.stream.shutdown().await.unwrap(); // half-close
        }
        drop(client);
    }
    bounded(normal).await.unwrap();
    wait_until(
        "every vanished peer's task ends",
        Duration::from_secs(10),
        || live.load(Ordering::SeqCst) == 0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_without_reading_keeps_memory_bounded() {
    let config = WebSocketConfig::default().write_buffer_size(64 << 10);
    let (addr, _live) = guarded_echo_server(Acceptor::new().config(config)).await;
    let before = vm_rss_kib();
    let mut client = RawClient::connect(addr).await;
    let normal = tokio::spawn(normal_client(addr, 50));
    // 200,000 pings with 125-byte payloads (about 26 MB of pongs owed), never reading.
    let burst = ping_flood(1000);
    let flood = tokio::time::timeout(Duration::from_secs(3), async {
        for _ in 0..200 {
            if client.stream.write_all(&burst).await.is_err() {
                break;
            }
        }
    })
    .await;
    // The server keeps reading (so the writes may all go through) while its pongs coalesce
    // above the write bound: its queue, and so its memory, stays bounded either way.
    let _ = flood;
    bounded(normal).await.unwrap();
    let grown_mib = vm_rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 32,
        "RSS grew by {grown_mib} MiB under a ping flood"
    );
}
