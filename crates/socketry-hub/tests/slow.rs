//! Slow consumers over real sockets: a member that stops reading is disconnected (or misses
//! messages, under the drop policy) and never delays the others or holds more than its bound.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use socketry::{Message, Role, WebSocket, WebSocketConfig};
use socketry_hub::{
    Hub, HubConfig, Overflow, Publication, RoomName, SLOW_CLOSE_CODE, SLOW_CLOSE_REASON,
};
use support::{bounded, eventually, hub_server, member_of, raw_send_text, rss_bytes, stalled_peer};

/// A message of `len` bytes that starts with its sequence number.
fn numbered(seq: usize, len: usize) -> String {
    let mut text = format!("{seq:08}:");
    text.extend(std::iter::repeat_n('x', len - text.len()));
    text
}

fn seq_of(text: &str) -> usize {
    text[..8].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_reads_is_disconnected_as_slow_and_memory_stays_bounded() {
    const HEALTHY: usize = 3;
    const MESSAGES: usize = 2000;
    const LEN: usize = 32 * 1024;
    let hub = Hub::new(HubConfig::default().slow_close_timeout(Duration::from_secs(20)));
    let addr = hub_server(hub.clone()).await;

    let received: Arc<Vec<AtomicUsize>> =
        Arc::new((0..HEALTHY).map(|_| AtomicUsize::new(0)).collect());
    let mut readers = Vec::new();
    for i in 0..HEALTHY {
        let mut ws = member_of(addr, "feed").await;
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            for expected in 0..MESSAGES {
                match ws.recv().await {
                    Some(Ok(Message::Text(text))) => assert_eq!(seq_of(&text), expected, "order"),
                    other => panic!("healthy member {i} got {other:?} at {expected}"),
                }
                received[i].fetch_add(1, Ordering::Relaxed);
            }
            ws // still a member until the test ends
        }));
    }
    let mut stalled = stalled_peer(addr).await;
    raw_send_text(&mut stalled, "join feed").await;
    eventually("joins", || hub.room_size("feed") == HEALTHY + 1).await;

    let before = rss_bytes();
    let mut slow_at = None;
    for seq in 0..MESSAGES {
        // Publish in windows of 16 so that the healthy members (readers in this process)
        // keep up; the stalled one never does.
        if seq % 16 == 0 {
            let received = received.clone();
            eventually("healthy members to catch up", move || {
                received
                    .iter()
                    .all(|n| n.load(Ordering::Relaxed) + 16 >= seq)
            })
            .await;
        }
        let report = hub.publish("feed", numbered(seq, LEN)).unwrap();
        if report.disconnected > 0 {
            assert_eq!(report.disconnected, 1);
            slow_at.get_or_insert(seq);
        }
    }
    let slow_at = slow_at.expect("the stalled member was disconnected");
    let mut healthy = Vec::new();
    for reader in readers {
        healthy.push(bounded(reader).await.unwrap());
    }
    let growth = rss_bytes().saturating_sub(before);
    let stats = hub.stats();
    assert_eq!(stats.slow_disconnects, 1);
    assert_eq!(
        hub.room_size("feed"),
        HEALTHY,
        "the slow member left the room"
    );
    // 2000 x 32 KiB = 62.5 MiB were published; the stalled member may hold its 1 MiB bound
    // (plus what its writer had taken), never the stream.
    assert!(
        growth < 24 * 1024 * 1024,
        "RSS grew by {} KiB while a member stalled",
        growth / 1024
    );
    assert!(slow_at < 200, "disconnected only after {slow_at} messages");

    // The stalled peer, reading at last, finds the messages it had room for, in order, then
    // the slow close code.
    let mut ws = WebSocket::from_raw(stalled, Role::Client, WebSocketConfig::default());
    let mut next = 0;
    let close = loop {
        match bounded(ws.recv()).await {
            Some(Ok(Message::Text(text))) => {
                assert_eq!(seq_of(&text), next);
                next += 1;
            }
            Some(Ok(Message::Close(frame))) => break frame,
            other => panic!("stalled peer got {other:?}"),
        }
    };
    let close = close.expect("a close code");
    assert_eq!(close.code, SLOW_CLOSE_CODE);
    assert_eq!(close.reason, SLOW_CLOSE_REASON);
    assert!(
        next <= slow_at,
        "got {next} messages, overflowed at {slow_at}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drop_policy_counts_every_message_a_member_missed() {
    const MESSAGES: usize = 2000;
    let hub = Hub::new(
        HubConfig::default()
            .overflow(Overflow::Drop)
            .max_queue_messages(8),
    );
    let addr = hub_server(hub.clone()).await;
    let mut stalled = stalled_peer(addr).await;
    raw_send_text(&mut stalled, "join feed").await;
    eventually("join", || hub.room_size("feed") == 1).await;
    let conn = hub.local_members("feed")[0].conn;

    let (mut delivered, mut dropped) = (0, 0);
    let mut max_buffered = 0;
    for seq in 0..MESSAGES {
        let report = hub.publish("feed", numbered(seq, 8 * 1024)).unwrap();
        assert_eq!(report.delivered + report.dropped, 1, "{report:?}");
        delivered += report.delivered;
        dropped += report.dropped;
        max_buffered = max_buffered.max(hub.buffered_amount(conn).unwrap());
    }
    assert!(dropped > 0, "16 MiB went to a peer that does not read");
    assert_eq!(hub.stats().drops, dropped as u64);
    assert_eq!(
        hub.stats().slow_disconnects,
        0,
        "drop policy: nobody disconnected"
    );
    assert!(
        max_buffered > 0 && max_buffered <= 8 * (8 * 1024 + 4),
        "{max_buffered}"
    );

    // Once it reads, it gets exactly what was queued, in order, and the end marker.
    let mut ws = WebSocket::from_raw(stalled, Role::Client, WebSocketConfig::default());
    let reading = tokio::spawn(async move {
        let mut seqs = Vec::new();
        loop {
            match ws.recv().await {
                Some(Ok(Message::Text(text))) if &*text == "end" => return seqs,
                Some(Ok(Message::Text(text))) => seqs.push(seq_of(&text)),
                other => panic!("got {other:?}"),
            }
        }
    });
    // The end marker must not be dropped: publish it once there is room.
    let room = RoomName::new("feed").unwrap();
    bounded(async {
        loop {
            let end = Publication::new(room.clone(), socketry::PreparedMessage::new("end".into()));
            if hub.publish_with(end).unwrap().delivered == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let seqs = bounded(reading).await.unwrap();
    assert_eq!(seqs.len(), delivered, "every queued message arrived");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order");
    assert_eq!(
        MESSAGES - seqs.len(),
        dropped,
        "every missing message was counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_of_a_member_that_left_gives_up_on_a_stalled_peer_within_the_timeout() {
    // A raw socketry server whose connection ends on the server's side (its reader loop
    // stops) while the peer has stopped reading and data is still queued for it.
    let hub = Hub::new(
        HubConfig::default()
            .overflow(Overflow::Drop)
            .slow_close_timeout(Duration::from_millis(300)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (writer_tx, writer_rx) = tokio::sync::oneshot::channel();
    let (end_tx, end_rx) = tokio::sync::oneshot::channel::<()>();
    let server_hub = hub.clone();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = socketry::accept(tcp).await.unwrap();
        let (reader, writer) = ws.split();
        let member = server_hub.attach(writer, socketry_hub::ClientInfo::default());
        member.join("feed").unwrap();
        writer_tx.send(member.writer()).unwrap();
        let _ = end_rx.await;
        drop((member, reader)); // the application is done with this connection
    });
    let stalled = stalled_peer(addr).await;
    let writer = bounded(writer_rx).await.unwrap();
    for seq in 0..2000 {
        hub.publish("feed", numbered(seq, 8 * 1024)).unwrap();
    }
    assert!(hub.stats().drops > 0, "the peer's socket is full");
    end_tx.send(()).unwrap();
    eventually("the member to leave", || hub.stats().connections == 0).await;
    let started = std::time::Instant::now();
    eventually("the writer task to give up", || writer.is_finished()).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the writer waited {:?} on a peer that does not read",
        started.elapsed()
    );
    // The server let the socket go: the peer, reading at last, finds the end of the stream
    // after what was buffered (it held a handle on the writer all along).
    let mut stalled = stalled;
    let mut buf = vec![0u8; 64 * 1024];
    bounded(async {
        loop {
            match tokio::io::AsyncReadExt::read(&mut stalled, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    drop(writer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_times_out_takes_the_member_out_and_closes_with_1011() {
    // Drop policy, so the queue never overflows: only the connection's write timeout can end
    // this member, and it must not leave the connection open beside a member out of the hub.
    let hub = Hub::new(HubConfig::default().overflow(Overflow::Drop));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_hub = hub.clone();
    let (gone_tx, gone_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let config = WebSocketConfig::default().write_timeout(Some(Duration::from_millis(300)));
        let ws = socketry::Acceptor::new()
            .config(config)
            .accept(tcp)
            .await
            .unwrap();
        let (mut reader, writer) = ws.split();
        let member = server_hub.attach(writer, socketry_hub::ClientInfo::default());
        member.join("feed").unwrap();
        // The reader sees the connection end (the close the writer's failure started).
        while let Some(Ok(_)) = reader.recv().await {}
        let _ = gone_tx.send(member.is_gone());
    });
    let stalled = stalled_peer(addr).await;
    eventually("join", || hub.room_size("feed") == 1).await;
    let started = std::time::Instant::now();
    let mut seq = 0;
    while hub.room_size("feed") == 1 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the write never timed out"
        );
        hub.publish("feed", numbered(seq, 8 * 1024)).unwrap();
        seq += 1;
        if seq % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // A departing member leaves its rooms first and the hub's table right after: the room
    // can be empty a moment before the connection count drops.
    eventually("out of the hub", || hub.stats().connections == 0).await;
    assert_eq!(
        hub.stats().slow_disconnects,
        0,
        "a write failure, not an overflow"
    );
    // The peer, reading at last, finds what it had room for and then the 1011 close.
    let mut ws = WebSocket::from_raw(stalled, Role::Client, WebSocketConfig::default());
    let close = loop {
        match bounded(ws.recv()).await {
            Some(Ok(Message::Text(_))) => {}
            Some(Ok(Message::Close(frame))) => break frame,
            other => panic!("stalled peer got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1011));
    assert!(
        bounded(gone_rx).await.unwrap(),
        "the member knew it was gone"
    );
}
