//! The socketry-hub server of the fan-out benchmark.
//!
//! ```text
//! hub_server ADDR [--threads N] [--redis URL | --nats URL]
//! ```
//!
//! With `--redis` (feature `redis`) or `--nats` (feature `nats`), the hub shares its room with
//! the other hub_servers on that broker (the cross-node benchmark).
//!
//! A connection to `/sub` joins the room `bench`; one to `/pub` does not. Every text or
//! binary message any connection sends is published to the room (every member gets it, the
//! sender too if it is one): Bun's `server.publish`, Socket.IO's `io.to(room).emit`, the
//! `clients.forEach(send)` loop of Node `ws`. The messages one read of a connection brought
//! go out as one `Hub::publish_batch` (one pass over the room's members). `--threads 1` (the default) runs a
//! current-thread runtime: the server uses one core, as Bun's and Node's do.

use futures_util::FutureExt;
use socketry::Message;
use socketry_hub::{ClientInfo, Hub};
use tokio::net::TcpListener;

const ROOM: &str = "bench";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .ok_or("usage: hub_server ADDR [--threads N]")?
        .clone();
    let threads: usize = args
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(1), |n| n.parse())?;
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
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let broker = (value("--redis"), value("--nats"));
    runtime.block_on(serve(addr, broker))
}

/// The hub, on the broker the command line names.
fn hub(broker: (Option<String>, Option<String>)) -> Result<Hub, Box<dyn std::error::Error>> {
    match broker {
        #[cfg(feature = "redis")]
        (Some(url), None) => Ok(Hub::builder()
            .broker(
                socketry_hub::RedisBroker::builder(url)
                    .prefix("bench")
                    .build()?,
            )
            .build()),
        #[cfg(feature = "nats")]
        (None, Some(url)) => Ok(Hub::builder()
            .broker(
                socketry_hub::NatsBroker::builder(url)
                    .prefix("bench")
                    .build()?,
            )
            .build()),
        (None, None) => Ok(Hub::default()),
        _ => Err("--redis or --nats (built with that feature), not both".into()),
    }
}

async fn serve(
    addr: String,
    broker: (Option<String>, Option<String>),
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(&addr).await?;
    let hub = hub(broker)?;
    let acceptor = socketry::Acceptor::new();
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let hub = hub.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok((ws, request)) = acceptor.accept_with_request(tcp).await else {
                return;
            };
            let (mut reader, writer) = ws.split();
            let member = hub.attach(writer, ClientInfo::default());
            if request.uri().path() != "/pub" && member.join(ROOM).is_err() {
                return;
            }
            // What one read brought is published as one batch (one pass over the room), as
            // uWebSockets drains a topic once per event-loop iteration.
            let mut batch = Vec::new();
            let mut open = true;
            while open {
                match reader.recv().await {
                    Some(Ok(message)) => batch.push(message),
                    _ => break,
                }
                while batch.len() < 64 {
                    match reader.recv().now_or_never() {
                        Some(Some(Ok(message))) => batch.push(message),
                        Some(_) => {
                            open = false;
                            break;
                        }
                        None => break, // nothing more buffered: the recv is cancel-safe
                    }
                }
                batch.retain(|m| matches!(m, Message::Text(_) | Message::Binary(_)));
                let _ = hub.publish_batch(ROOM, batch.drain(..));
            }
        });
    }
}
