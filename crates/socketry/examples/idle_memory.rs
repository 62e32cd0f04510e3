//! Measures the memory an idle server connection costs.
//!
//! ```sh
//! cargo run --release --example idle_memory -- --connections 10000
//! cargo run --release --example idle_memory -- --connections 1000 --compression default
//! ```
//!
//! `--compression MODE` (`default`, `window12`, `client15`, `level6`, `window9`, `no-context`) turns
//! permessage-deflate on in the server and in the clients, and each client exchanges
//! `--messages K` (100) different messages of about 1.1 KB before going quiet: enough to fill
//! both windows and the compressor's history (1.5 windows), as a connection that has run for a
//! while has them (a connection that never
//! sent or received a compressed message holds no compression state at all).
//!
//! Starts a socketry server in a child process (each connection handled by a task waiting in
//! `recv`, as in a real server), reads the child's resident set (VmRSS), opens N connections
//! from this process (raw handshakes, then silence), reads VmRSS again, and prints the growth
//! divided by N. Kernel socket buffers are not part of RSS.

use std::time::Duration;

use socketry::{
    Acceptor, Connector, Message, WebSocket, WebSocketConfig,
    proto::extensions::deflate::DeflateConfig,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

fn compression() -> Option<DeflateConfig> {
    match arg("--compression").as_deref() {
        None => None,
        Some("default") => Some(DeflateConfig::default()),
        Some("window12") => Some(DeflateConfig::default().compression_window_bits(12)),
        Some("client15") => Some(DeflateConfig::default().client_max_window_bits(15)),
        Some("level6") => Some(DeflateConfig::default().level(6)),
        Some("window9") => Some(
            DeflateConfig::default()
                .server_max_window_bits(9)
                .client_max_window_bits(9),
        ),
        Some("no-context") => Some(
            DeflateConfig::default()
                .server_no_context_takeover(true)
                .client_no_context_takeover(true),
        ),
        Some(other) => panic!("unknown compression mode {other}"),
    }
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default().compression(compression())
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn serve() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let Ok(mut ws) = Acceptor::new().config(config()).accept(stream).await else {
                return;
            };
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_text() || message.is_binary() {
                    let _ = ws.send(message).await;
                }
            }
        });
    }
}

/// A client connection held open and never read: only its existence matters.
#[allow(dead_code)] // the fields are never read, only kept alive
enum Idle {
    Raw(TcpStream),
    Ws(Box<WebSocket<socketry::MaybeTlsStream>>),
}

/// A compressing client that exchanges one message, then idles.
async fn open_compressed(addr: &str) -> Idle {
    let (mut ws, _) = Connector::new()
        .config(config())
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    let messages: usize = arg("--messages").map_or(100, |v| v.parse().unwrap());
    for k in 0..messages {
        let text: String = (0..20)
            .map(|i| {
                format!(
                    "{{\"event\":\"tick\",\"value\":{},\"tags\":[\"a{k}\",\"b\"]}} ",
                    k * 7919 + i * 104_729 % 100_000
                )
            })
            .collect();
        ws.send(Message::text(text)).await.unwrap();
        ws.recv().await.unwrap().unwrap();
    }
    Idle::Ws(Box::new(ws))
}

async fn open(addr: &str) -> Idle {
    if compression().is_some() {
        return open_compressed(addr).await;
    }
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "server closed");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    Idle::Raw(stream)
}

#[tokio::main]
async fn main() {
    if arg("--serve").is_some() || std::env::args().any(|a| a == "--serve") {
        serve().await.unwrap();
        return;
    }
    let n: usize = arg("--connections").map_or(10_000, |v| v.parse().unwrap());
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .args(
            arg("--compression")
                .map(|mode| ["--compression".to_owned(), mode])
                .into_iter()
                .flatten(),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut addr = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut addr,
    )
    .unwrap();
    let addr = addr.trim().to_owned();

    // Warm up: the runtime's threads and the allocator's first arenas are not per connection.
    let mut warm = Vec::new();
    for _ in 0..100 {
        warm.push(open(&addr).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        idle.push(open(&addr).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before) as f64 * 1024.0) / n as f64;
    let mode = arg("--compression").unwrap_or_else(|| "off".to_owned());
    println!(
        "socketry idle connections (compression {mode}): {n}; server VmRSS {before} KiB -> {after} KiB; {per:.0} bytes ({:.2} KiB) per connection",
        per / 1024.0
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
