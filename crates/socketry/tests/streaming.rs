//! Streaming one message through `MessageWriter` (AsyncWrite) and `MessageReader` (AsyncRead):
//! 100 MiB each way with memory bounded by the buffer sizes.

mod support;

use socketry::{Acceptor, Message, OpCode, WebSocketConfig};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOTAL: usize = 100 << 20;
const CHUNK: usize = 64 * 1024;

/// The process's resident set, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// A checksum that depends on every byte and its position.
fn fold(sum: u64, data: &[u8]) -> u64 {
    data.iter()
        .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)))
}

fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 253) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_message_streams_both_ways_in_bounded_memory() {
    let config = WebSocketConfig::default().max_message_size(None);
    let addr = serve(move |stream| async move {
        let mut ws = Acceptor::new().config(config).accept(stream).await.unwrap();
        // Read the client's message frame by frame, then stream one back.
        let mut reader = ws.next_reader().await.unwrap().unwrap();
        assert_eq!(reader.kind(), OpCode::Binary);
        let mut sum = 0u64;
        let mut total = 0usize;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = reader.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            sum = fold(sum, &buf[..n]);
            total += n;
        }
        drop(reader);
        ws.send(format!("{total} {sum}")).await.unwrap();
        let mut writer = ws.message_writer(OpCode::Binary);
        let mut sent = 0;
        while sent < TOTAL {
            writer.write_all(&pattern(sent, CHUNK)).await.unwrap();
            sent += CHUNK;
        }
        writer.shutdown().await.unwrap();
        drop(writer);
        while ws.recv().await.is_some() {}
    })
    .await;

    let before = rss();
    let mut peak = before;
    let (mut ws, _) = socketry::Connector::new()
        .config(config)
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    let mut expected = 0u64;
    {
        let mut writer = ws.message_writer(OpCode::Binary);
        let mut sent = 0;
        while sent < TOTAL {
            let chunk = pattern(sent, CHUNK);
            expected = fold(expected, &chunk);
            writer.write_all(&chunk).await.unwrap();
            sent += CHUNK;
            peak = peak.max(rss());
        }
        writer.shutdown().await.unwrap();
    }
    let report = bounded(ws.recv()).await.unwrap().unwrap();
    assert_eq!(report, Message::text(format!("{TOTAL} {expected}")));

    let mut reader = bounded(ws.next_reader()).await.unwrap().unwrap();
    let mut sum = 0u64;
    let mut total = 0usize;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = bounded(reader.read(&mut buf)).await.unwrap();
        if n == 0 {
            break;
        }
        sum = fold(sum, &buf[..n]);
        total += n;
        peak = peak.max(rss());
    }
    drop(reader);
    assert_eq!(total, TOTAL);
    assert_eq!(sum, expected);
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 32 << 20,
        "memory grew by {} MiB for 2 x 100 MiB",
        growth >> 20
    );
    bounded(ws.close(socketry::CloseCode::NORMAL, ""))
        .await
        .unwrap();
}

#[tokio::test]
async fn dropping_a_reader_mid_message_skips_to_the_next_message() {
    let addr = serve(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let mut writer = ws.message_writer_with(OpCode::Text, 5);
        writer
            .write_all("first message, long".as_bytes())
            .await
            .unwrap();
        writer.shutdown().await.unwrap();
        drop(writer);
        ws.send("second").await.unwrap();
        while ws.recv().await.is_some() {}
    })
    .await;
    let (mut ws, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    {
        let mut reader = bounded(ws.next_reader()).await.unwrap().unwrap();
        assert!(reader.is_text());
        let mut head = [0u8; 5];
        reader.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"first");
    }
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("second")
    );
}

#[tokio::test]
async fn a_text_writer_refuses_invalid_utf8() {
    let addr = socketry_echo_server().await;
    let (mut ws, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    let mut writer = ws.message_writer(OpCode::Text);
    writer.write_all("ok ".as_bytes()).await.unwrap();
    let err = writer.write_all(&[0xff]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    writer.shutdown().await.unwrap();
    drop(writer);
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("ok ")
    );
}

#[tokio::test]
async fn a_message_writer_interoperates_with_tungstenite() {
    use futures_util::StreamExt;
    let addr = serve(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let mut writer = ws.message_writer_with(OpCode::Text, 1000);
        for _ in 0..100 {
            writer.write_all("ünïcödé ".as_bytes()).await.unwrap();
        }
        writer.shutdown().await.unwrap();
        drop(writer);
        while ws.recv().await.is_some() {}
    })
    .await;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut t, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), stream)
        .await
        .unwrap();
    let message = bounded(t.next()).await.unwrap().unwrap();
    assert_eq!(
        message.into_text().unwrap().as_str(),
        "ünïcödé ".repeat(100)
    );
}
