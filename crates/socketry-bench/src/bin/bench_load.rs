//! The load generator: N connections, each with K messages of S bytes in flight, for a fixed
//! time or a fixed number of messages; prints one JSON line of results.
//!
//! ```text
//! bench_load ws://HOST:PORT/ --connections N --size BYTES [--inflight K]
//!            [--duration SECS | --messages PER_CONNECTION] [--text] [--compression]
//!            [--barrier DIR] [--rtts FILE]
//! bench_load ws://HOST:PORT/ --idle N --hold SECS
//! ```
//!
//! Its own cost is low and the same for every server: a handshake written by hand, frames
//! built and masked once before the run (the same bytes are sent again and again), replies
//! parsed for their headers only, payloads skipped in the read buffer. With `--compression`
//! it offers permessage-deflate with `client_no_context_takeover`, so one message compressed
//! before the run is valid every time; replies are counted, not inflated.
//!
//! `--barrier DIR` starts the measured run only once every connection is open and the file
//! `DIR/go` exists (announcing readiness with `DIR/ready.PID`), so that several load processes
//! measure the same window; `--rtts` writes every round trip (µs, little-endian `u32`) to a
//! file for merging their percentiles. `scripts/bench.sh` uses both to spread more
//! connections than one process may open over several.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use flate2::{Compress, Compression, FlushCompress};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

#[path = "../shared/payload.rs"]
mod shared_payload;
use shared_payload::payload;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
struct Options {
    addr: SocketAddr,
    path: String,
    connections: usize,
    size: usize,
    inflight: usize,
    duration: Duration,
    messages: Option<u64>,
    text: bool,
    compression: bool,
    barrier: Option<std::path::PathBuf>,
    rtts: Option<String>,
}

struct Outcome {
    messages: u64,
    rtts_us: Vec<u32>,
    error: Option<String>,
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name);
    let value = |name: &str| flag(name).and_then(|i| args.get(i + 1)).map(String::as_str);
    let url = args
        .get(1)
        .ok_or("usage: bench_load ws://HOST:PORT/PATH [options]")?;
    let rest = url.strip_prefix("ws://").ok_or("only ws:// URLs")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr: SocketAddr = host.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Some(idle) = value("--idle") {
        let hold = Duration::from_secs_f64(value("--hold").unwrap_or("5").parse()?);
        return runtime.block_on(idle_connections(
            addr,
            format!("/{path}"),
            idle.parse()?,
            hold,
        ));
    }
    let options = Options {
        addr,
        path: format!("/{path}"),
        connections: value("--connections").unwrap_or("1").parse()?,
        size: value("--size").unwrap_or("20").parse()?,
        inflight: value("--inflight").unwrap_or("1").parse()?,
        duration: Duration::from_secs_f64(value("--duration").unwrap_or("3").parse()?),
        messages: value("--messages").map(str::parse).transpose()?,
        text: flag("--text").is_some() || flag("--compression").is_some(),
        compression: flag("--compression").is_some(),
        barrier: value("--barrier").map(Into::into),
        rtts: value("--rtts").map(str::to_owned),
    };
    runtime.block_on(run(options))
}

async fn run(options: Options) -> Result<(), BoxError> {
    let payload = payload(options.size, options.text);
    let mut streams = Vec::with_capacity(options.connections);
    // The window the servers allowed our compressor (`client_max_window_bits`): the batch is
    // compressed once, within the narrowest.
    let mut window_bits = 15;
    for index in 0..options.connections {
        let stream = connect(options.addr, index, options.connections).await?;
        let (stream, leftover, bits) =
            handshake(stream, options.addr, &options.path, options.compression).await?;
        window_bits = window_bits.min(bits);
        streams.push((stream, leftover));
    }
    let batch = batch(&payload, &options, window_bits);
    if let Some(dir) = &options.barrier {
        barrier(dir).await?;
    }
    let started = Instant::now();
    let deadline = started + options.duration;
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|(stream, leftover)| {
            let batch = batch.clone();
            let options = options.clone();
            let expected = (!options.compression).then(|| payload.clone());
            tokio::spawn(drive(stream, leftover, batch, options, deadline, expected))
        })
        .collect();
    let mut messages = 0u64;
    let mut rtts = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        let outcome = task.await?;
        messages += outcome.messages;
        rtts.extend(outcome.rtts_us);
        errors.extend(outcome.error);
    }
    let seconds = if options.messages.is_some() {
        started.elapsed().as_secs_f64()
    } else {
        options.duration.as_secs_f64()
    };
    if let Some(path) = &options.rtts {
        let bytes: Vec<u8> = rtts.iter().flat_map(|rtt| rtt.to_le_bytes()).collect();
        std::fs::write(path, bytes)?;
    }
    rtts.sort_unstable();
    let percentile = |p: f64| {
        rtts.get(((rtts.len() as f64 * p) as usize).min(rtts.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let rate = messages as f64 / seconds;
    println!(
        "{{\"connections\":{},\"size\":{},\"inflight\":{},\"compression\":{},\"messages\":{},\"seconds\":{:.3},\"msgs_per_s\":{:.1},\"mb_per_s\":{:.2},\"p50_us\":{},\"p99_us\":{},\"errors\":{}}}",
        options.connections,
        options.size,
        options.inflight,
        options.compression,
        messages,
        seconds,
        rate,
        rate * options.size as f64 / 1e6,
        percentile(0.5),
        percentile(0.99),
        errors.len(),
    );
    if let Some(first) = errors.first() {
        eprintln!(
            "bench_load: {} connection(s) failed, first: {first}",
            errors.len()
        );
        std::process::exit(1);
    }
    Ok(())
}

/// Says this process is ready (`DIR/ready.PID`) and waits for `DIR/go`, for at most ten
/// minutes.
async fn barrier(dir: &std::path::Path) -> Result<(), BoxError> {
    std::fs::write(dir.join(format!("ready.{}", std::process::id())), b"")?;
    let go = dir.join("go");
    let give_up = Instant::now() + Duration::from_secs(600);
    while !go.exists() {
        if Instant::now() >= give_up {
            return Err("the barrier's go file never appeared".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// K masked frames, built once.
fn batch(payload: &[u8], options: &Options, window_bits: u8) -> Vec<u8> {
    let (body, rsv1) = if options.compression {
        // zlib cannot compress with 8 bits; 9 is what a peer that allows 9 can decode too.
        let mut compress =
            Compress::new_with_window_bits(Compression::new(1), false, window_bits.max(9));
        let mut out = Vec::with_capacity(payload.len() + 64);
        compress
            .compress_vec(payload, &mut out, FlushCompress::Sync)
            .expect("deflate");
        while out.len() == out.capacity() {
            out.reserve(out.len());
            compress
                .compress_vec(&[], &mut out, FlushCompress::Sync)
                .expect("deflate");
        }
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        (out, true)
    } else {
        (payload.to_vec(), false)
    };
    let opcode = if options.text { 0x1 } else { 0x2 };
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode | if rsv1 { 0x40 } else { 0 }];
    match body.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(body.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame.repeat(options.inflight)
}

/// Loopback connections past this many to one port are spread over several source addresses:
/// one source has about 28,000 ephemeral ports.
const PER_SOURCE: usize = 20_000;

/// Connection `index` of `total` to `addr`.
async fn connect(addr: SocketAddr, index: usize, total: usize) -> Result<TcpStream, BoxError> {
    let stream = match addr {
        SocketAddr::V4(v4) if total > PER_SOURCE && v4.ip().is_loopback() => {
            // Sources 127.0.0.2, 127.0.0.3, ...; SO_REUSEADDR lets `bind` take a port still in
            // TIME_WAIT from an earlier run (the connection's 4-tuple is new: another server
            // port, or the kernel refuses it at `connect`).
            let sources = total.div_ceil(PER_SOURCE);
            let source = std::net::Ipv4Addr::new(127, 0, 0, 2 + (index % sources) as u8);
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::from((source, 0)))?;
            socket.connect(addr).await?
        }
        _ => TcpStream::connect(addr).await?,
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn handshake(
    mut stream: TcpStream,
    addr: SocketAddr,
    path: &str,
    compression: bool,
) -> Result<(TcpStream, Vec<u8>, u8), BoxError> {
    let extensions = if compression {
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; client_max_window_bits\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > 16 * 1024 || stream.read_buf(&mut buf).await? == 0 {
            return Err("no handshake response".into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 101") {
        return Err(format!("handshake refused: {head}").into());
    }
    if compression && !head.contains("permessage-deflate") {
        return Err("the server did not accept permessage-deflate".into());
    }
    let window_bits = head
        .split("client_max_window_bits=")
        .nth(1)
        .and_then(|rest| rest.trim_start_matches('"').get(..2))
        .map(|v| v.trim_end_matches(|c: char| !c.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    Ok((stream, buf.split_off(end), window_bits))
}

/// Parses frame headers in `buf[at..]`; returns (fin, opcode, header length, payload length).
fn frame_header(buf: &[u8]) -> Option<(bool, u8, usize, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let masked = b1 & 0x80 != 0;
    let (len, mut header) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    if masked {
        header += 4;
    }
    (buf.len() >= header).then_some((b0 & 0x80 != 0, b0 & 0x0f, header, len))
}

async fn drive(
    mut stream: TcpStream,
    leftover: Vec<u8>,
    batch: Vec<u8>,
    options: Options,
    deadline: Instant,
    expected: Option<Vec<u8>>,
) -> Outcome {
    let mut outcome = Outcome {
        messages: 0,
        rtts_us: Vec::new(),
        error: None,
    };
    let capacity = (options.size + 16).clamp(64 * 1024, 1 << 20);
    let mut buf = Vec::with_capacity(capacity);
    buf.extend_from_slice(&leftover);
    // Payload bytes of the current frame still to skip, and whether it ends a message.
    let mut skip = 0usize;
    let mut skip_ends_message = false;
    let mut verify = expected;
    let mut first = true;
    loop {
        let done = match options.messages {
            Some(limit) => outcome.messages >= limit,
            None => Instant::now() >= deadline,
        };
        if done {
            break;
        }
        let sent = Instant::now();
        if let Err(err) = stream.write_all(&batch).await {
            outcome.error = Some(format!("write: {err}"));
            return outcome;
        }
        let mut received = 0usize;
        while received < options.inflight {
            // Consume what the buffer holds.
            let mut at = 0usize;
            loop {
                if skip > 0 {
                    let take = skip.min(buf.len() - at);
                    at += take;
                    skip -= take;
                    if skip > 0 {
                        break;
                    }
                    if skip_ends_message {
                        received += 1;
                    }
                    continue;
                }
                let Some((fin, opcode, header, len)) = frame_header(&buf[at..]) else {
                    break;
                };
                if opcode == 0x8 {
                    outcome.error = Some("the server closed the connection".into());
                    return outcome;
                }
                if let Some(expected) = verify.as_ref()
                    && buf.len() - at >= header + len
                {
                    let payload = &buf[at + header..at + header + len];
                    // The TCP echo returns our masked frames: unmask with their key.
                    let key = (buf[at + 1] & 0x80 != 0).then(|| &buf[at + header - 4..at + header]);
                    let same = payload.len() == expected.len()
                        && payload
                            .iter()
                            .zip(expected)
                            .enumerate()
                            .all(|(i, (got, want))| got ^ key.map_or(0, |k| k[i % 4]) == *want);
                    if !same {
                        outcome.error = Some("the echo differs from the message sent".into());
                        return outcome;
                    }
                    verify = None;
                }
                at += header;
                skip = len;
                skip_ends_message = fin && opcode < 0x8;
                if len == 0 {
                    if skip_ends_message {
                        received += 1;
                    }
                    skip_ends_message = false;
                }
            }
            buf.drain(..at);
            if received >= options.inflight {
                break;
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(capacity);
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) => {
                    outcome.error = Some("the server ended the connection".into());
                    return outcome;
                }
                Ok(_) => {}
                Err(err) => {
                    outcome.error = Some(format!("read: {err}"));
                    return outcome;
                }
            }
        }
        let rtt = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
        if options.messages.is_some() || Instant::now() <= deadline {
            outcome.messages += options.inflight as u64;
        }
        // Every round trip that started in the window has its latency counted, also one that
        // ended after it: dropping those would drop the slowest (with 50,000 connections a
        // round trip is a good part of the window). The first of each connection is left out:
        // it measures every connection's first message arriving at once.
        if !std::mem::take(&mut first) {
            outcome.rtts_us.push(rtt);
        }
    }
    // A close frame (masked, 1000), then the socket is dropped.
    let _ = stream
        .write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8])
        .await;
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        let mut scratch = [0u8; 4096];
        while matches!(stream.read(&mut scratch).await, Ok(n) if n > 0) {}
    })
    .await;
    outcome
}

/// Opens N connections, completes their handshakes, prints `ready N`, and holds them.
async fn idle_connections(
    addr: SocketAddr,
    path: String,
    count: usize,
    hold: Duration,
) -> Result<(), BoxError> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let stream = connect(addr, streams.len(), count).await?;
        let (stream, leftover, _) = handshake(stream, addr, &path, false).await?;
        streams.push((stream, leftover));
    }
    println!("ready {count}");
    tokio::time::sleep(hold).await;
    drop(streams);
    Ok(())
}
