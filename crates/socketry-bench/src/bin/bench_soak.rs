//! The soak client: N concurrent connections (tokio-tungstenite, a client nobody here wrote)
//! echoing sequence-numbered messages for a fixed time; every reply must carry the number just
//! sent, so a lost, duplicated or reordered message is an error. Prints a progress line every
//! 5 s and one JSON line at the end; exits 1 on any error.
//!
//! ```text
//! bench_soak ws://HOST:PORT/ --connections 10000 --duration 60 [--size 64]
//! ```

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Default)]
struct Counters {
    messages: AtomicU64,
    errors: AtomicU64,
    connected: AtomicU64,
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let url = args
        .get(1)
        .ok_or("usage: bench_soak URL [options]")?
        .clone();
    let connections: usize = value("--connections").unwrap_or("10000").parse()?;
    let duration = Duration::from_secs_f64(value("--duration").unwrap_or("60").parse()?);
    let size: usize = value("--size").unwrap_or("64").parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(soak(url, connections, duration, size))
}

async fn soak(
    url: String,
    connections: usize,
    duration: Duration,
    size: usize,
) -> Result<(), BoxError> {
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(connections);
    for id in 0..connections {
        let url = url.clone();
        let counters = counters.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(err) = connection(id, &url, size, deadline, &counters).await
                && counters.errors.fetch_add(1, Ordering::Relaxed) < 5
            {
                eprintln!("bench_soak: connection {id}: {err}");
            }
        }));
        // Open connections at a steady pace rather than all in one burst.
        if id % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let progress = {
        let counters = counters.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                println!(
                    "progress t={:.0}s connected={} messages={} errors={}",
                    started.elapsed().as_secs_f64(),
                    counters.connected.load(Ordering::Relaxed),
                    counters.messages.load(Ordering::Relaxed),
                    counters.errors.load(Ordering::Relaxed),
                );
            }
        })
    };
    for task in tasks {
        task.await?;
    }
    progress.abort();
    let messages = counters.messages.load(Ordering::Relaxed);
    let errors = counters.errors.load(Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"connections\":{connections},\"seconds\":{seconds:.1},\"messages\":{messages},\"msgs_per_s\":{:.0},\"errors\":{errors}}}",
        messages as f64 / seconds
    );
    if errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}

async fn connection(
    id: usize,
    url: &str,
    size: usize,
    deadline: Instant,
    counters: &Counters,
) -> Result<(), BoxError> {
    let host = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or("only ws:// URLs")?;
    let stream = tokio::net::TcpStream::connect(host).await?;
    stream.set_nodelay(true)?;
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await?;
    counters.connected.fetch_add(1, Ordering::Relaxed);
    let padding = "p".repeat(size.saturating_sub(24));
    let mut seq = 0u64;
    while Instant::now() < deadline {
        let text = format!("{id}:{seq}:{padding}");
        ws.send(Message::text(text.clone())).await?;
        match ws.next().await {
            Some(Ok(Message::Text(reply))) if reply.as_str() == text => {}
            Some(Ok(other)) => return Err(format!("seq {seq}: got {other:?}").into()),
            Some(Err(err)) => return Err(format!("seq {seq}: {err}").into()),
            None => return Err(format!("seq {seq}: connection ended").into()),
        }
        seq += 1;
        counters.messages.fetch_add(1, Ordering::Relaxed);
        // About one message per connection per 100 ms: 10,000 connections make ~100,000/s.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ws.close(None).await?;
    Ok(())
}
