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

use std::{
    collections::HashSet,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use redis::{
    AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value,
    aio::MultiplexedConnection,
};
use tokio::{runtime::Handle, sync::watch};

use crate::{
    BoxFuture, Broker, BrokerStats, Hub, HubError, Publication, PublishBuffer, PublishReport,
    RoomName, WeakHub,
    cluster::{Backoff, Outbound, Stat, StatCounters, Subscriptions, envelope},
};

/// Publications sent in one pipeline at most.
const MAX_PIPELINE: usize = 512;
/// Channels named in one `SUBSCRIBE` at most.
const MAX_SUBSCRIBE: usize = 256;

/// Builds a [`RedisBroker`].
#[derive(Debug, Clone)]
#[must_use = "call build() to make the broker"]
pub struct RedisBrokerBuilder {
    url: String,
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
        self.backoff = (min, max);
        self
    }

    /// How long a dial or a command may take before the connection counts as lost (5 s by
    /// default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
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
        let runtime = Handle::try_current().map_err(|e| HubError::Broker(Box::new(e)))?;
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| HubError::Broker(Box::new(e)))?;
        // RESP3: the subscriber's messages come as pushes on a connection that also takes
        // commands.
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(settings))
            .map_err(|e| HubError::Broker(Box::new(e)))?;
        let (shutdown, _) = watch::channel(false);
        Ok(RedisBroker {
            shared: Arc::new(Shared {
                client,
                channel_prefix: format!("{}:room:", self.prefix),
                outbound: Outbound::new(self.buffer),
                subs: Subscriptions::default(),
                stats: StatCounters::new("redis"),
                hub: OnceLock::new(),
                backoff: self.backoff,
                timeout: self.timeout,
                generation: AtomicU64::new(0),
                down: AtomicBool::new(false),
                shutdown,
            }),
            runtime,
        })
    }
}

/// A [`Broker`] over Redis pub/sub (Redis 7, or 6.2 and later): a node subscribes to the
/// rooms it has members in, so a publication costs one Redis message per subscribed node.
///
/// **Order.** Publications one publisher makes to a room reach every member, on every node,
/// in the order they were made. Members on the publisher's node get them at once; members on
/// other nodes get them through Redis, later. Publications from *different* nodes to a room
/// are ordered by Redis as it receives them, so members on two nodes can see two
/// publishers' messages interleaved differently (members on one node all see the same
/// order).
///
/// **Delivery** is at most once, as with every pub/sub: a publication that was in flight when
/// the connection failed may be lost (counted in [`BrokerStats::lost`]); a node that
/// joins a room gets what is published after its subscription is confirmed
/// ([`Hub::subscribed`]). While Redis is away, publications wait in the bounded
/// [`PublishBuffer`]; once it is full, publishing fails with [`HubError::Broker`] (counted in
/// [`BrokerStats::rejected`]); local members get nothing of a publication that failed.
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
    client: Client,
    channel_prefix: String,
    outbound: Outbound,
    subs: Subscriptions,
    stats: StatCounters,
    hub: OnceLock<WeakHub>,
    backoff: (Duration, Duration),
    timeout: Duration,
    /// Counts the subscriber's connections, so that the end of an old one is not taken for
    /// the end of the current one.
    generation: AtomicU64,
    /// The subscriber's current connection ended.
    down: AtomicBool,
    shutdown: watch::Sender<bool>,
}

impl RedisBroker {
    /// A builder for a broker on the Redis server at `url` (`redis://host:port/db`,
    /// `rediss://` for TLS when the `redis` crate's TLS feature is on).
    pub fn builder(url: impl Into<String>) -> RedisBrokerBuilder {
        RedisBrokerBuilder {
            url: url.into(),
            prefix: "socketry".into(),
            buffer: PublishBuffer::default(),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            timeout: Duration::from_secs(5),
        }
    }

    fn forward(&self, hub: &Hub, publications: &[Publication]) -> Result<(), HubError> {
        let items = publications
            .iter()
            .map(|p| (p.room.clone(), envelope::encode(hub.node(), p)))
            .collect::<Vec<_>>();
        let count = items.len() as u64;
        self.shared.outbound.push_all(items).map_err(|full| {
            self.shared.stats.add(Stat::Rejected, count);
            tracing::warn!(error = %full, "hub: redis publication refused");
            HubError::Broker(Box::new(full))
        })
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        let dropped = self.shared.outbound.close();
        self.shared.stats.add(Stat::Lost, dropped as u64);
    }
}

impl Broker for RedisBroker {
    fn publish(&self, hub: &Hub, publication: Publication) -> Result<PublishReport, HubError> {
        self.forward(hub, std::slice::from_ref(&publication))?;
        Ok(hub.deliver_local(&publication))
    }

    fn publish_batch(
        &self,
        hub: &Hub,
        publications: Vec<Publication>,
    ) -> Result<PublishReport, HubError> {
        self.forward(hub, &publications)?;
        Ok(hub.deliver_local_batch(&publications))
    }

    fn attach(&self, hub: &Hub) {
        assert!(
            self.shared.hub.set(hub.downgrade()).is_ok(),
            "a RedisBroker serves one hub"
        );
        self.runtime.spawn(publisher(self.shared.clone()));
        self.runtime.spawn(subscriber(self.shared.clone()));
    }

    fn subscribe(&self, room: &RoomName) {
        self.shared.subs.mark_dirty(room);
    }

    fn unsubscribe(&self, room: &RoomName) {
        self.shared.subs.mark_dirty(room);
    }

    fn subscribed<'a>(&'a self, room: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.shared.subs.wait_confirmed(room))
    }

    fn stats(&self) -> Option<BrokerStats> {
        Some(self.shared.stats.snapshot())
    }
}

impl Shared {
    fn hub(&self) -> Option<Hub> {
        self.hub.get().and_then(WeakHub::upgrade)
    }

    fn channel(&self, room: &str) -> String {
        format!("{}{room}", self.channel_prefix)
    }

    fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleeps `delay`; `false` if the broker shut down meanwhile.
    async fn pause(&self, delay: Duration) -> bool {
        let mut shutdown = self.shutdown.subscribe();
        tokio::select! {
            () = tokio::time::sleep(delay) => !self.is_shut_down(),
            () = shut_down(&mut shutdown) => false,
        }
    }

    async fn dial(
        &self,
        config: AsyncConnectionConfig,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let config = config
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// A push from the subscriber connection of `generation`: a message to deliver, or the
    /// connection's end.
    fn on_push(&self, generation: u64, info: PushInfo) {
        match info.kind {
            PushKind::Message => {
                let mut data = info.data.into_iter();
                if let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                    (data.next(), data.next())
                {
                    self.deliver(&channel, Bytes::from(payload));
                }
            }
            PushKind::Disconnection if self.generation.load(Ordering::Acquire) == generation => {
                self.down.store(true, Ordering::Release);
                self.subs.changed.notify_one();
            }
            _ => {}
        }
    }

    fn deliver(&self, channel: &[u8], payload: Bytes) {
        let Some(hub) = self.hub() else { return };
        let room = std::str::from_utf8(channel)
            .ok()
            .and_then(|c| c.strip_prefix(self.channel_prefix.as_str()))
            .and_then(|room| RoomName::new(room).ok());
        let Some(room) = room else {
            self.stats.add(Stat::Invalid, 1);
            return;
        };
        match envelope::decode(room, payload) {
            // This node delivered its own publications when they were made.
            Ok(received) if received.origin == hub.node() => {}
            Ok(received) => {
                self.stats.add(Stat::Received, 1);
                hub.deliver_local(&received.publication);
            }
            Err(err) => {
                self.stats.add(Stat::Invalid, 1);
                tracing::warn!(error = %err, "hub: malformed envelope from redis skipped");
            }
        }
    }
}

/// Sends what waits in the publish buffer, a pipeline at a time, dialling again when the
/// connection fails.
async fn publisher(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(shared.backoff.0, shared.backoff.1);
    let mut conn: Option<MultiplexedConnection> = None;
    let mut batch = Vec::new();
    while shared.outbound.take(MAX_PIPELINE, &mut batch).await {
        loop {
            let Some(c) = conn.as_mut() else {
                match shared.dial(AsyncConnectionConfig::new()).await {
                    Ok(c) => {
                        backoff.reset();
                        conn = Some(c);
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "hub: redis publisher cannot connect");
                        if !shared.pause(backoff.delay()).await {
                            shared.stats.add(Stat::Lost, batch.len() as u64);
                            return;
                        }
                    }
                }
                continue;
            };
            let mut pipe = redis::pipe();
            for (room, envelope) in &batch {
                pipe.cmd("PUBLISH")
                    .arg(shared.channel(room))
                    .arg(&envelope[..])
                    .ignore();
            }
            let sent = batch.len() as u64;
            match pipe.query_async::<()>(c).await {
                Ok(()) => shared.stats.add(Stat::Published, sent),
                Err(err) => {
                    // Some of the pipeline may have gone out: sending it again could deliver
                    // twice, so it counts as lost (pub/sub is at most once).
                    tracing::warn!(error = %err, lost = sent, "hub: redis publish failed");
                    shared.stats.add(Stat::Lost, sent);
                    conn = None;
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
    let mut backoff = Backoff::new(shared.backoff.0, shared.backoff.1);
    let mut first = true;
    while !shared.is_shut_down() {
        let generation = shared.generation.fetch_add(1, Ordering::AcqRel) + 1;
        shared.down.store(false, Ordering::Release);
        let pushes = {
            let shared = shared.clone();
            move |info: PushInfo| -> Result<(), std::convert::Infallible> {
                shared.on_push(generation, info);
                Ok(())
            }
        };
        let conn = match shared
            .dial(AsyncConnectionConfig::new().set_push_sender(pushes))
            .await
        {
            Ok(conn) => conn,
            Err(err) => {
                tracing::debug!(error = %err, "hub: redis subscriber cannot connect");
                if !shared.pause(backoff.delay()).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        if !first {
            shared.stats.add(Stat::Reconnects, 1);
            tracing::info!("hub: redis subscriber connected again");
        }
        first = false;
        shared.stats.set_connected(true);
        hold_subscriptions(&shared, conn).await;
        shared.stats.set_connected(false);
        shared.subs.lost();
    }
}

/// Keeps `conn` subscribed to the rooms with local members until it fails or the broker
/// shuts down.
async fn hold_subscriptions(shared: &Shared, mut conn: MultiplexedConnection) {
    let Some(hub) = shared.hub() else { return };
    // A new connection has no subscriptions: every room with members is to subscribe.
    for room in hub.local_rooms() {
        shared.subs.mark_dirty(&room);
    }
    drop(hub);
    let mut actual: HashSet<RoomName> = HashSet::new();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let Some(hub) = shared.hub() else { return };
        let (mut join, mut leave) = (Vec::new(), Vec::new());
        for room in shared.subs.take_dirty() {
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
                return;
            }
            actual.extend(chunk.iter().cloned());
            shared.subs.confirm(chunk, &[]);
        }
        for chunk in leave.chunks(MAX_SUBSCRIBE) {
            let channels: Vec<String> = chunk.iter().map(|r| shared.channel(r)).collect();
            if let Err(err) = conn.unsubscribe(&channels).await {
                tracing::warn!(error = %err, "hub: redis unsubscribe failed");
                return;
            }
            for room in chunk {
                actual.remove(room);
            }
            shared.subs.confirm(&[], chunk);
        }
        if shared.down.load(Ordering::Acquire) {
            tracing::warn!("hub: redis subscriber connection lost");
            return;
        }
        tokio::select! {
            () = shared.subs.changed.notified() => {}
            () = shut_down(&mut shutdown) => return,
            // A server that stops answering without closing the connection (a host that
            // went away) is found by a ping that times out.
            () = tokio::time::sleep(shared.timeout) => {
                if let Err(err) = redis::cmd("PING").query_async::<()>(&mut conn).await {
                    tracing::warn!(error = %err, "hub: redis subscriber connection lost");
                    return;
                }
            }
        }
    }
}

/// Ready once the broker shuts down (the guard `wait_for` returns is not kept: it must not be
/// held across an await).
async fn shut_down(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await;
}
