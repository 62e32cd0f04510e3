//! Helpers shared by the hub's integration tests: a hub server on a loopback port whose
//! clients drive it with text commands, clients, a stalled raw peer, bounded waits.
#![allow(dead_code, unreachable_pub)] // each test file uses a different subset

pub mod brokers;
pub mod cluster;

use std::{future::Future, net::SocketAddr, time::Duration};

use socketry::{MaybeTlsStream, Message, WebSocket};
use socketry_hub::{ClientInfo, Hub, Member};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Every wait in a test is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `f`, failing the test if it takes longer than [`TIMEOUT`].
pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .expect("test step timed out")
}

/// Waits until `check` holds, polling every millisecond, for at most [`TIMEOUT`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A server whose connections enter `hub` (the user is the URL path without its `/`) and
/// obey their text messages: `join R`, `leave R`, `pub R TEXT` (to everyone in R),
/// `others R TEXT` (to everyone in R but the sender). Anything else is ignored.
pub async fn hub_server(hub: Hub) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            // Out of file descriptors (EMFILE) is worth a retry, not the end of the server.
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            let hub = hub.clone();
            tokio::spawn(async move {
                let Ok(ws) = socketry::accept(tcp).await else {
                    return;
                };
                let (mut reader, writer) = ws.split();
                let member = hub.attach(writer, ClientInfo::new("user"));
                while let Some(Ok(message)) = reader.recv().await {
                    if let Message::Text(text) = message {
                        if let Some(rest) = text.strip_prefix("recover ") {
                            recover(&member, rest).await;
                        } else {
                            obey(&member, &text);
                        }
                    }
                }
            });
        }
    });
    addr
}

/// `recover R POS` (`-` for none): joins R with recovery from POS, then sends
/// `recovery recovered N`, `recovery lost REASON CURRENT` or `recovery fresh CURRENT`.
async fn recover(member: &Member, rest: &str) {
    let (room, since) = rest.split_once(' ').unwrap_or((rest, "-"));
    let since = since.parse().ok();
    let current = |p: &Option<socketry_hub::Position>| {
        p.as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string)
    };
    let reply = match member.join_since(room, since).await {
        Ok(socketry_hub::Recovery::Recovered { missed }) => format!("recovery recovered {missed}"),
        Ok(socketry_hub::Recovery::Lost { reason, current: c }) => {
            format!("recovery lost {reason:?} {}", current(&c))
        }
        Ok(socketry_hub::Recovery::Fresh { current: c }) => {
            format!("recovery fresh {}", current(&c))
        }
        Ok(other) => format!("recovery {other:?}"),
        Err(err) => format!("recovery error {err}"),
    };
    let _ = member.send(reply);
}

fn obey(member: &Member, command: &str) {
    let mut words = command.splitn(3, ' ');
    let (verb, room, text) = (words.next(), words.next(), words.next());
    let _ = match (verb, room, text) {
        (Some("join"), Some(room), None) => member.join(room).map(drop),
        (Some("leave"), Some(room), None) => member.leave(room).map(drop),
        (Some("pub"), Some(room), Some(text)) => member.publish(room, text).map(drop),
        (Some("others"), Some(room), Some(text)) => member.publish_to_others(room, text).map(drop),
        _ => Ok(()),
    };
}

pub type Client = WebSocket<MaybeTlsStream>;

/// A client of the hub server.
pub async fn client(addr: SocketAddr) -> Client {
    socketry::connect(&format!("ws://{addr}/"))
        .await
        .expect("connect")
        .0
}

/// A client that joined `room` (the join may still be on its way: wait for the room's size).
pub async fn member_of(addr: SocketAddr, room: &str) -> Client {
    let mut ws = client(addr).await;
    ws.send(format!("join {room}")).await.unwrap();
    ws
}

/// The next text message, skipping nothing: panics on anything else.
pub async fn next_text(ws: &mut Client) -> String {
    match bounded(ws.recv()).await {
        Some(Ok(Message::Text(text))) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// A peer that completes the handshake and then never reads again (a stalled browser tab).
pub async fn stalled_peer(addr: SocketAddr) -> TcpStream {
    // A small receive buffer, so that the server's socket fills soon whatever the kernel's
    // autotuning would give.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        bounded(tcp.read_exact(&mut byte)).await.unwrap();
        response.push(byte[0]);
    }
    assert!(response.starts_with(b"HTTP/1.1 101"), "handshake failed");
    tcp
}

/// Sends a masked text frame from a raw peer.
pub async fn raw_send_text(tcp: &mut TcpStream, text: &str) {
    let payload = text.as_bytes();
    assert!(payload.len() < 126);
    let mut frame = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload); // mask 0: the payload goes as it is
    tcp.write_all(&frame).await.unwrap();
}

/// Raises this process's soft limit on open files to the hard limit (a test with thousands
/// of sockets needs more than the common default of 1024).
pub fn raise_file_limit() {
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    rlimit::Resource::NOFILE.set(hard, hard).unwrap();
}

/// The process's resident set, in bytes.
pub fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}
