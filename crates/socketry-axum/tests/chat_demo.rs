//! The chat example, run as a process: the page is served, two users in one room see each
//! other in the presence list and each other's messages.

use std::{path::PathBuf, process::Stdio, time::Duration};

use futures_util::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::Command,
};
use tokio_tungstenite::tungstenite::Message;

const TIMEOUT: Duration = Duration::from_secs(10);

fn chat_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("chat")
}

type Client = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn join(addr: &str, name: &str, room: &str) -> Client {
    let stream = TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(format!("ws://{addr}/ws?name={name}&room={room}"), stream)
        .await
        .unwrap()
        .0
}

/// The next JSON message of `kind`.
async fn next_of(ws: &mut Client, kind: &str) -> serde_json::Value {
    loop {
        let value = next_any(ws).await;
        if value["type"] == kind {
            return value;
        }
    }
}

/// The next message of the room's own stream (messages, recovery), past presence events: with
/// presence in Redis, those come on their own path and may arrive between them (a join
/// announced by the other node a moment late).
async fn next_in_room(ws: &mut Client) -> serde_json::Value {
    loop {
        let value = next_any(ws).await;
        if !matches!(value["type"].as_str(), Some("join" | "leave" | "presence")) {
            return value;
        }
    }
}

/// A raw client joins and never reads; ann floods the room in lockstep with her own echo.
/// The stalled one is disconnected as slow (its leave reaches ann) and gets close 3008 when it
/// reads at last; bob gets every message.
async fn stalled_member_is_disconnected_while_the_others_chat(
    addr: &str,
    ann: &mut Client,
    bob: &mut Client,
) {
    const FLOOD: usize = 250;
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(
            format!(
                "GET /ws?name=stalled&room=blue HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stalled.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let joined = next_of(ann, "join").await;
    assert_eq!(joined["user"], "stalled");
    let _ = next_of(bob, "join").await;

    let text = "x".repeat(60_000);
    let mut left = None;
    let mut sent = 0;
    // Flood until the stalled one is disconnected, then read it at once (its close frame
    // waits behind what it did not read, for the 1 s slow-close timeout).
    while left.is_none() {
        assert!(sent < FLOOD, "the stalled member was never disconnected");
        ann.send(Message::text(text.clone())).await.unwrap();
        sent += 1;
        // ann reads her own echo (and any event before it): she is not slow.
        loop {
            let value = next_any(ann).await;
            match value["type"].as_str() {
                Some("message") => break,
                Some("leave") => left = Some(value),
                _ => {}
            }
        }
        assert_eq!(
            next_of(bob, "message").await["text"].as_str().map(str::len),
            Some(60_000)
        );
    }
    let left = left.unwrap();
    assert_eq!(left["id"], joined["id"]);
    assert!(left["version"].as_u64() > joined["version"].as_u64());

    let mut ws = socketry::WebSocket::from_raw(
        stalled,
        socketry::Role::Client,
        socketry::WebSocketConfig::default(),
    );
    let close = loop {
        match tokio::time::timeout(TIMEOUT, ws.recv()).await.unwrap() {
            Some(Ok(socketry::Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("stalled client: {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(3008));
    // The healthy two keep chatting.
    for _ in 0..20 {
        ann.send(Message::text("after")).await.unwrap();
        assert_eq!(next_of(bob, "message").await["text"], "after");
        assert_eq!(next_of(ann, "message").await["text"], "after");
    }
}

/// The next JSON message, whatever its kind.
async fn next_any(ws: &mut Client) -> serde_json::Value {
    loop {
        let message = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test]
async fn two_users_chat_in_one_room() {
    let (mut child, addr) = start_chat(&[]).await;

    let mut http = TcpStream::connect(&addr).await.unwrap();
    http.write_all(
        format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut page = String::new();
    tokio::time::timeout(TIMEOUT, http.read_to_string(&mut page))
        .await
        .unwrap()
        .unwrap();
    assert!(page.starts_with("HTTP/1.1 200"));
    assert!(page.contains("<title>socketry chat</title>"));

    let mut ann = join(&addr, "ann", "blue").await;
    let snapshot = next_of(&mut ann, "presence").await;
    assert_eq!(snapshot["users"][0]["user"], "ann");
    let mut bob = join(&addr, "bob", "blue").await;
    let joined = next_of(&mut ann, "join").await;
    assert_eq!(joined["user"], "bob");
    let snapshot = next_of(&mut bob, "presence").await;
    assert_eq!(users(&snapshot), ["ann", "bob"]);
    let mut eve = join(&addr, "eve", "red").await;
    let _ = next_of(&mut eve, "presence").await;

    ann.send(Message::text("hello bob")).await.unwrap();
    let mut message = next_of(&mut bob, "message").await;
    // Each message has its position in the room's history, for a page that reconnects.
    let pos = message.as_object_mut().unwrap().remove("pos").unwrap();
    assert!(pos.as_str().unwrap().starts_with("1:"), "{pos}");
    assert_eq!(
        message,
        serde_json::json!({"type": "message", "from": "ann", "text": "hello bob"})
    );
    let echo = next_of(&mut ann, "message").await;
    assert_eq!(echo["text"], "hello bob");
    // Another room hears nothing.
    let quiet = tokio::time::timeout(Duration::from_millis(200), eve.next()).await;
    assert!(quiet.is_err(), "{quiet:?}");

    stalled_member_is_disconnected_while_the_others_chat(&addr, &mut ann, &mut bob).await;

    bob.close(None).await.unwrap();
    let left = next_of(&mut ann, "leave").await;
    assert_eq!(left["id"], joined["id"]);

    // Ctrl-C: its `select!` loops end cleanly, every member gets 1001, the process exits 0.
    let pid = child.id().expect("running").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    for ws in [&mut ann, &mut eve] {
        let code = loop {
            match tokio::time::timeout(TIMEOUT, ws.next()).await.unwrap() {
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                other => panic!("expected the close, got {other:?}"),
            }
        };
        assert_eq!(code, Some(1001));
        // tungstenite sends its reply as it is polled on; then the server ends TCP.
        while let Some(Ok(_)) = tokio::time::timeout(TIMEOUT, ws.next()).await.unwrap() {}
    }
    let started = std::time::Instant::now();
    let status = tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "nothing waited for the 5 s shutdown deadline: {:?}",
        started.elapsed()
    );
}

/// The chat's `redis` build runs on a real `redis-server` (the hub's test helper starts it on
/// a free port and stops it by PID).
#[cfg(any(feature = "redis", feature = "nats"))]
#[path = "../../socketry-hub/tests/support/brokers.rs"]
#[allow(dead_code, unreachable_pub)]
mod brokers;

/// Starts the chat example on a free port with `args`; returns the process and its address.
async fn start_chat(args: &[&str]) -> (tokio::process::Child, String) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(chat_binary())
        .args(["--addr", &addr])
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the chat example is built by cargo test");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(TIMEOUT, stdout.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first, format!("chat: open http://{addr}/"));
    (child, addr)
}

/// Two chat processes on one broker: a message sent on one node reaches the room's members
/// on both, once each and in order, and another room hears nothing.
#[cfg(any(feature = "redis", feature = "nats"))]
async fn two_chat_nodes_share_a_room(args: &[&str], shared_presence: bool) {
    let (_one, addr_one) = start_chat(args).await;
    let (_two, addr_two) = start_chat(args).await;
    let mut ann = join(&addr_one, "ann", "blue").await;
    let _ = next_of(&mut ann, "presence").await;
    let mut bob = join(&addr_two, "bob", "blue").await;
    let snapshot = next_of(&mut bob, "presence").await;
    if shared_presence {
        // Bob's node lists ann, who is on the other node, and ann hears bob join there.
        assert_eq!(users(&snapshot), ["ann", "bob"]);
        let joined = next_of(&mut ann, "join").await;
        assert_eq!(joined["user"], "bob");
    } else {
        assert_eq!(users(&snapshot), ["bob"]);
    }
    let mut eve = join(&addr_two, "eve", "red").await;
    let _ = next_of(&mut eve, "presence").await;
    // The presence snapshot is sent after the room's subscription is confirmed (or two
    // seconds passed): from here on, publications cross.
    for i in 0..20 {
        ann.send(Message::text(format!("ann {i}"))).await.unwrap();
        bob.send(Message::text(format!("bob {i}"))).await.unwrap();
    }
    for ws in [&mut ann, &mut bob] {
        let (mut from_ann, mut from_bob) = (Vec::new(), Vec::new());
        while from_ann.len() < 20 || from_bob.len() < 20 {
            let message = next_of(ws, "message").await;
            let text = message["text"].as_str().unwrap().to_owned();
            match message["from"].as_str().unwrap() {
                "ann" => from_ann.push(text),
                _ => from_bob.push(text),
            }
        }
        assert_eq!(
            from_ann,
            (0..20).map(|i| format!("ann {i}")).collect::<Vec<_>>()
        );
        assert_eq!(
            from_bob,
            (0..20).map(|i| format!("bob {i}")).collect::<Vec<_>>()
        );
    }
    // Nothing came twice: the next message on each is a new one.
    ann.send(Message::text("last")).await.unwrap();
    assert_eq!(next_of(&mut bob, "message").await["text"], "last");
    assert_eq!(next_of(&mut ann, "message").await["text"], "last");
    let quiet = tokio::time::timeout(Duration::from_millis(200), eve.next()).await;
    assert!(quiet.is_err(), "{quiet:?}");
}

/// The user names of a presence snapshot, sorted.
fn users(snapshot: &serde_json::Value) -> Vec<String> {
    let mut users: Vec<String> = (snapshot["users"].as_array().unwrap().iter())
        .map(|u| u["user"].as_str().unwrap().to_owned())
        .collect();
    users.sort();
    users
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn two_chat_nodes_share_a_room_and_its_presence_through_redis() {
    let redis = brokers::RedisServer::start();
    two_chat_nodes_share_a_room(&["--redis", &redis.url()], true).await;
}

#[cfg(feature = "nats")]
#[tokio::test]
async fn two_chat_nodes_share_a_room_through_nats() {
    let nats = brokers::NatsServer::start();
    two_chat_nodes_share_a_room(&["--nats", &nats.url()], false).await;
}

#[cfg(all(feature = "nats", feature = "redis"))]
#[tokio::test]
async fn two_chat_nodes_share_a_room_through_nats_and_its_presence_through_redis() {
    let (nats, redis) = (brokers::NatsServer::start(), brokers::RedisServer::start());
    let args = ["--nats", &nats.url(), "--redis", &redis.url()];
    two_chat_nodes_share_a_room(&args, true).await;
}

/// A chat node SIGKILLed: its users leave the presence of the pages on the other node once
/// its lease runs out (2 s here), with a leave event newer than their join.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_sigkilled_chat_node_leaves_the_presence_of_the_other_within_its_ttl() {
    let redis = brokers::RedisServer::start();
    let args = ["--redis", &redis.url(), "--presence-ttl", "2"];
    let (_one, addr_one) = start_chat(&args).await;
    let (mut two, addr_two) = start_chat(&args).await;
    let mut ann = join(&addr_one, "ann", "blue").await;
    let _ = next_of(&mut ann, "presence").await;
    let mut bob = join(&addr_two, "bob", "blue").await;
    assert_eq!(users(&next_of(&mut bob, "presence").await), ["ann", "bob"]);
    let joined = next_of(&mut ann, "join").await;
    assert_eq!(joined["user"], "bob");
    two.start_kill().unwrap();
    two.wait().await.unwrap();
    let killed = std::time::Instant::now();
    let left = next_of(&mut ann, "leave").await;
    assert_eq!(left["id"], joined["id"]);
    assert!(left["version"].as_u64() > joined["version"].as_u64());
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    // A page that joins now does not see bob.
    let mut cat = join(&addr_one, "cat", "blue").await;
    assert_eq!(users(&next_of(&mut cat, "presence").await), ["ann", "cat"]);
    drop(bob);
}

/// A page that reconnects with the last position it saw (`?since=`) gets what it missed, in
/// order, then a `recovery` message that counts them; on the other node too, through Redis.
async fn a_page_back_with_its_position_gets_what_it_missed(addr_gone: &str, addr_back: &str) {
    let mut ann = join(addr_gone, "ann", "green").await;
    let _ = next_of(&mut ann, "presence").await;
    let mut bob = join(addr_back, "bob", "green").await;
    let _ = next_of(&mut bob, "presence").await;
    bob.send(Message::text("seen")).await.unwrap();
    let seen = next_of(&mut ann, "message").await;
    assert_eq!(seen["text"], "seen");
    let since = seen["pos"].as_str().unwrap().to_owned();
    assert_eq!(
        next_of(&mut bob, "message").await["text"],
        "seen",
        "bob's own echo"
    );
    ann.close(None).await.unwrap();
    for i in 0..5 {
        bob.send(Message::text(format!("missed {i}")))
            .await
            .unwrap();
    }
    for i in 0..5 {
        assert_eq!(
            next_of(&mut bob, "message").await["text"],
            format!("missed {i}")
        );
    }
    let stream = TcpStream::connect(addr_back).await.unwrap();
    let url = format!("ws://{addr_back}/ws?name=ann&room=green&since={since}");
    let mut back = tokio_tungstenite::client_async(url, stream)
        .await
        .unwrap()
        .0;
    for i in 0..5 {
        let message = next_in_room(&mut back).await;
        assert_eq!(message["type"], "message", "{message}");
        assert_eq!(message["text"], format!("missed {i}"));
    }
    let recovery = next_in_room(&mut back).await;
    assert_eq!(
        recovery,
        serde_json::json!({"type": "recovery", "missed": 5})
    );
    // A position from a history that is no more: told, not replayed.
    let stream = TcpStream::connect(addr_back).await.unwrap();
    let url = format!("ws://{addr_back}/ws?name=ann&room=green&since=3:gone");
    let mut stale = tokio_tungstenite::client_async(url, stream)
        .await
        .unwrap()
        .0;
    let recovery = next_in_room(&mut stale).await;
    assert_eq!(
        recovery,
        serde_json::json!({"type": "recovery", "lost": "EpochChanged"})
    );
}

#[tokio::test]
async fn a_page_back_with_its_position_gets_what_it_missed_on_one_node() {
    let (_chat, addr) = start_chat(&[]).await;
    a_page_back_with_its_position_gets_what_it_missed(&addr, &addr).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_page_back_on_the_other_node_gets_what_it_missed_through_redis() {
    let redis = brokers::RedisServer::start();
    let (_one, addr_one) = start_chat(&["--redis", &redis.url()]).await;
    let (_two, addr_two) = start_chat(&["--redis", &redis.url()]).await;
    a_page_back_with_its_position_gets_what_it_missed(&addr_one, &addr_two).await;
}
