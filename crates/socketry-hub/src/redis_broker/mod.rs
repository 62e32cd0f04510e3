//! [`RedisBroker`]: publications between nodes over Redis pub/sub.
//!
//! Two connections per node, on the `redis` crate (redis-rs, the most used Redis client for
//! Rust, kept by Redis itself; its multiplexed connection pipelines commands and hands RESP3
//! pushes to a callback as they are parsed, with no queue in between):
//!
//! - the **publisher** takes what waits in the bounded publish buffer and sends it as one
//!   pipeline of `PUBLISH` commands, in order, on one connection;
//! - the **subscriber** holds one `SUBSCRIBE` per room that has members on this node and
//!   delivers each message as it is parsed, straight into the members' bounded queues (which
//!   never wait), so nothing piles up between Redis and the members: if this node reads too
//!   slowly, Redis's own output-buffer limit for pub/sub clients ends the connection, and the
//!   subscriber dials again.
//!
//! Both dial again with backoff when their connection drops; the subscriber then subscribes
//! every room again. Publications meanwhile wait in the publish buffer, up to its bound.
//!
//! On a Redis Cluster ([`RedisBroker::cluster_builder`]) the same runs per master, with
//! sharded pub/sub (`sharded.rs`).

mod history;
mod resp;
mod sharded;
mod slots;

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use redis::{
    AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value,
    aio::MultiplexedConnection,
};
use tokio::runtime::Handle;

use crate::{
    HubError, PublishBuffer, RoomName,
    cluster::{Backoff, NodeLink, Queued, Stat, broker_over_link, shut_down},
};

/// Publications sent in one pipeline at most.
const MAX_PIPELINE: usize = 512;
/// Channels named in one `SUBSCRIBE` at most.
const MAX_SUBSCRIBE: usize = 256;

/// Builds a [`RedisBroker`].
#[derive(Debug, Clone)]
#[must_use = "call build() to make the broker"]
pub struct RedisBrokerBuilder {
    /// The server's URL, or a cluster's seeds.
    urls: Vec<String>,
    sharded: bool,
    prefix: String,
    buffer: PublishBuffer,
    backoff: (Duration, Duration),
    timeout: Duration,
}

impl RedisBrokerBuilder {
    /// The prefix of the channel names (`socketry` by default): a room's channel is
    /// `<prefix>:room:<room>`. Nodes that share rooms use the same prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How many publications wait while Redis is slow or away ([`PublishBuffer`]).
    pub fn publish_buffer(mut self, buffer: PublishBuffer) -> Self {
        self.buffer = buffer;
        self
    }

    /// The wait before dialling Redis again: from `min` (100 ms by default), doubling up to
    /// `max` (5 s), with jitter.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        // A zero wait would dial in a hot loop while Redis is away.
        let min = min.max(Duration::from_millis(1));
        self.backoff = (min, max.max(min));
        self
    }

    /// How long a dial or a command may take before the connection counts as lost (5 s by
    /// default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.clamp(Duration::from_millis(10), Duration::from_secs(86_400));
        self
    }

    /// The broker, for [`HubBuilder::broker`](crate::HubBuilder::broker). It dials Redis
    /// once the hub is built, in the background; the hub works meanwhile, and its
    /// publications wait in the publish buffer.
    ///
    /// # Errors
    ///
    /// [`HubError::Broker`] for a URL the client refuses, or outside a tokio runtime (the
    /// broker's tasks run on the runtime it is built in).
    pub fn build(self) -> Result<RedisBroker, HubError> {
        let broker = |e: redis::RedisError| HubError::Broker(Box::new(e));
        let runtime = Handle::try_current().map_err(|e| HubError::Broker(Box::new(e)))?;
        let infos = (self.urls.iter())
            .map(|url| url.as_str().into_connection_info().map_err(broker))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(first) = infos.first().cloned() else {
            return Err(HubError::Broker(
                "a Redis Cluster needs at least one seed URL".into(),
            ));
        };
        let cluster = if self.sharded {
            if infos
                .iter()
                .any(|info| !matches!(info.addr(), redis::ConnectionAddr::Tcp(..)))
            {
                return Err(HubError::Broker(
                    "a Redis Cluster is reached over redis:// (TCP) for now".into(),
                ));
            }
            Some(sharded::Cluster::new(infos))
        } else {
            None
        };
        // RESP3: the subscriber's messages come as pushes on a connection that also takes
        // commands.
        let settings = first
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(first.set_redis_settings(settings)).map_err(broker)?;
        Ok(RedisBroker {
            shared: Arc::new(Shared {
                link: NodeLink::new("redis", self.buffer, self.backoff),
                client,
                cluster,
                channel_prefix: format!("{}:room:", self.prefix),
                key_prefix: format!("{}:", self.prefix),
                reader: parking_lot::Mutex::new(None),
                timeout: self.timeout,
                epoch: tokio::time::Instant::now(),
                current: parking_lot::Mutex::new(Arc::default()),
            }),
            runtime,
        })
    }
}

/// A [`Broker`](crate::Broker) over Redis pub/sub (Redis 7, or 6.2 and later): a node subscribes to the
/// rooms it has members in, so a publication costs one Redis message per subscribed node.
///
/// **Order.** Publications one publisher makes to a room reach every member, on every node,
/// in the order they were made. Members on the publisher's node get them at once; members on
/// other nodes get them through Redis, later. Publications of *different* publishers are not
/// ordered against each other: two members can see them interleaved differently. In a room
/// that keeps history ([`RoomOptions::history`](crate::RoomOptions::history)) there is one
/// order, the history's: every publication is numbered by Redis and reaches every member,
/// the publisher's node included, through Redis, in that order (the publisher's
/// [`PublishReport`](crate::PublishReport) then counts nothing).
///
/// **Delivery** is at most once and never twice, as with every pub/sub: a publication that was
/// in flight when the connection failed may be lost (counted in [`BrokerStats::lost`](crate::BrokerStats::lost)), and
/// what other nodes publish while this node's subscriber is down does not reach it; a node
/// that joins a room gets what is published after its subscription is confirmed
/// ([`Hub::subscribed`](crate::Hub::subscribed)). While Redis is away, publications wait in the bounded
/// [`PublishBuffer`]; once it is full, publishing fails with [`HubError::Broker`] (counted in
/// [`BrokerStats::rejected`](crate::BrokerStats::rejected)) and local members get nothing of that publication either.
///
/// Deliveries from Redis run in the Redis client's connection task: a [`Presence`](crate::Presence)
/// plug-in or event formatter they call (when they disconnect a slow member) must not block.
///
/// # Examples
///
/// ```no_run
/// use socketry_hub::{Hub, RedisBroker};
///
/// # async fn run() -> Result<(), socketry_hub::HubError> {
/// let broker = RedisBroker::builder("redis://127.0.0.1:6379").prefix("chat").build()?;
/// let hub = Hub::builder().broker(broker).build();
/// // Members attach and join as with one node; publications reach every node's members.
/// hub.publish("lobby", "hello, every node")?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisBroker {
    shared: Arc<Shared>,
    runtime: Handle,
}

#[derive(Debug)]
struct Shared {
    link: NodeLink,
    client: Client,
    /// Set for a Redis Cluster: sharded pub/sub, per master.
    cluster: Option<sharded::Cluster>,
    channel_prefix: String,
    /// What the history keys start with (`<prefix>:`).
    key_prefix: String,
    /// A connection for history reads, dialled on the first.
    reader: parking_lot::Mutex<Option<MultiplexedConnection>>,
    timeout: Duration,
    epoch: tokio::time::Instant,
    /// The subscriber's current connection: pushes from an older one are ignored.
    current: parking_lot::Mutex<Arc<ConnState>>,
}

/// One subscriber connection, as its pushes see it.
#[derive(Debug, Default)]
struct ConnState {
    /// The connection ended (its `Disconnection` push came).
    down: AtomicBool,
    /// When it last brought anything, in milliseconds since the broker was built: traffic is
    /// proof of life, and a ping waits behind a backlog of messages.
    last_push_ms: AtomicU64,
}

impl RedisBroker {
    /// A builder for a broker on the Redis server at `url` (`redis://host:port/db`,
    /// `rediss://` for TLS when the `redis` crate's TLS feature is on).
    pub fn builder(url: impl Into<String>) -> RedisBrokerBuilder {
        RedisBrokerBuilder {
            urls: vec![url.into()],
            sharded: false,
            prefix: "socketry".into(),
            buffer: PublishBuffer::default(),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            timeout: Duration::from_secs(5),
        }
    }

    /// A builder for a broker on a Redis Cluster (7.0 or later), reached first through
    /// `seeds` (`redis://host:port` of any of its nodes; the rest are found with
    /// `CLUSTER SLOTS`). Rooms use sharded pub/sub: a room's channel lives on the master of
    /// its slot, so a publication costs one message on one shard per subscribed node, and
    /// the cluster's other shards never see it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use socketry_hub::{Hub, RedisBroker};
    ///
    /// # async fn run() -> Result<(), socketry_hub::HubError> {
    /// let seeds = ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"];
    /// let broker = RedisBroker::cluster_builder(seeds).prefix("chat").build()?;
    /// let hub = Hub::builder().broker(broker).build();
    /// # Ok(()) }
    /// ```
    pub fn cluster_builder<S: Into<String>>(
        seeds: impl IntoIterator<Item = S>,
    ) -> RedisBrokerBuilder {
        RedisBrokerBuilder {
            urls: seeds.into_iter().map(Into::into).collect(),
            sharded: true,
            ..Self::builder("")
        }
    }
}

impl RedisBroker {
    fn link(&self) -> &NodeLink {
        &self.shared.link
    }

    /// On one server, rooms that keep history are numbered in Redis (not yet on a cluster).
    fn numbers_history(&self) -> bool {
        self.shared.cluster.is_none()
    }

    fn read_history<'a>(
        &'a self,
        room: &'a RoomName,
        since: Option<&'a crate::Position>,
    ) -> crate::BoxFuture<'a, Result<crate::HistoryRead, HubError>> {
        if !self.numbers_history() {
            return Box::pin(std::future::ready(Err(HubError::Broker(
                "history is not kept on a Redis Cluster yet".into(),
            ))));
        }
        Box::pin(self.shared.read_history(room, since))
    }

    fn start(&self) {
        if self.shared.cluster.is_some() {
            self.runtime.spawn(sharded::publisher(self.shared.clone()));
            self.runtime.spawn(sharded::subscriber(self.shared.clone()));
        } else {
            self.runtime.spawn(publisher(self.shared.clone()));
            self.runtime.spawn(subscriber(self.shared.clone()));
        }
    }
}

broker_over_link!(RedisBroker);

impl Shared {
    fn channel(&self, room: &str) -> String {
        format!("{}{room}", self.channel_prefix)
    }

    async fn dial(
        &self,
        config: AsyncConnectionConfig,
    ) -> redis::RedisResult<MultiplexedConnection> {
        self.dial_with(&self.client, config).await
    }

    /// A connection to the server of `client`, with this broker's timeouts.
    async fn dial_client(&self, client: &Client) -> redis::RedisResult<MultiplexedConnection> {
        self.dial_with(client, AsyncConnectionConfig::new()).await
    }

    async fn dial_with(
        &self,
        client: &Client,
        config: AsyncConnectionConfig,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let config = config
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Milliseconds since the broker was built.
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A push from the subscriber connection `conn`: a message to deliver, or the
    /// connection's end. Runs in the redis client's connection task, as it parses.
    fn on_push(&self, conn: &Arc<ConnState>, info: PushInfo) {
        if !Arc::ptr_eq(conn, &self.current.lock()) {
            // An old connection that is still being torn down: its messages came or will
            // come on the new one.
            return;
        }
        conn.last_push_ms.store(self.now_ms(), Ordering::Relaxed);
        match info.kind {
            PushKind::Message => {
                let mut data = info.data.into_iter();
                match (data.next(), data.next()) {
                    (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) => {
                        self.deliver(&channel, Bytes::from(payload));
                    }
                    _ => self.link.stats.add(Stat::Invalid, 1),
                }
            }
            PushKind::Disconnection => {
                conn.down.store(true, Ordering::Release);
                self.link.subs.changed.notify_one();
            }
            _ => {}
        }
    }

    /// Whether `conn` brought anything within the last `timeout`.
    fn heard_lately(&self, conn: &ConnState) -> bool {
        let now = self.now_ms();
        now.saturating_sub(conn.last_push_ms.load(Ordering::Relaxed))
            < self.timeout.as_millis() as u64
    }

    fn deliver(&self, channel: &[u8], payload: Bytes) {
        let room = std::str::from_utf8(channel)
            .ok()
            .and_then(|c| c.strip_prefix(self.channel_prefix.as_str()))
            .and_then(|room| RoomName::new(room).ok());
        match room {
            Some(room) => self.link.deliver(room, payload),
            None => self.link.stats.add(Stat::Invalid, 1),
        }
    }
}

/// Sends what waits in the publish buffer, a pipeline at a time, dialling again when the
/// connection fails.
async fn publisher(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(shared.link.backoff.0, shared.link.backoff.1);
    let mut conn: Option<MultiplexedConnection> = None;
    let mut batch = Vec::new();
    while shared.link.outbound.take(MAX_PIPELINE, &mut batch).await {
        loop {
            let Some(c) = conn.as_mut() else {
                match shared.dial(AsyncConnectionConfig::new()).await {
                    Ok(c) => conn = Some(c),
                    Err(err) => {
                        tracing::debug!(error = %err, "hub: redis publisher cannot connect");
                        if !shared.link.pause(backoff.delay()).await {
                            shared.link.stats.add(Stat::Lost, batch.len() as u64);
                            return;
                        }
                    }
                }
                continue;
            };
            let mut pipe = redis::pipe();
            for Queued {
                room,
                envelope,
                history,
            } in &batch
            {
                match history {
                    // Numbered, kept and published in one step (`history.rs`).
                    Some(limits) => pipe
                        .cmd("EVAL")
                        .arg(history::PUBLISH)
                        .arg(2)
                        .arg(shared.stream_key(room))
                        .arg(shared.meta_key(room))
                        .arg(shared.channel(room))
                        .arg(&envelope[..])
                        .arg(limits.max_len)
                        .arg(limits.ttl.as_millis() as u64)
                        .arg(&*crate::history::new_epoch())
                        .ignore(),
                    None => pipe
                        .cmd("PUBLISH")
                        .arg(shared.channel(room))
                        .arg(&envelope[..])
                        .ignore(),
                };
            }
            let sent = batch.len() as u64;
            match pipe.query_async::<()>(c).await {
                Ok(()) => {
                    backoff.reset();
                    shared.link.stats.add(Stat::Published, sent);
                }
                Err(err) => {
                    // Some of the pipeline may have gone out: sending it again could deliver
                    // twice, so it counts as lost (pub/sub is at most once).
                    tracing::warn!(error = %err, lost = sent, "hub: redis publish failed");
                    shared.link.stats.add(Stat::Lost, sent);
                    // A server's refusal leaves the connection usable; a broken one is
                    // dialled again. Either way, wait before the next try.
                    if err.is_connection_dropped()
                        || err.is_unrecoverable_error()
                        || err.is_io_error()
                        || err.is_timeout()
                    {
                        conn = None;
                    }
                    if !shared.link.pause(backoff.delay()).await {
                        return;
                    }
                }
            }
            break;
        }
        batch.clear();
    }
}

/// Holds the subscriptions of the rooms that have members here, dialling again (and
/// subscribing every room again) when the connection drops.
async fn subscriber(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(shared.link.backoff.0, shared.link.backoff.1);
    let mut first = true;
    while !shared.link.is_shut_down() {
        let state = Arc::new(ConnState::default());
        *shared.current.lock() = state.clone();
        let pushes = {
            let (shared, state) = (shared.clone(), state.clone());
            move |info: PushInfo| -> Result<(), std::convert::Infallible> {
                shared.on_push(&state, info);
                Ok(())
            }
        };
        match shared
            .dial(AsyncConnectionConfig::new().set_push_sender(pushes))
            .await
        {
            Ok(conn) => {
                if !first {
                    shared.link.stats.add(Stat::Reconnects, 1);
                    tracing::info!("hub: redis subscriber connected again");
                }
                first = false;
                shared.link.stats.set_connected(true);
                let healthy = hold_subscriptions(&shared, &state, conn).await;
                // Unconfirmed first: whoever sees `connected` false and waits for
                // `subscribed` must not find a stale confirmation.
                shared.link.subs.lost();
                shared.link.stats.set_connected(false);
                // Only a connection that subscribed everything and then lived on resets the
                // backoff: one that fails at once (a refused SUBSCRIBE, a server that closes
                // it again) must not be dialled in a hot loop.
                if healthy {
                    backoff.reset();
                }
            }
            Err(err) => tracing::debug!(error = %err, "hub: redis subscriber cannot connect"),
        }
        if !shared.link.pause(backoff.delay()).await {
            return;
        }
    }
}

/// Keeps `conn` subscribed to the rooms with local members until it fails or the broker
/// shuts down; `true` if it was healthy for a while (every subscription made, and at least
/// one `timeout` of life) before it ended.
async fn hold_subscriptions(
    shared: &Shared,
    state: &ConnState,
    mut conn: MultiplexedConnection,
) -> bool {
    let Some(hub) = shared.link.hub() else {
        return false;
    };
    let started = tokio::time::Instant::now();
    // A new connection has no subscriptions: every room with members is to subscribe. Marks
    // are recorded from here on (they are not while no connection is up: this replaces them).
    shared.link.subs.connected();
    for room in hub.local_rooms() {
        shared.link.subs.mark_dirty(&room);
    }
    drop(hub);
    let healthy = |settled: bool| settled && started.elapsed() >= shared.timeout;
    let mut actual: HashSet<RoomName> = HashSet::new();
    let mut settled = false;
    let mut shutdown = shared.link.shutdown_signal();
    let mut next_ping = tokio::time::Instant::now() + shared.timeout;
    loop {
        let Some(hub) = shared.link.hub() else {
            return false;
        };
        let (mut join, mut leave) = (Vec::new(), Vec::new());
        for room in shared.link.subs.take_dirty() {
            // The hub's count decides: the calls that marked it can have raced.
            match (hub.room_size(&room) > 0, actual.contains(&room)) {
                (true, false) => join.push(room),
                (false, true) => leave.push(room),
                _ => {}
            }
        }
        drop(hub);
        for chunk in join.chunks(MAX_SUBSCRIBE) {
            let channels: Vec<String> = chunk.iter().map(|r| shared.channel(r)).collect();
            if let Err(err) = conn.subscribe(&channels).await {
                tracing::warn!(error = %err, "hub: redis subscribe failed");
                return false;
            }
            actual.extend(chunk.iter().cloned());
            shared.link.subs.confirm(chunk, &[]);
        }
        for chunk in leave.chunks(MAX_SUBSCRIBE) {
            // Unconfirmed before the command goes out: a member joining meanwhile waits for
            // the subscription that its join marked, not for this one about to end.
            shared.link.subs.confirm(&[], chunk);
            let channels: Vec<String> = chunk.iter().map(|r| shared.channel(r)).collect();
            if let Err(err) = conn.unsubscribe(&channels).await {
                tracing::warn!(error = %err, "hub: redis unsubscribe failed");
                return healthy(settled);
            }
            for room in chunk {
                actual.remove(room);
            }
        }
        settled = true;
        if state.down.load(Ordering::Acquire) {
            tracing::warn!("hub: redis subscriber connection lost");
            return healthy(settled);
        }
        tokio::select! {
            () = shared.link.subs.changed.notified() => {}
            () = shut_down(&mut shutdown) => return false,
            // A server that stops answering without closing the connection (a host that
            // went away) is found by a ping, sent only when nothing else came for a while:
            // messages are proof of life, and a ping's answer waits behind them.
            () = tokio::time::sleep_until(next_ping) => {
                next_ping = tokio::time::Instant::now() + shared.timeout;
                if !shared.heard_lately(state)
                    && let Err(err) = redis::cmd("PING").query_async::<()>(&mut conn).await
                {
                    tracing::warn!(error = %err, "hub: redis subscriber connection lost");
                    return healthy(settled);
                }
            }
        }
    }
}
