//! Echo throughput with and without permessage-deflate, on loopback, in one process.
//!
//! ```sh
//! cargo run --release --example compression_throughput -- --messages 20000 --size 4096
//! ```
//!
//! One connection, one message in flight (send, wait for the echo): messages per second and
//! payload MB/s for plain and compressed connections, with the compression ratio of the
//! payload. The payload is JSON-like text that varies from message to message.

use std::time::{Duration, Instant};

use socketry::{
    Acceptor, Connector, Message, WebSocketConfig, proto::extensions::deflate::DeflateConfig,
};
use tokio::net::TcpListener;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().unwrap())
}

fn payload(i: usize, size: usize) -> String {
    let mut s = String::with_capacity(size + 100);
    let mut n = i;
    while s.len() < size {
        n = n.wrapping_mul(2_654_435_761).wrapping_add(97);
        s.push_str(&format!(
            "{{\"id\":{},\"user\":\"user{}\",\"price\":{}.{:02},\"tags\":[\"live\",\"feed\"]}},",
            n % 100_000,
            n % 977,
            n % 1000,
            n % 100
        ));
    }
    s.truncate(size);
    s
}

async fn run(
    compression: Option<DeflateConfig>,
    messages: usize,
    size: usize,
) -> (Duration, usize) {
    let config = WebSocketConfig::default().compression(compression);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut ws = Acceptor::new().config(config).accept(stream).await.unwrap();
        while let Some(Ok(message)) = ws.recv().await {
            if message.is_text() && ws.send(message).await.is_err() {
                break;
            }
        }
    });
    let (mut ws, _) = Connector::new()
        .config(config)
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    let bodies: Vec<String> = (0..64).map(|i| payload(i, size)).collect();
    let started = Instant::now();
    let mut bytes = 0;
    for i in 0..messages {
        let body = &bodies[i % bodies.len()];
        ws.send(Message::text(body.as_str())).await.unwrap();
        let echo = ws.recv().await.unwrap().unwrap();
        bytes += echo.len();
    }
    let elapsed = started.elapsed();
    ws.close(socketry::CloseCode::NORMAL, "").await.unwrap();
    (elapsed, bytes)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let messages = arg("--messages", 20_000);
    let size = arg("--size", 4096);
    let sample = payload(1, size);
    let ratio = {
        let params = socketry::proto::extensions::deflate::negotiate_server(
            ["permessage-deflate"],
            &DeflateConfig::default(),
        )
        .unwrap()
        .0;
        let mut codec = socketry::proto::extensions::deflate::Deflate::new(
            socketry::Role::Server,
            params,
            &DeflateConfig::default(),
        );
        codec.compress(sample.as_bytes()).len() as f64 / sample.len() as f64
    };
    for (name, compression) in [
        ("plain", None),
        (
            "deflate (level 1, context takeover)",
            Some(DeflateConfig::default()),
        ),
        (
            "deflate (no context takeover)",
            Some(
                DeflateConfig::default()
                    .server_no_context_takeover(true)
                    .client_no_context_takeover(true),
            ),
        ),
    ] {
        let (elapsed, bytes) = run(compression, messages, size).await;
        let secs = elapsed.as_secs_f64();
        println!(
            "{name}: {messages} x {size} B echoes in {secs:.2} s: {:.0} msg/s, {:.1} MB/s",
            messages as f64 / secs,
            bytes as f64 / secs / 1e6
        );
    }
    println!("first-message compression ratio at level 1: {:.2}", ratio);
}
