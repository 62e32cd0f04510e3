//! The interop check of socketry's client against an echo server written by somebody else
//! (Python `websockets`, Node `ws`): text and binary at the length boundaries up to 16 MiB, a
//! fragmented message with a ping between its fragments, ping/pong, that compression was (or
//! was not) negotiated, and the close code echoed back.
//!
//! ```sh
//! cargo run --release --example interop_client -- ws://127.0.0.1:9122/ deflate|none
//! ```
//!
//! Exits 0 and prints one line when every check passed; exits 1 at the first mismatch.

use std::{process::ExitCode, time::Duration};

use socketry::{
    Bytes, CloseCode, CloseFrame, Connector, DeflateConfig, Message, OpCode, WebSocket,
    WebSocketConfig,
};

const SIZES: [usize; 9] = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20, 16 << 20];

type Ws = WebSocket<socketry::MaybeTlsStream>;

fn text_of(n: usize) -> String {
    let mut s: String = "aé€".repeat(n / 6 + 1);
    while s.len() > n {
        s.pop();
    }
    s
}

/// The next data message or pong, skipping nothing else silently.
async fn next(ws: &mut Ws) -> Result<Message, String> {
    match tokio::time::timeout(Duration::from_secs(30), ws.recv()).await {
        Err(_) => Err("timed out waiting for a message".into()),
        Ok(None) => Err("the server ended the connection".into()),
        Ok(Some(Err(err))) => Err(format!("receive failed: {err}")),
        Ok(Some(Ok(message))) => Ok(message),
    }
}

async fn check(url: &str, deflate: bool) -> Result<(), String> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
        .compression(deflate.then(DeflateConfig::default));
    let (mut ws, _) = Connector::new()
        .config(config)
        .connect(url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if ws.compression().is_some() != deflate {
        return Err(format!(
            "compression negotiated: {}",
            ws.compression().is_some()
        ));
    }
    let send = |e: socketry::Error| format!("send failed: {e}");
    for n in SIZES {
        let text = text_of(n);
        ws.send(text.as_str()).await.map_err(send)?;
        if next(&mut ws).await? != Message::text(text) {
            return Err(format!("text of {n} bytes came back different"));
        }
        let binary: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        ws.send(Message::binary(binary.clone()))
            .await
            .map_err(send)?;
        if next(&mut ws).await? != Message::binary(binary) {
            return Err(format!("binary of {n} bytes came back different"));
        }
    }
    // Fragments with a ping between them: the pong comes first, then the whole message.
    ws.send_frame(OpCode::Text, Bytes::from_static(b"frag"), false)
        .await
        .map_err(send)?;
    ws.send(Message::Ping(Bytes::from_static(b"between")))
        .await
        .map_err(send)?;
    ws.send_frame(OpCode::Continuation, Bytes::from_static(b"mented "), false)
        .await
        .map_err(send)?;
    ws.send_frame(OpCode::Continuation, Bytes::from("ünïcode"), true)
        .await
        .map_err(send)?;
    if next(&mut ws).await? != Message::Pong(Bytes::from_static(b"between")) {
        return Err("no pong for the ping between fragments".into());
    }
    if next(&mut ws).await? != Message::text("fragmented ünïcode") {
        return Err("the fragmented message came back different".into());
    }
    ws.send(Message::Close(Some(CloseFrame::new(
        CloseCode::from(4000),
        "done",
    ))))
    .await
    .map_err(send)?;
    match next(&mut ws).await? {
        Message::Close(Some(frame)) if u16::from(frame.code) == 4000 => Ok(()),
        other => Err(format!("expected the close code 4000 back, got {other:?}")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(mode)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: interop_client URL deflate|none");
        return ExitCode::FAILURE;
    };
    match check(url, mode == "deflate").await {
        Ok(()) => {
            println!("socketry client vs {url} ({mode}): ok");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("socketry client vs {url} ({mode}): {err}");
            ExitCode::FAILURE
        }
    }
}
