//! The load generator of the fan-out benchmark: lean raw WebSocket clients on one thread.
//!
//! ```text
//! fanout_load HOST:PORT --proto plain|socketio --shape fanout|all --clients N --size BYTES
//!             [--window W] [--duration SECS] [--warmup SECS] [--server-pid PID] [--label NAME]
//!             [--remote HOST:PORT [--remote-pid PID]]
//! ```
//!
//! With `--remote` (the cross-node shape), N more subscribers connect to the second node;
//! the publisher stays on the first, and a message is done when both nodes' subscribers got
//! it. Deliveries and latency are then also reported for the remote subscribers alone.
//!
//! - `fanout`: N subscribers (`/sub`) and one publisher (`/pub`); the publisher keeps W
//!   messages in flight (a message is done when N deliveries more have arrived).
//! - `all`: uWebSockets' `broadcast_test`: N clients in the room, each sends a message and
//!   waits for N messages (its round) before sending the next.
//!
//! Each message carries its send time; receivers sample publish-to-delivery latency. Prints
//! one JSON line: deliveries per second, the server's CPU per delivery (from
//! `/proc/PID/stat`), this process's CPU per delivery, latency p50 and p99.
//!
//! Frames are parsed by hand and sent with a zero mask key, so that the generator costs
//! little per delivery (it must cost well under the server, or the figures measure it).

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Notify,
};

type BoxError = Box<dyn std::error::Error>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    Plain,
    SocketIo,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    FanOut,
    AllToAll,
}

#[derive(Clone, Debug)]
struct Options {
    addr: SocketAddr,
    proto: Proto,
    shape: Shape,
    clients: usize,
    size: usize,
    window: u64,
    duration: Duration,
    warmup: Duration,
    server_pid: Option<u32>,
    label: String,
    remote: Option<SocketAddr>,
    remote_pid: Option<u32>,
}

/// Counters shared by the tasks of the one thread.
struct Shared {
    start: Instant,
    delivered: Cell<u64>,
    /// Sample latencies once set (the measured interval).
    measuring: Cell<bool>,
    samples: RefCell<Vec<u32>>,
    /// Deliveries to and latency samples of the remote node's subscribers.
    remote_delivered: Cell<u64>,
    remote_samples: RefCell<Vec<u32>>,
    /// Messages the fan-out publisher sent, all told.
    published: Cell<u64>,
    /// The publisher waits until `delivered` reaches this.
    wake_at: Cell<u64>,
    progress: Notify,
    stop: Cell<bool>,
}

const SAMPLE_EVERY: u64 = 8;

fn main() -> Result<(), BoxError> {
    let options = parse_args()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run(options))
}

fn parse_args() -> Result<Options, BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let addr = args
        .get(1)
        .ok_or("usage: fanout_load HOST:PORT ...")?
        .parse()?;
    let proto = match value("--proto").as_deref() {
        Some("socketio") => Proto::SocketIo,
        _ => Proto::Plain,
    };
    let shape = match value("--shape").as_deref() {
        Some("all") => Shape::AllToAll,
        _ => Shape::FanOut,
    };
    Ok(Options {
        addr,
        proto,
        shape,
        clients: value("--clients").map_or(Ok(100), |v| v.parse())?,
        size: value("--size").map_or(Ok(64), |v| v.parse())?,
        window: value("--window").map_or(Ok(16), |v| v.parse())?,
        duration: Duration::from_secs_f64(value("--duration").map_or(Ok(3.0), |v| v.parse())?),
        warmup: Duration::from_secs_f64(value("--warmup").map_or(Ok(0.5), |v| v.parse())?),
        server_pid: value("--server-pid").map(|v| v.parse()).transpose()?,
        label: value("--label").unwrap_or_else(|| "server".to_owned()),
        remote: value("--remote").map(|v| v.parse()).transpose()?,
        remote_pid: value("--remote-pid").map(|v| v.parse()).transpose()?,
    })
}

async fn run(options: Options) -> Result<(), BoxError> {
    let shared = Rc::new(Shared {
        start: Instant::now(),
        delivered: Cell::new(0),
        measuring: Cell::new(false),
        samples: RefCell::new(Vec::new()),
        remote_delivered: Cell::new(0),
        remote_samples: RefCell::new(Vec::new()),
        published: Cell::new(1),
        wake_at: Cell::new(u64::MAX),
        progress: Notify::new(),
        stop: Cell::new(false),
    });
    let nodes = 1 + u64::from(options.remote.is_some());
    let n = options.clients as u64 * nodes;
    let mut conns = Vec::with_capacity(options.clients);
    for _ in 0..options.clients {
        conns.push(Conn::open(&options, "/sub").await?);
    }
    let mut remote = Vec::new();
    if let Some(addr) = options.remote {
        for _ in 0..options.clients {
            let mut conn = Conn::open_at(&options, addr, "/sub").await?;
            conn.remote = true;
            remote.push(conn);
        }
    }
    match options.shape {
        Shape::FanOut => {
            let publisher = Conn::open(&options, "/pub").await?;
            for conn in conns.into_iter().chain(remote) {
                tokio::task::spawn_local(receive(conn, shared.clone(), None));
            }
            // Every subscriber got a first message: all are in the room.
            let mut publisher = publisher;
            publisher.send_numbered(&options, &shared).await?;
            wait_for(&shared, n).await;
            let options2 = options.clone();
            let shared2 = shared.clone();
            tokio::task::spawn_local(async move {
                let _ = publish(publisher, &options2, &shared2).await;
            });
        }
        Shape::AllToAll => {
            for conn in conns {
                tokio::task::spawn_local(receive(conn, shared.clone(), Some((options.clone(), n))));
            }
        }
    }
    tokio::time::sleep(options.warmup).await;
    let (delivered0, server0, own0) = (
        shared.delivered.get(),
        cpu_ticks(options.server_pid),
        cpu_ticks(None),
    );
    let (remote0, remote_cpu0) = (shared.remote_delivered.get(), cpu_ticks(options.remote_pid));
    let t0 = Instant::now();
    shared.measuring.set(true);
    tokio::time::sleep(options.duration).await;
    shared.measuring.set(false);
    let elapsed = t0.elapsed().as_secs_f64();
    let (delivered1, server1, own1) = (
        shared.delivered.get(),
        cpu_ticks(options.server_pid),
        cpu_ticks(None),
    );
    let (remote1, remote_cpu1) = (shared.remote_delivered.get(), cpu_ticks(options.remote_pid));
    shared.stop.set(true);
    let deliveries = (delivered1 - delivered0) as f64;
    let tick = 1.0 / clock_ticks_per_second();
    let per_delivery_us =
        |ticks: Option<u64>| ticks.map(|t| t as f64 * tick * 1e6 / deliveries.max(1.0));
    let mut samples = shared.samples.take();
    samples.sort_unstable();
    let pct = |p: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    let server_us = per_delivery_us(server0.zip(server1).map(|(a, b)| b - a));
    let own_us = per_delivery_us(own0.zip(own1).map(|(a, b)| b - a));
    let mut remote_samples = shared.remote_samples.take();
    remote_samples.sort_unstable();
    let remote_pct = |p: f64| {
        remote_samples
            .get(((remote_samples.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    let remote = if options.remote.is_some() {
        let remote_cpu_us = remote_cpu0
            .zip(remote_cpu1)
            .map(|(a, b)| (b - a) as f64 * tick * 1e6 / ((remote1 - remote0) as f64).max(1.0));
        format!(
            ",\"nodes\":2,\"published\":{},\"remote_deliveries_per_s\":{:.0},\"remote_server_us_per_delivery\":{},\"remote_p50_us\":{},\"remote_p99_us\":{}",
            shared.published.get(),
            (remote1 - remote0) as f64 / elapsed,
            remote_cpu_us.map_or_else(|| "null".to_owned(), |v| format!("{v:.3}")),
            remote_pct(0.5),
            remote_pct(0.99),
        )
    } else {
        String::new()
    };
    println!(
        "{{\"kind\":\"fanout\",\"server\":\"{}\",\"shape\":\"{}\",\"clients\":{},\"size\":{},\"window\":{},\
         \"deliveries_per_s\":{:.0},\"server_us_per_delivery\":{},\"load_us_per_delivery\":{},\"p50_us\":{},\"p99_us\":{},\"samples\":{}{}}}",
        options.label,
        if options.shape == Shape::FanOut {
            "fanout"
        } else {
            "all"
        },
        options.clients,
        options.size,
        if options.shape == Shape::FanOut {
            options.window
        } else {
            1
        },
        deliveries / elapsed,
        server_us.map_or_else(|| "null".to_owned(), |v| format!("{v:.3}")),
        own_us.map_or_else(|| "null".to_owned(), |v| format!("{v:.3}")),
        pct(0.5),
        pct(0.99),
        samples.len(),
        remote,
    );
    Ok(())
}

async fn wait_for(shared: &Shared, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while shared.delivered.get() < count {
        shared.wake_at.set(count);
        let _ = tokio::time::timeout(Duration::from_millis(50), shared.progress.notified()).await;
        assert!(Instant::now() < deadline, "the room never filled");
    }
}

/// The publisher of the fan-out shape: at most `window` messages not yet delivered to all.
async fn publish(mut conn: Conn, options: &Options, shared: &Shared) -> Result<(), BoxError> {
    let n = options.clients as u64 * (1 + u64::from(options.remote.is_some()));
    let mut sent: u64 = 1; // the first message went out before the run
    while !shared.stop.get() {
        while sent < shared.delivered.get() / n + options.window {
            conn.send_numbered(options, shared).await?;
            sent += 1;
            shared.published.set(sent);
        }
        shared.wake_at.set((sent + 1 - options.window) * n);
        let _ = tokio::time::timeout(Duration::from_millis(100), shared.progress.notified()).await;
    }
    Ok(())
}

/// Reads one connection's messages until the run ends. With `round`, this is an all-to-all
/// client: it sends a message, then waits for N messages, again and again.
async fn receive(mut conn: Conn, shared: Rc<Shared>, round: Option<(Options, u64)>) {
    let mut pending_round = 0u64;
    if let Some((options, n)) = &round {
        if conn.send_numbered(options, &shared).await.is_err() {
            return;
        }
        pending_round = *n;
    }
    let mut counted: u64 = 0;
    while !shared.stop.get() {
        let Ok(messages) = conn.read_messages(&shared, &mut counted).await else {
            return;
        };
        if messages == 0 {
            continue;
        }
        let total = shared.delivered.get() + messages;
        shared.delivered.set(total);
        if conn.remote {
            shared
                .remote_delivered
                .set(shared.remote_delivered.get() + messages);
        }
        if total >= shared.wake_at.get() {
            shared.progress.notify_one();
        }
        if let Some((options, n)) = &round {
            let mut got = messages;
            while got >= pending_round {
                got -= pending_round;
                pending_round = *n;
                if conn.send_numbered(options, &shared).await.is_err() {
                    return;
                }
            }
            pending_round -= got;
        }
    }
}

struct Conn {
    tcp: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    proto: Proto,
    out: Vec<u8>,
    /// A subscriber of the remote node.
    remote: bool,
}

impl Conn {
    async fn open(options: &Options, path: &str) -> Result<Self, BoxError> {
        Self::open_at(options, options.addr, path).await
    }

    async fn open_at(options: &Options, addr: SocketAddr, path: &str) -> Result<Self, BoxError> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let target = match options.proto {
            Proto::Plain => path.to_owned(),
            Proto::SocketIo => format!("/socket.io/?EIO=4&transport=websocket&role={}", &path[1..]),
        };
        let mut conn = Self {
            tcp,
            buf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
            proto: options.proto,
            out: Vec::with_capacity(options.size + 32),
            remote: false,
        };
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            addr
        );
        conn.tcp.write_all(request.as_bytes()).await?;
        loop {
            let n = conn.tcp.read(&mut conn.buf[conn.end..]).await?;
            if n == 0 {
                return Err("closed during the handshake".into());
            }
            conn.end += n;
            if let Some(pos) = conn.buf[..conn.end]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
            {
                if !conn.buf.starts_with(b"HTTP/1.1 101") {
                    return Err(String::from_utf8_lossy(&conn.buf[..conn.end])
                        .into_owned()
                        .into());
                }
                conn.start = pos + 4;
                break;
            }
        }
        if conn.proto == Proto::SocketIo {
            // Engine.IO open packet, then the namespace connect and its answer.
            conn.expect_packet(b'0').await?;
            conn.send_frame(b"40").await?;
            conn.expect_packet(b'4').await?;
        }
        Ok(conn)
    }

    async fn expect_packet(&mut self, first: u8) -> Result<(), BoxError> {
        loop {
            if let Some((payload, next)) = parse_frame(&self.buf[self.start..self.end]) {
                let ok = self.buf[self.start + payload.start] == first;
                self.start += next;
                if ok {
                    return Ok(());
                }
                continue;
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<(), BoxError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.tcp.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err("closed".into());
        }
        self.end += n;
        Ok(())
    }

    /// Reads once and counts the whole messages now buffered; samples latency.
    async fn read_messages(&mut self, shared: &Shared, counted: &mut u64) -> Result<u64, BoxError> {
        self.fill().await?;
        let mut messages = 0;
        let mut pong = false;
        while let Some((payload, next)) = parse_frame(&self.buf[self.start..self.end]) {
            let body = &self.buf[self.start + payload.start..self.start + payload.end];
            if self.proto == Proto::SocketIo && body == b"2" {
                pong = true; // Engine.IO ping
            } else {
                *counted += 1;
                messages += 1;
                if shared.measuring.get()
                    && counted.is_multiple_of(SAMPLE_EVERY)
                    && let Some(sent) = sent_at(body)
                {
                    let now = shared.start.elapsed().as_micros() as u64;
                    let samples = if self.remote {
                        &shared.remote_samples
                    } else {
                        &shared.samples
                    };
                    samples.borrow_mut().push(now.saturating_sub(sent) as u32);
                }
            }
            self.start += next;
        }
        if pong {
            self.send_frame(b"3").await?;
        }
        Ok(messages)
    }

    /// Sends a message of the configured size that starts with its send time.
    async fn send_numbered(&mut self, options: &Options, shared: &Shared) -> Result<(), BoxError> {
        let now = shared.start.elapsed().as_micros();
        let mut text = format!("T{now},");
        text.extend(std::iter::repeat_n(
            'x',
            options.size.saturating_sub(text.len()),
        ));
        let payload = match self.proto {
            Proto::Plain => text,
            Proto::SocketIo => format!("42[\"m\",\"{text}\"]"),
        };
        self.send_frame(payload.as_bytes()).await
    }

    async fn send_frame(&mut self, payload: &[u8]) -> Result<(), BoxError> {
        self.out.clear();
        self.out.push(0x81);
        match payload.len() {
            len @ 0..=125 => self.out.push(0x80 | len as u8),
            len @ 126..=65535 => {
                self.out.push(0x80 | 126);
                self.out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                self.out.push(0x80 | 127);
                self.out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        self.out.extend_from_slice(&[0, 0, 0, 0]); // a zero mask: the payload goes as it is
        self.out.extend_from_slice(payload);
        self.tcp.write_all(&self.out).await?;
        Ok(())
    }
}

/// The payload range and the length of the first whole (unmasked) frame in `buf`.
fn parse_frame(buf: &[u8]) -> Option<(std::ops::Range<usize>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        len => (len as usize, 2),
    };
    (buf.len() >= header + len).then_some((header..header + len, header + len))
}

/// The send time a message carries (`T<micros>,` anywhere near its start).
fn sent_at(body: &[u8]) -> Option<u64> {
    let t = body.iter().take(16).position(|&b| b == b'T')?;
    let digits = body[t + 1..].iter().take_while(|b| b.is_ascii_digit());
    let mut value = 0u64;
    for &d in digits {
        value = value * 10 + u64::from(d - b'0');
    }
    Some(value)
}

/// utime + stime of a process (this one for `None`), in clock ticks.
fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |pid| format!("/proc/{pid}/stat"),
    );
    let stat = std::fs::read_to_string(path).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // Fields 14 and 15 of stat(5); after the name, they are the 12th and 13th.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_second() -> f64 {
    100.0 // USER_HZ on Linux
}
