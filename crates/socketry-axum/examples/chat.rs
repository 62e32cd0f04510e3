//! A chat server: a page at `http://127.0.0.1:3000/` and a WebSocket endpoint at `/ws`.
//!
//! ```sh
//! cargo run --example chat            # then open http://127.0.0.1:3000/ in two browser tabs
//! cargo run --example chat -- --addr 127.0.0.1:3001
//! # two nodes sharing rooms through Redis (one page on each port chats with the other):
//! cargo run --example chat --features redis -- --redis redis://127.0.0.1:6379 --addr 127.0.0.1:3001
//! cargo run --example chat --features redis -- --redis redis://127.0.0.1:6379 --addr 127.0.0.1:3002
//! # or through NATS:
//! cargo run --example chat --features nats -- --nats nats://127.0.0.1:4222 --addr 127.0.0.1:3001
//! ```
//!
//! With `--redis` or `--nats`, messages reach the room's members on every node; the presence
//! list and its events are still those of the node the page is on (presence across nodes is
//! next).
//!
//! Users pick a name and a room, see who is present, and every message fans out to the room
//! through a socketry-hub `Hub`: framed once, queued per member under a bound, written by the
//! hub's writer task. A tab that stops reading is disconnected with 3008 when its queue
//! passes 1 MiB, and the others keep chatting. Keepalive pings find dead peers; Ctrl-C
//! closes every connection with 1001 and exits.

use std::time::Duration;

use axum::{Router, response::Html, routing::get};
use serde_json::json;
use socketry::{DeflateConfig, Message, WebSocketConfig};
use socketry_axum::{
    Conn, Controller, Request, Settings, Shutdown, Upgrader,
    hub::{ClientInfo, Hub, HubConfig, PresenceKind, RoomOptions},
};

/// Which broker carries the rooms between nodes, from the command line.
#[cfg_attr(not(all(feature = "redis", feature = "nats")), allow(dead_code))]
enum Cluster {
    None,
    Redis(String),
    Nats(String),
}

/// Every room announces joins and leaves. A member whose queue passes the default 1 MiB (a
/// tab that stopped reading) is disconnected with 3008 and leaves its room.
fn chat_hub(cluster: Cluster) -> Hub {
    let config = HubConfig::default().room_options(|_room| {
        RoomOptions::default().presence_events(|event| {
            let kind = match event.kind {
                PresenceKind::Join => "join",
                PresenceKind::Leave => "leave",
            };
            let (id, user) = (event.conn.to_string(), event.info.user());
            let text = json!({ "type": kind, "id": id, "user": user, "version": event.version });
            Some(Message::text(text.to_string()))
        })
    });
    let builder = Hub::builder().config(config);
    match cluster {
        Cluster::None => builder.build(),
        #[cfg(feature = "redis")]
        Cluster::Redis(url) => {
            let broker = socketry_axum::hub::RedisBroker::builder(url)
                .prefix("chat")
                .build()
                .expect("a valid Redis URL");
            builder.broker(broker).build()
        }
        #[cfg(feature = "nats")]
        Cluster::Nats(url) => {
            let broker = socketry_axum::hub::NatsBroker::builder(url)
                .prefix("chat")
                .build()
                .expect("a tokio runtime");
            builder.broker(broker).build()
        }
        #[allow(unreachable_patterns)]
        Cluster::Redis(_) | Cluster::Nats(_) => {
            panic!("--redis and --nats need the example built with `--features redis` / `nats`")
        }
    }
}

struct ChatController(Hub);

impl Controller for ChatController {
    type Error = Box<dyn std::error::Error + Send + Sync>;

    async fn serve(&self, conn: &mut Conn, request: &Request) -> Result<(), Self::Error> {
        let name: String = request.query_or("name", "guest").chars().take(32).collect();
        let room: String = request.query_or("room", "lobby").chars().take(32).collect();
        let member = conn.attach(&self.0, ClientInfo::new(&name))?;
        member.join(&room)?;
        // With a broker between nodes, the subscription to the room is on its way: wait a
        // moment for it (a node whose broker is away still serves its own members).
        let _ = tokio::time::timeout(Duration::from_secs(2), self.0.subscribed(&room)).await;
        // Who is here, as of which join or leave: the others hear of us through the room's
        // join event, and the page applies only the events newer than this snapshot.
        let snapshot = self.0.local_presence(&room);
        let users: Vec<_> = (snapshot.members.iter())
            .map(|entry| json!({ "id": entry.conn.to_string(), "user": entry.info.user() }))
            .collect();
        let version = snapshot.version;
        let presence =
            json!({ "type": "presence", "room": room, "users": users, "version": version });
        member.send(presence.to_string())?;
        while let Some(message) = conn.recv().await {
            if let Message::Text(text) = message? {
                let text = json!({ "type": "message", "from": name, "text": &*text });
                member.publish(&room, text.to_string())?;
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .iter()
        .position(|a| a == "--addr")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let cluster = match (value("--redis"), value("--nats")) {
        (Some(_), Some(_)) => panic!("--redis or --nats, not both"),
        (Some(url), None) => Cluster::Redis(url),
        (None, Some(url)) => Cluster::Nats(url),
        (None, None) => Cluster::None,
    };
    let shutdown = Shutdown::new();
    let settings = Settings::default().shutdown(shutdown.clone()).config(
        WebSocketConfig::default()
            .keepalive(Some((Duration::from_secs(20), Duration::from_secs(10))))
            .max_message_size(Some(64 * 1024))
            // Browsers offer permessage-deflate; chat text compresses well. Without context
            // takeover on our side, a message is compressed once for the whole room.
            .compression(Some(
                DeflateConfig::default().server_no_context_takeover(true),
            )),
    );
    let chat = Upgrader::new(ChatController(chat_hub(cluster))).settings(settings);
    let app = chat
        .route(Router::new(), "/ws")
        .route("/", get(|| async { Html(include_str!("chat.html")) }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("chat: open http://{}/", listener.local_addr()?);
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.on(ctrl_c, Duration::from_secs(5)))
        .await
}
