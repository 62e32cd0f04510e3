//! A chat server: a page at `http://127.0.0.1:3000/` and a WebSocket endpoint at `/ws`.
//!
//! ```sh
//! cargo run --example chat            # then open http://127.0.0.1:3000/ in two browser tabs
//! cargo run --example chat -- --addr 127.0.0.1:3001
//! ```
//!
//! Users pick a name and a room, see who is present, and every message fans out to the room
//! as one `PreparedMessage` (framed once). Keepalive pings find dead peers; Ctrl-C closes
//! every connection with 1001 and exits.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, response::Html, routing::get};
use socketry::{DeflateConfig, Message, PreparedMessage, WebSocketConfig};
use socketry_axum::{Conn, Controller, Request, Settings, Shutdown, Upgrader};
use tokio::sync::mpsc;

type Outbox = mpsc::UnboundedSender<Arc<PreparedMessage>>;

/// One user in a room.
struct Member {
    id: u64,
    name: String,
    outbox: Outbox,
}

/// Rooms: who is in each, and where to send them messages.
#[derive(Default)]
struct Chat {
    rooms: Mutex<HashMap<String, Vec<Member>>>,
    next_id: Mutex<u64>,
}

impl Chat {
    fn join(&self, room: &str, name: &str, outbox: Outbox) -> u64 {
        let id = {
            let mut next = self.next_id.lock().unwrap();
            *next += 1;
            *next
        };
        self.rooms
            .lock()
            .unwrap()
            .entry(room.to_owned())
            .or_default()
            .push(Member {
                id,
                name: name.to_owned(),
                outbox,
            });
        self.presence(room);
        id
    }

    fn leave(&self, room: &str, id: u64) {
        if let Some(members) = self.rooms.lock().unwrap().get_mut(room) {
            members.retain(|member| member.id != id);
        }
        self.presence(room);
    }

    fn presence(&self, room: &str) {
        let users: Vec<String> = self
            .members(room)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let text = serde_json::json!({ "type": "presence", "room": room, "users": users });
        self.broadcast(room, &text.to_string());
    }

    fn members(&self, room: &str) -> Vec<(String, Outbox)> {
        self.rooms
            .lock()
            .unwrap()
            .get(room)
            .map(|m| {
                m.iter()
                    .map(|member| (member.name.clone(), member.outbox.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Frames the message once; every member's connection sends the same bytes.
    fn broadcast(&self, room: &str, text: &str) {
        let prepared = Arc::new(PreparedMessage::new(Message::text(text)));
        for (_, outbox) in self.members(room) {
            let _ = outbox.send(prepared.clone());
        }
    }
}

struct ChatController(Arc<Chat>);

impl Controller for ChatController {
    type Error = socketry::Error;

    async fn serve(&self, conn: &mut Conn, request: &Request) -> Result<(), Self::Error> {
        let name: String = request.query_or("name", "guest").chars().take(32).collect();
        let room: String = request.query_or("room", "lobby").chars().take(32).collect();
        let (outbox, mut inbox) = mpsc::unbounded_channel();
        let id = self.0.join(&room, &name, outbox);
        let result = async {
            loop {
                tokio::select! {
                    message = conn.recv() => match message {
                        Some(Ok(Message::Text(text))) => {
                            let text = serde_json::json!({ "type": "message", "from": name, "text": &*text });
                            self.0.broadcast(&room, &text.to_string());
                        }
                        Some(Ok(_)) => {}
                        Some(Err(err)) => return Err(err),
                        None => return Ok(()),
                    },
                    Some(prepared) = inbox.recv() => conn.send_prepared(&prepared).await?,
                }
            }
        }
        .await;
        self.0.leave(&room, id);
        result
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
    let shutdown = Shutdown::new();
    let settings = Settings::default().shutdown(shutdown.clone()).config(
        WebSocketConfig::default()
            .keepalive(Some((Duration::from_secs(20), Duration::from_secs(10))))
            .max_message_size(Some(64 * 1024))
            // Browsers offer permessage-deflate; chat text compresses well.
            .compression(Some(DeflateConfig::default())),
    );
    let chat = Upgrader::new(ChatController(Arc::default())).settings(settings);
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
