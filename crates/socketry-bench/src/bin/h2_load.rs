//! The load generator of the HTTP/2 benchmark: N WebSockets through socketry's own client,
//! over HTTP/1.1 (one connection each) or HTTP/2 (streams sharing connections, RFC 8441), each
//! with K messages of S bytes in flight; prints one JSON line as `bench_load` does.
//!
//! ```text
//! h2_load ws://HOST:PORT/ [--http2] --connections N --size BYTES [--inflight K] [--duration SECS]
//! h2_load ws://HOST:PORT/ [--http2] --idle N --hold SECS
//! ```
//!
//! Both transports go through the same client code, so the difference between the two runs
//! is the transport's. With `--http2` the client speaks HTTP/2 with prior knowledge and opens
//! as many connections as the server's stream limit requires (128 sockets each by default).

use std::time::{Duration, Instant};

use socketry::{Connector, Http2, MaybeTlsStream, Message, WebSocket};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let url = args
        .get(1)
        .ok_or("usage: h2_load ws://HOST:PORT/PATH [options]")?
        .clone();
    let mode = if flag("--http2") {
        Http2::PriorKnowledge
    } else {
        Http2::Never
    };
    let connector = Connector::new().http2(mode);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Some(idle) = value("--idle") {
        let hold = Duration::from_secs_f64(value("--hold").unwrap_or("5").parse()?);
        return runtime.block_on(async move {
            let count: usize = idle.parse()?;
            let sockets = open(&connector, &url, count, mode).await?;
            println!("ready {count}");
            tokio::time::sleep(hold).await;
            drop(sockets);
            Ok(())
        });
    }
    let connections: usize = value("--connections").unwrap_or("1").parse()?;
    let size: usize = value("--size").unwrap_or("20").parse()?;
    let inflight: usize = value("--inflight").unwrap_or("1").parse()?;
    let duration = Duration::from_secs_f64(value("--duration").unwrap_or("3").parse()?);
    runtime.block_on(async move {
        let sockets = open(&connector, &url, connections, mode).await?;
        let payload = Message::binary(vec![0x5au8; size]);
        let deadline = Instant::now() + duration;
        let tasks: Vec<_> = sockets
            .into_iter()
            .map(|ws| tokio::spawn(drive(ws, payload.clone(), inflight, deadline)))
            .collect();
        let (mut messages, mut rtts, mut errors) = (0u64, Vec::new(), 0usize);
        for task in tasks {
            match task.await? {
                Ok((count, mut samples)) => {
                    messages += count;
                    rtts.append(&mut samples);
                }
                Err(err) => {
                    errors += 1;
                    eprintln!("h2_load: {err}");
                }
            }
        }
        rtts.sort_unstable();
        let percentile = |p: f64| {
            rtts.get(((rtts.len() as f64 * p) as usize).min(rtts.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        let rate = messages as f64 / duration.as_secs_f64();
        println!(
            "{{\"connections\":{connections},\"size\":{size},\"inflight\":{inflight},\"http2\":{},\"messages\":{messages},\"seconds\":{:.3},\"msgs_per_s\":{rate:.1},\"mb_per_s\":{:.2},\"p50_us\":{},\"p99_us\":{},\"errors\":{errors}}}",
            mode != Http2::Never,
            duration.as_secs_f64(),
            rate * size as f64 / 1e6,
            percentile(0.5),
            percentile(0.99),
        );
        if errors > 0 {
            std::process::exit(1);
        }
        Ok(())
    })
}

/// Opens `count` sockets, checking each went over the transport asked for.
async fn open(
    connector: &Connector,
    url: &str,
    count: usize,
    mode: Http2,
) -> Result<Vec<WebSocket<MaybeTlsStream>>, BoxError> {
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let (ws, _) = connector.connect(url).await?;
        if ws.get_ref().is_http2() != (mode != Http2::Never) {
            return Err("the socket did not use the transport asked for".into());
        }
        sockets.push(ws);
    }
    Ok(sockets)
}

/// Sends K messages, reads K echoes, and again until the deadline; returns the messages
/// echoed and one round-trip time (µs) per batch.
async fn drive(
    mut ws: WebSocket<MaybeTlsStream>,
    payload: Message,
    inflight: usize,
    deadline: Instant,
) -> Result<(u64, Vec<u32>), BoxError> {
    let (mut messages, mut rtts) = (0u64, Vec::new());
    while Instant::now() < deadline {
        let sent = Instant::now();
        for _ in 0..inflight {
            ws.feed(payload.clone()).await?;
        }
        ws.flush().await?;
        for _ in 0..inflight {
            match ws.recv().await {
                Some(Ok(message)) if message.len() == payload.len() => {}
                Some(Ok(other)) => return Err(format!("unexpected {other:?}").into()),
                Some(Err(err)) => return Err(err.into()),
                None => return Err("the server closed".into()),
            }
        }
        if Instant::now() <= deadline {
            messages += inflight as u64;
            rtts.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        }
    }
    ws.close(socketry::CloseCode::NORMAL, "").await?;
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while ws.recv().await.is_some() {}
    })
    .await;
    Ok((messages, rtts))
}
