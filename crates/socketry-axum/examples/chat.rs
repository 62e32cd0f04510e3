//! A chat server: a page at `http://127.0.0.1:3000/` and a WebSocket endpoint at `/ws`.
//!
//! ```sh
//! cargo run --example chat            # then open http://127.0.0.1:3000/ in two browser tabs
//! cargo run --example chat -- --addr 127.0.0.1:3001
//! # two nodes sharing rooms through Redis (one page on each port chats with the other):
//! cargo run --example chat --features redis -- --redis redis://127.0.0.1:6379 --addr 127.0.0.1:3001
//! cargo run --example chat --features redis -- --redis redis://127.0.0.1:6379 --addr 127.0.0.1:3002
//! # or messages through NATS, presence in Redis:
//! cargo run --example chat --features redis,nats -- --nats nats://127.0.0.1:4222 \
//!     --redis redis://127.0.0.1:6379 --addr 127.0.0.1:3001
//! # https:// and wss:// from the process, HTTP/2 included (the browser's WebSocket then is a
//! # stream of the page's connection, RFC 8441):
//! cargo run --example chat --features tls -- --tls cert.pem key.pem --addr 127.0.0.1:3443
//! # (a self-signed pair for a try: openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
//! #    -nodes -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
//! #    -keyout key.pem -out cert.pem -days 30)
//! ```
//!
//! `--log-requests` prints one line per HTTP request (method, path, HTTP version, the peer's
//! address): on HTTP/2 the page's `GET /` and its WebSocket's `CONNECT /ws` share the peer.
//!
//! With `--redis`, messages reach the room's members on every node and the presence list
//! shows every node's members (kept in Redis under a lease: a node that dies leaves the list
//! within `--presence-ttl` seconds, 60 by default). With `--nats` alone, messages cross
//! nodes and presence is the node's own.
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
    hub::{ClientInfo, History, Hub, HubConfig, PresenceKind, Recovery, RoomOptions},
};

/// What the nodes share, from the command line: the broker that carries the rooms between
/// them, and where presence lives.
#[derive(Default)]
#[cfg_attr(not(all(feature = "redis", feature = "nats")), allow(dead_code))]
struct Cluster {
    redis: Option<String>,
    nats: Option<String>,
    presence_ttl: Option<Duration>,
}

/// Every room announces joins and leaves. A member whose queue passes the default 1 MiB (a
/// tab that stopped reading) is disconnected with 3008 and leaves its room.
fn chat_hub(cluster: Cluster) -> Hub {
    let config = HubConfig::default().room_options(|_room| {
        RoomOptions::default()
            // The last 100 messages of each room, for pages that reconnect: each message
            // gets its position (`"pos"`), which the page sends back as `?since=`.
            .history(
                History::new(|position, message| {
                    let json = String::from_utf8_lossy(message.as_payload());
                    let rest = json.strip_prefix('{').unwrap_or("}");
                    let comma = if rest.starts_with('}') { "" } else { "," };
                    Message::text(format!("{{\"pos\":\"{position}\"{comma}{rest}"))
                })
                .max_len(100),
            )
            .presence_events(|event| {
                let kind = match event.kind {
                    PresenceKind::Join => "join",
                    PresenceKind::Leave => "leave",
                };
                let (id, user) = (event.conn.to_string(), event.info.user());
                let text =
                    json!({ "type": kind, "id": id, "user": user, "version": event.version });
                Some(Message::text(text.to_string()))
            })
    });
    let builder = Hub::builder().config(config);
    match (cluster.nats, cluster.redis) {
        (None, None) => builder.build(),
        #[cfg(feature = "nats")]
        (Some(url), redis) => {
            let broker = socketry_axum::hub::NatsBroker::builder(url)
                .prefix("chat")
                .build()
                .expect("a tokio runtime");
            let builder = builder.broker(broker);
            match redis {
                Some(url) => builder
                    .presence(redis_presence(url, cluster.presence_ttl))
                    .build(),
                None => builder.build(),
            }
        }
        #[cfg(feature = "redis")]
        (None, Some(url)) => {
            let broker = socketry_axum::hub::RedisBroker::builder(&url)
                .prefix("chat")
                .build()
                .expect("a valid Redis URL");
            let presence = redis_presence(url, cluster.presence_ttl);
            builder.broker(broker).presence(presence).build()
        }
        #[allow(unreachable_patterns)]
        _ => panic!("--redis and --nats need the example built with `--features redis` / `nats`"),
    }
}

#[cfg(feature = "redis")]
fn redis_presence(url: String, ttl: Option<Duration>) -> socketry_axum::hub::RedisPresence {
    let mut builder = socketry_axum::hub::RedisPresence::builder(url).prefix("chat");
    if let Some(ttl) = ttl {
        builder = builder.ttl(ttl).refresh_interval(ttl / 3);
    }
    builder.build().expect("a valid Redis URL")
}

#[cfg(all(feature = "nats", not(feature = "redis")))]
fn redis_presence(_: String, _: Option<Duration>) -> socketry_axum::hub::LocalPresence {
    panic!("--redis needs the example built with `--features redis`")
}

struct ChatController(Hub);

impl Controller for ChatController {
    type Error = Box<dyn std::error::Error + Send + Sync>;

    async fn serve(&self, conn: &mut Conn, request: &Request) -> Result<(), Self::Error> {
        let name: String = request.query_or("name", "guest").chars().take(32).collect();
        let room: String = request.query_or("room", "lobby").chars().take(32).collect();
        let member = conn.attach(&self.0, ClientInfo::new(&name))?;
        // A page that reconnects sends the last position it saw (`?since=`): what it missed
        // comes first, in order, then the live messages. (This also waits, a moment at
        // most, for the broker's subscription to the room.)
        let recovery = match member.join_since(&room, request.since()).await? {
            Recovery::Recovered { missed } => json!({ "type": "recovery", "missed": missed }),
            Recovery::Lost { reason, .. } => {
                json!({ "type": "recovery", "lost": format!("{reason:?}") })
            }
            _ => json!({ "type": "recovery" }),
        };
        member.send(recovery.to_string())?;
        // With a broker between nodes, a fresh join's subscription may still be on its way:
        // a moment for it, so that the presence read below misses no event.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.0.subscribed(&room)).await;
        // Who is here, on every node (this node's alone if the presence store is away). Each
        // entry has a version: the page keeps, per connection, the newest it has seen, from
        // here or from join and leave events, so the order they come in does not matter.
        let members = match self.0.presence(&room).await {
            Ok(members) => members,
            Err(_) => self.0.local_members(&room),
        };
        let users: Vec<_> = (members.iter())
            .map(|entry| {
                let (id, user) = (entry.conn.to_string(), entry.info.user());
                json!({ "id": id, "user": user, "version": entry.version })
            })
            .collect();
        let presence = json!({ "type": "presence", "room": room, "users": users });
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

/// Serves HTTP/1.1 and HTTP/2 (with TLS when asked), through socketry-axum's server.
#[cfg(feature = "http2")]
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<(String, String)>,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server = socketry_axum::serve(listener, app).with_graceful_shutdown(signal);
    match tls {
        #[cfg(feature = "tls")]
        Some((cert, key)) => {
            let config = socketry::tls::server_config_from_pem_files(cert, key)
                .unwrap_or_else(|err| panic!("--tls: {err}"));
            server.tls(config).await
        }
        #[cfg(not(feature = "tls"))]
        Some(_) => panic!("--tls needs the example built with `--features tls`"),
        None => server.await,
    }
}

/// Serves HTTP/1.1 through `axum::serve` (socketry-axum built without `http2`).
#[cfg(not(feature = "http2"))]
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<(String, String)>,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    assert!(
        tls.is_none(),
        "--tls needs the example built with `--features tls`"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await
}

/// Prints the request's method, path, HTTP version and peer (`--log-requests`).
async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "?".to_owned(), |info| info.0.to_string());
    println!(
        "request {} {} {:?} peer={peer}",
        request.method(),
        request.uri().path(),
        request.version()
    );
    next.run(request).await
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
    let cluster = Cluster {
        redis: value("--redis"),
        nats: value("--nats"),
        presence_ttl: value("--presence-ttl").map(|secs| {
            let secs: f64 = secs.parse().expect("--presence-ttl SECONDS");
            Duration::try_from_secs_f64(secs).expect("--presence-ttl: a positive number")
        }),
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
    let hub = chat_hub(cluster);
    let chat = Upgrader::new(ChatController(hub.clone())).settings(settings);
    let app = chat
        .route(Router::new(), "/ws")
        .route("/", get(|| async { Html(include_str!("chat.html")) }));
    let app = if args.iter().any(|a| a == "--log-requests") {
        app.layer(axum::middleware::from_fn(log_request))
    } else {
        app
    };
    let tls = args.iter().position(|a| a == "--tls").map(|i| {
        let (Some(cert), Some(key)) = (args.get(i + 1), args.get(i + 2)) else {
            panic!("--tls CERT KEY: the certificate chain and the private key, in PEM files")
        };
        (cert.clone(), key.clone())
    });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("chat: open {scheme}://{}/", listener.local_addr()?);
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(
        listener,
        app,
        tls,
        shutdown.on(ctrl_c, Duration::from_secs(5)),
    )
    .await?;
    // The closed connections' leaves reach the other nodes, and this node's lease ends.
    hub.shutdown().await;
    Ok(())
}
