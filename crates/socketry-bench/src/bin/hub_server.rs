//! The socketry-hub server of the fan-out benchmark.
//!
//! ```text
//! hub_server ADDR [--threads N]
//! ```
//!
//! A connection to `/sub` joins the room `bench`; one to `/pub` does not. Every text or
//! binary message any connection sends is published to the room (every member gets it, the
//! sender too if it is one): Bun's `server.publish`, Socket.IO's `io.to(room).emit`, the
//! `clients.forEach(send)` loop of Node `ws`. `--threads 1` (the default) runs a
//! current-thread runtime: the server uses one core, as Bun's and Node's do.

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
    runtime.block_on(serve(addr))
}

async fn serve(addr: String) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(&addr).await?;
    let hub = Hub::default();
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
            while let Some(Ok(message)) = reader.recv().await {
                if matches!(message, Message::Text(_) | Message::Binary(_)) {
                    let _ = hub.publish(ROOM, message);
                }
            }
        });
    }
}
