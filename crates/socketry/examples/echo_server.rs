//! Echoes every text and binary message, on any path.
//!
//! ```sh
//! cargo run --release --example echo_server -- --addr 127.0.0.1:9001
//! ```
//!
//! The limits are raised to 64 MiB per frame and message so that Autobahn's 16 MiB cases pass.

use socketry::proto::extensions::deflate::DeflateConfig;
use socketry::{Acceptor, Message, WebSocketConfig};
use tokio::net::TcpListener;

/// permessage-deflate is on unless `--no-compression` is given.
fn compression() -> Option<DeflateConfig> {
    (!std::env::args().any(|a| a == "--no-compression")).then(DeflateConfig::default)
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = arg("--addr", "127.0.0.1:9001");
    let listener = TcpListener::bind(&addr).await?;
    println!("echo server listening on ws://{}", listener.local_addr()?);
    let config = WebSocketConfig::default()
        .max_frame_size(Some(64 << 20))
        .max_message_size(Some(64 << 20))
        .compression(compression());
    let acceptor = Acceptor::new().config(config);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let mut ws = match acceptor.accept(stream).await {
                Ok(ws) => ws,
                Err(err) => return eprintln!("handshake failed: {err}"),
            };
            while let Some(message) = ws.recv().await {
                match message {
                    Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                        if ws.send(message).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(err) => eprintln!("connection failed: {err}"),
                }
            }
        });
    }
}
