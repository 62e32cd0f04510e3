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
        let message = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            if value["type"] == kind {
                return value;
            }
        }
    }
}

#[tokio::test]
async fn two_users_chat_in_one_room() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(chat_binary())
        .args(["--addr", &addr])
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
    let _ = next_of(&mut ann, "presence").await;
    let mut bob = join(&addr, "bob", "blue").await;
    let presence = next_of(&mut ann, "presence").await;
    assert_eq!(presence["users"], serde_json::json!(["ann", "bob"]));
    let mut eve = join(&addr, "eve", "red").await;
    let _ = next_of(&mut eve, "presence").await;

    ann.send(Message::text("hello bob")).await.unwrap();
    let message = next_of(&mut bob, "message").await;
    assert_eq!(
        message,
        serde_json::json!({"type": "message", "from": "ann", "text": "hello bob"})
    );
    let echo = next_of(&mut ann, "message").await;
    assert_eq!(echo["text"], "hello bob");
    // Another room hears nothing.
    let quiet = tokio::time::timeout(Duration::from_millis(200), eve.next()).await;
    assert!(quiet.is_err(), "{quiet:?}");

    bob.close(None).await.unwrap();
    let presence = next_of(&mut ann, "presence").await;
    assert_eq!(presence["users"], serde_json::json!(["ann"]));

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
