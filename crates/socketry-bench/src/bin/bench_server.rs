//! Echo servers for the benchmarks, one binary, the same tokio setup for every implementation.
//!
//! ```text
//! bench_server IMPL ADDR [--threads N] [--compression] [--compression-window BITS]
//!              [--exit-after CONNECTIONS]
//! IMPL: socketry | socketry-owned | socketry-axum | tungstenite | fastwebsockets | axum | tcp
//!     | socketry-listener | socketry-axum-serve
//! ```
//!
//! `socketry` echoes through the borrowing receive (`WebSocket::recv_with`: a small message is
//! lent where it lies in the read buffer, its reply copied into the write queue);
//! `socketry-owned` through the owned one (`recv` and `feed` of a `Message`). The socketry-axum
//! servers echo through `Conn::recv_with`.
//!
//! `socketry-listener` (socketry's `Listener`) and `socketry-axum-serve`
//! (`socketry_axum::serve`) take WebSockets over HTTP/1.1 and over cleartext HTTP/2 on the
//! same port: the HTTP/2 benchmark (`scripts/h2_bench.sh`) compares the two transports on them.
//!
//! Every server echoes each text or binary message whole, written the way each library's own
//! examples write an echo loop. `--threads 1` (the default) runs a current-thread runtime, so
//! the server uses one core and the load generator the other. `--exit-after N` exits once N
//! connections ended (for instruction counting under callgrind, which reports at exit).

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicUsize, Ordering},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Copy)]
struct Options {
    compression: bool,
    /// socketry's compression window (`DeflateConfig::compression_window_bits`).
    compression_window: Option<u8>,
    exit_after: usize,
}

static ENDED: AtomicUsize = AtomicUsize::new(0);

/// Made once a connection is upgraded; when it drops, the connection counts as ended, and the
/// process exits after the last one asked for (connections that never upgraded, such as a
/// script's port probe, do not count).
struct Upgraded(Options);

impl Drop for Upgraded {
    fn drop(&mut self) {
        let ended = ENDED.fetch_add(1, Ordering::SeqCst) + 1;
        if self.0.exit_after > 0 && ended >= self.0.exit_after {
            std::process::exit(0);
        }
    }
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: bench_server IMPL ADDR [--threads N] [--compression] \
                 [--compression-window BITS] [--exit-after N]";
    let (Some(implementation), Some(addr)) = (args.get(1).cloned(), args.get(2).cloned()) else {
        return Err(usage.into());
    };
    let flag = |name: &str| args.iter().position(|a| a == name);
    let value = |name: &str| flag(name).and_then(|i| args.get(i + 1)).map(String::as_str);
    let threads: usize = value("--threads").unwrap_or("1").parse()?;
    let options = Options {
        compression: flag("--compression").is_some(),
        compression_window: value("--compression-window").map(str::parse).transpose()?,
        exit_after: value("--exit-after").unwrap_or("0").parse()?,
    };
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        let addr: SocketAddr = addr.parse()?;
        let listener = TcpListener::bind(addr).await?;
        eprintln!("bench_server: {implementation} on {addr}");
        match implementation.as_str() {
            "socketry-axum" => serve_socketry_axum(listener, options).await,
            "socketry-axum-serve" => serve_socketry_axum_h2(listener, options).await,
            "socketry-listener" => serve_socketry_listener(listener, options).await,
            "axum" => serve_axum(listener, options).await,
            "fastwebsockets" => accept_loop(listener, options, fastwebsockets_connection).await,
            "socketry" => accept_loop(listener, options, socketry_lending_connection).await,
            "socketry-owned" => accept_loop(listener, options, socketry_connection).await,
            "tungstenite" => accept_loop(listener, options, tungstenite_connection).await,
            "tcp" => accept_loop(listener, options, tcp_connection).await,
            other => Err(format!("unknown implementation {other}; {usage}").into()),
        }
    })
}

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    options: Options,
    serve: F,
) -> Result<(), BoxError>
where
    F: Fn(TcpStream, Options) -> Fut,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let connection = serve(stream, options);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

/// The limit of the machine: bytes back as they come, no WebSocket framing (after a canned
/// 101 so that the same load generator drives it; it echoes the client's masked frames, which
/// the load generator parses like any other).
async fn tcp_connection(mut stream: TcpStream, options: Options) -> Result<(), BoxError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = 0;
    while !buf[..head].windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf[head..]).await?;
        if n == 0 {
            return Ok(());
        }
        head += n;
    }
    stream
        .write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        )
        .await?;
    let _upgraded = Upgraded(options);
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

fn socketry_config(options: Options) -> socketry::WebSocketConfig {
    socketry::WebSocketConfig::default().compression(options.compression.then(|| {
        let config = socketry::DeflateConfig::default();
        match options.compression_window {
            Some(bits) => config.compression_window_bits(bits),
            None => config,
        }
    }))
}

/// socketry's owned echo: `feed` queues the reply and the next `recv` writes everything queued
/// once it has no complete message left to hand out, so pipelined messages are answered
/// with one write.
async fn socketry_connection(stream: TcpStream, options: Options) -> Result<(), BoxError> {
    let mut ws = socketry::Acceptor::new()
        .config(socketry_config(options))
        .accept(stream)
        .await?;
    let _upgraded = Upgraded(options);
    while let Some(message) = ws.recv().await {
        let message = message?;
        if message.is_text() || message.is_binary() {
            ws.feed(message).await?;
        }
    }
    Ok(())
}

/// socketry's borrowing echo: `recv_with` lends a small message where it lies in the read
/// buffer and its reply is copied straight into the write queue.
// The reply closure is written out here and in the socketry-axum servers: one shared `fn`
// given to all three was not inlined into their loops (+65 instructions per 20 B echo, +60
// per pipelined one).
async fn socketry_lending_connection(stream: TcpStream, options: Options) -> Result<(), BoxError> {
    let mut ws = socketry::Acceptor::new()
        .config(socketry_config(options))
        .accept(stream)
        .await?;
    let _upgraded = Upgraded(options);
    while let Some(echoed) = ws
        .recv_with(|message, replies| {
            if message.is_text() || message.is_binary() {
                replies.feed(message)
            } else {
                Ok(())
            }
        })
        .await
    {
        echoed??;
    }
    Ok(())
}

/// axum's listener with `TCP_NODELAY` on every accepted socket, as the other servers have.
fn nodelay(listener: TcpListener) -> impl axum::serve::Listener<Addr = SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    })
}

async fn serve_socketry_axum(listener: TcpListener, options: Options) -> Result<(), BoxError> {
    let echo = socketry_axum::handler_fn(move |conn, _request| {
        Box::pin(async move {
            let _upgraded = Upgraded(options);
            while let Some(echoed) = conn
                .recv_with(|message, replies| {
                    if message.is_text() || message.is_binary() {
                        replies.feed(message)
                    } else {
                        Ok(())
                    }
                })
                .await
            {
                echoed??;
            }
            Ok::<(), socketry::Error>(())
        })
    });
    let settings = socketry_axum::Settings::default().config(socketry_config(options));
    let app = socketry_axum::Upgrader::new(echo)
        .settings(settings)
        .route(axum::Router::new(), "/");
    axum::serve(nodelay(listener), app).await?;
    Ok(())
}

/// The socketry-axum echo through `socketry_axum::serve` (HTTP/1.1 and HTTP/2).
async fn serve_socketry_axum_h2(listener: TcpListener, options: Options) -> Result<(), BoxError> {
    let echo = socketry_axum::handler_fn(move |conn, _request| {
        Box::pin(async move {
            let _upgraded = Upgraded(options);
            while let Some(echoed) = conn
                .recv_with(|message, replies| {
                    if message.is_text() || message.is_binary() {
                        replies.feed(message)
                    } else {
                        Ok(())
                    }
                })
                .await
            {
                echoed??;
            }
            Ok::<(), socketry::Error>(())
        })
    });
    let settings = socketry_axum::Settings::default().config(socketry_config(options));
    let app = socketry_axum::Upgrader::new(echo)
        .settings(settings)
        .route(axum::Router::new(), "/");
    socketry_axum::serve(listener, app).await?;
    Ok(())
}

/// socketry's `Listener`: HTTP/1.1 and cleartext HTTP/2, the same echo loop as `socketry`.
async fn serve_socketry_listener(listener: TcpListener, options: Options) -> Result<(), BoxError> {
    let acceptor = socketry::Acceptor::new().config(socketry_config(options));
    let mut incoming = socketry::Listener::new(acceptor)
        .http2(socketry::Http2Config::new())
        .serve(listener);
    while let Some((mut ws, _request)) = incoming.accept().await {
        tokio::spawn(async move {
            let _upgraded = Upgraded(options);
            while let Some(Ok(message)) = ws.recv().await {
                if (message.is_text() || message.is_binary()) && ws.feed(message).await.is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

async fn serve_axum(listener: TcpListener, options: Options) -> Result<(), BoxError> {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move |upgrade: WebSocketUpgrade| async move {
            upgrade.on_upgrade(move |mut socket| async move {
                let _upgraded = Upgraded(options);
                while let Some(Ok(message)) = socket.recv().await {
                    if matches!(message, Message::Text(_) | Message::Binary(_))
                        && socket.send(message).await.is_err()
                    {
                        break;
                    }
                }
            })
        }),
    );
    axum::serve(nodelay(listener), app).await?;
    Ok(())
}

async fn tungstenite_connection(stream: TcpStream, options: Options) -> Result<(), BoxError> {
    use futures_util::{SinkExt, StreamExt};
    let mut ws = tokio_tungstenite::accept_async(stream).await?;
    let _upgraded = Upgraded(options);
    while let Some(message) = ws.next().await {
        let message = message?;
        if message.is_text() || message.is_binary() {
            ws.send(message).await?;
        }
    }
    Ok(())
}

async fn fastwebsockets_connection(stream: TcpStream, options: Options) -> Result<(), BoxError> {
    use hyper::{Request, body::Incoming, server::conn::http1, service::service_fn};
    let service = service_fn(move |mut request: Request<Incoming>| async move {
        let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut request)?;
        tokio::spawn(async move {
            if let Ok(ws) = upgrade.await {
                let _upgraded = Upgraded(options);
                let _ = fastwebsockets_echo(ws).await;
            }
        });
        Ok::<_, fastwebsockets::WebSocketError>(response)
    });
    http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .with_upgrades()
        .await?;
    Ok(())
}

async fn fastwebsockets_echo<S>(ws: fastwebsockets::WebSocket<S>) -> Result<(), BoxError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use fastwebsockets::{FragmentCollector, OpCode};
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}
