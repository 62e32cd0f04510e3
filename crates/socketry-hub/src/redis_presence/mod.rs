//! [`RedisPresence`]: the members of every room on every node, kept in Redis under leases.
//!
//! Each node writes its own members (one hash per room, a field per connection) and holds a
//! lease that it renews every `ttl / 12`. A node whose lease ran out (it died, or lost Redis
//! for longer than the TTL) is dead to the others: readers leave its members out at once,
//! every node tells its own members of the room that they left (each node formats these
//! leave events itself, from the records), and a lease time later they are deleted. A node
//! that finds its own lease ran out writes its members again, with new versions, and
//! announces them as joins.
//!
//! Changes are written in the order the hub made them, by one task on one connection, and
//! each change's event is published after Redis has it: a member that reads presence after
//! joining, and applies the events newer than what it read, sees the room exactly.

mod record;
mod scripts;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;
use redis::{Client, IntoConnectionInfo, RedisResult, aio::MultiplexedConnection};
use tokio::{
    runtime::Handle,
    sync::{Notify, watch},
    task::JoinHandle,
    time::Instant,
};

use crate::{
    BoxFuture, Hub, HubError, NodeId, Presence, PresenceEntry, PresenceKind, RoomName, WeakHub,
    cluster::Backoff,
};

/// Changes written in one script at most.
const MAX_BATCH: usize = 256;
/// Rooms written again in one pipeline.
const REWRITE_CHUNK: usize = 64;
/// The longest TTL (a day): so that times computed from it cannot overflow.
const MAX_TTL: Duration = Duration::from_secs(86_400);
/// Dead leases are forgotten after this long (then a node that comes back later is taken
/// for a new one).
const FORGET_LEASES: Duration = Duration::from_secs(86_400);

/// Builds a [`RedisPresence`].
#[derive(Debug, Clone)]
#[must_use = "call build() to make the store"]
pub struct RedisPresenceBuilder {
    url: String,
    prefix: String,
    ttl: Duration,
    refresh: Duration,
    capacity: usize,
    backoff: (Duration, Duration),
    timeout: Duration,
}

impl RedisPresenceBuilder {
    /// The prefix of the keys (`socketry` by default): nodes that share rooms use the same.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a node's members outlive it when it stops renewing its lease (60 s by
    /// default, from 100 ms to a day; every node sharing rooms should use the same). Nodes check each other's leases every `ttl / 12`, so a
    /// dead node's members leave every room within `ttl + ttl / 12` of its last renewal.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.clamp(Duration::from_millis(100), MAX_TTL);
        self
    }

    /// How often a node renews the lifetime of its room keys and rewrites its room list
    /// (25 s by default; at most half the TTL).
    pub fn refresh_interval(mut self, refresh: Duration) -> Self {
        self.refresh = refresh.clamp(Duration::from_millis(10), MAX_TTL);
        self
    }

    /// How many changes wait while Redis is slow or away (65,536 by default). Past it, a
    /// change's event is dropped (counted in [`PresenceStats::events_lost`]) and the node
    /// writes all its members again once Redis takes writes: the record is never lost.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The wait before dialling Redis again: from `min` (100 ms by default), doubling up to
    /// `max` (5 s), with jitter.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
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

    /// The store, for [`HubBuilder::presence`](crate::HubBuilder::presence). It dials Redis
    /// once the hub is built, in the background.
    ///
    /// # Errors
    ///
    /// [`HubError::Broker`] for a URL the client refuses, or outside a tokio runtime.
    pub fn build(self) -> Result<RedisPresence, HubError> {
        let broker = |e: redis::RedisError| HubError::Broker(Box::new(e));
        let runtime = Handle::try_current().map_err(|e| HubError::Broker(Box::new(e)))?;
        let client = Client::open(self.url.as_str().into_connection_info().map_err(broker)?)
            .map_err(broker)?;
        let ttl = self.ttl;
        Ok(RedisPresence {
            shared: Arc::new(Shared {
                client,
                keys: Keys::new(&self.prefix),
                ttl,
                refresh: self.refresh.min(ttl / 2),
                check: ttl / 12,
                capacity: self.capacity,
                backoff: self.backoff,
                timeout: self.timeout,
                hub: OnceLock::new(),
                queue: Mutex::new(Queue::default()),
                queued: Notify::new(),
                conn: Mutex::new(None),
                stats: Counters::default(),
                shutdown: watch::channel(false).0,
                task: Mutex::new(None),
            }),
            runtime,
        })
    }
}

/// Presence of every node, in Redis (one server: 6.2 or later), under leases renewed by each
/// node, so that a node that dies leaves no member behind past its TTL (60 s by default).
///
/// [`Hub::presence`] and [`Hub::presence_count`] read this node's members from the hub and
/// the others' from Redis; join and leave events are sent through the hub's broker once
/// Redis has the change, so they reach the room's members on every node (with a
/// [`RedisBroker`](crate::RedisBroker) or [`NatsBroker`](crate::NatsBroker)).
///
/// **Versions.** An entry's version comes from its node's clock, so versions compare only
/// between one connection's entries and events. A client that keeps, per room and
/// connection, the highest version it has seen and applies only what is newer shows the
/// room's members whichever of snapshot and events comes first (the chat example's page
/// does this).
///
/// **Shutting down.** Call [`Hub::shutdown`] after the server stopped serving: the leaves of
/// the connections that just closed are written and announced, and the node's lease ends,
/// so the other nodes do not wait a TTL to see its members go.
///
/// # Examples
///
/// ```no_run
/// use socketry_hub::{Hub, RedisBroker, RedisPresence};
///
/// # async fn run() -> Result<(), socketry_hub::HubError> {
/// let url = "redis://127.0.0.1:6379";
/// let hub = Hub::builder()
///     .broker(RedisBroker::builder(url).build()?)
///     .presence(RedisPresence::builder(url).build()?)
///     .build();
/// let everyone = hub.presence("lobby").await?; // members on every node
/// # let _ = everyone;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisPresence {
    shared: Arc<Shared>,
    runtime: Handle,
}

/// What a [`RedisPresence`] counted since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PresenceStats {
    /// Joins and leaves written to Redis.
    pub written: u64,
    /// Events not sent: changes dropped from a full queue, or whose publication failed.
    pub events_lost: u64,
    /// Times this node wrote all its members again (on each new connection, after its
    /// lease ran out, after a full queue).
    pub rewrites: u64,
    /// Times this node found its own lease had run out.
    pub evicted: u64,
    /// Dead nodes whose members this node announced as gone.
    pub dead_nodes: u64,
    /// Whether the store has a connection to Redis.
    pub connected: bool,
}

impl RedisPresence {
    /// A builder for a store on the Redis server at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisPresenceBuilder {
        RedisPresenceBuilder {
            url: url.into(),
            prefix: "socketry".into(),
            ttl: Duration::from_secs(60),
            refresh: Duration::from_secs(25),
            capacity: 65_536,
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            timeout: Duration::from_secs(5),
        }
    }

    /// What it counted so far.
    pub fn stats(&self) -> PresenceStats {
        self.shared.stats.get()
    }

    /// A handle on the counters that stays valid once the store is in a hub.
    pub fn stats_handle(&self) -> PresenceStatsHandle {
        PresenceStatsHandle(self.shared.clone())
    }
}

/// Reads a [`RedisPresence`]'s counters after the store moved into its hub.
#[derive(Debug, Clone)]
pub struct PresenceStatsHandle(Arc<Shared>);

impl PresenceStatsHandle {
    /// What the store counted so far.
    pub fn get(&self) -> PresenceStats {
        self.0.stats.get()
    }
}

impl Presence for RedisPresence {
    fn attach(&self, hub: &Hub) {
        assert!(
            self.shared.hub.set(hub.downgrade()).is_ok(),
            "a RedisPresence serves one hub"
        );
        let task = self.runtime.spawn(run(self.shared.clone(), hub.node()));
        *self.shared.task.lock() = Some(task);
    }

    /// Writes what is queued (for up to the command timeout), ends this node's lease and
    /// stops the store's task; waits for it up to three command timeouts.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.shared.shutdown.send_replace(true);
            let task = self.shared.task.lock().take();
            if let Some(task) = task {
                let _ = tokio::time::timeout(self.shared.timeout * 3, task).await;
            }
        })
    }

    fn joined(&self, room: &RoomName, entry: &PresenceEntry) {
        self.shared.push(PresenceKind::Join, room, entry);
    }

    fn left(&self, room: &RoomName, entry: &PresenceEntry) {
        self.shared.push(PresenceKind::Leave, room, entry);
    }

    fn announces(&self) -> bool {
        true
    }

    fn members<'a>(
        &'a self,
        hub: &'a Hub,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PresenceEntry>, HubError>> {
        Box::pin(self.shared.members(hub, room))
    }

    fn count<'a>(&'a self, hub: &'a Hub, room: &'a str) -> BoxFuture<'a, Result<usize, HubError>> {
        Box::pin(async move { Ok(self.shared.members(hub, room).await?.len()) })
    }
}

impl Drop for RedisPresence {
    fn drop(&mut self) {
        // The task ends the lease (if the runtime lets it run: `Hub::shutdown` waits for
        // it), so that the others announce this node's members as gone at their next check
        // instead of a TTL later.
        self.shared.shutdown.send_replace(true);
    }
}

#[derive(Debug)]
struct Keys {
    room_prefix: String,
    leases: String,
    node_prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            room_prefix: format!("{prefix}:presence:room:"),
            leases: format!("{prefix}:presence:nodes"),
            node_prefix: format!("{prefix}:presence:node:"),
        }
    }

    fn room(&self, room: &str) -> String {
        format!("{}{room}", self.room_prefix)
    }

    fn node_rooms(&self, node: &str) -> String {
        format!("{}{node}", self.node_prefix)
    }
}

#[derive(Debug, Default)]
struct Queue {
    changes: VecDeque<Change>,
    /// Changes were dropped: write every member again.
    rewrite: bool,
}

#[derive(Debug, Clone)]
struct Change {
    kind: PresenceKind,
    room: RoomName,
    entry: PresenceEntry,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    events_lost: AtomicU64,
    rewrites: AtomicU64,
    evicted: AtomicU64,
    dead_nodes: AtomicU64,
    connected: AtomicBool,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> PresenceStats {
        PresenceStats {
            written: self.written.load(Ordering::Relaxed),
            events_lost: self.events_lost.load(Ordering::Relaxed),
            rewrites: self.rewrites.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            dead_nodes: self.dead_nodes.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug)]
struct Shared {
    client: Client,
    keys: Keys,
    ttl: Duration,
    refresh: Duration,
    check: Duration,
    capacity: usize,
    backoff: (Duration, Duration),
    timeout: Duration,
    hub: OnceLock<WeakHub>,
    queue: Mutex<Queue>,
    queued: Notify,
    /// The task's connection, for reads.
    conn: Mutex<Option<MultiplexedConnection>>,
    stats: Counters,
    shutdown: watch::Sender<bool>,
    /// The store's task, for [`Presence::shutdown`] to wait on.
    task: Mutex<Option<JoinHandle<()>>>,
}

/// A lease renewal's answer.
struct Lease {
    /// Our lease had run out before this renewal.
    lost: bool,
    /// Redis had no lease of ours (a new node, a restarted server, or one forgotten).
    missing: bool,
    /// The server's time, in ms.
    now: i64,
    /// Dead nodes (hex ids) and when their leases ended.
    dead: Vec<(String, i64)>,
}

/// What the task remembers across connections: the dead leases it has handled (and
/// whether their entries are deleted yet).
#[derive(Debug, Default)]
struct Memory {
    dead: HashMap<String, (i64, bool)>,
}

impl Shared {
    fn hub(&self) -> Option<Hub> {
        self.hub.get().and_then(WeakHub::upgrade)
    }

    fn ms(duration: Duration) -> u64 {
        duration.as_millis().max(1) as u64
    }

    fn push(&self, kind: PresenceKind, room: &RoomName, entry: &PresenceEntry) {
        {
            let mut queue = self.queue.lock();
            if queue.changes.len() >= self.capacity {
                queue.rewrite = true;
                Counters::add(&self.stats.events_lost, 1);
            } else {
                queue.changes.push_back(Change {
                    kind,
                    room: room.clone(),
                    entry: entry.clone(),
                });
            }
        }
        self.queued.notify_one();
    }

    async fn members(&self, hub: &Hub, room: &str) -> Result<Vec<PresenceEntry>, HubError> {
        let not_connected = || HubError::Broker("redis presence: not connected".into());
        let mut conn = self.conn.lock().clone().ok_or_else(not_connected)?;
        let read = eval(scripts::READ, &[&self.keys.room(room), &self.keys.leases]);
        let (alive, fields): (Vec<String>, Vec<Vec<u8>>) = self
            .bounded(read.query_async(&mut conn))
            .await
            .map_err(|e| HubError::Broker(Box::new(e)))?;
        let me = hub.node();
        let alive: HashSet<String> = alive.into_iter().collect();
        // This node's members as the hub has them (the freshest, and whole); the others'
        // from Redis, those of live nodes only.
        let mut members = hub.local_members(room);
        members.extend(fields.chunks_exact(2).filter_map(|pair| {
            let entry = record::entry(&pair[0], &pair[1])?;
            let node = entry.conn.node();
            (node != me && alive.contains(&node.to_string())).then_some(entry)
        }));
        Ok(members)
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = RedisResult<T>>,
    ) -> RedisResult<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(result) => result,
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "redis presence: timed out",
            ))),
        }
    }

    async fn lease(
        &self,
        conn: &mut MultiplexedConnection,
        node: NodeId,
        mode: &str,
    ) -> RedisResult<Lease> {
        let cmd = eval(scripts::LEASE, &[&self.keys.leases])
            .arg(node.to_string())
            .arg(Self::ms(self.ttl))
            .arg(Self::ms(FORGET_LEASES))
            .arg(mode)
            .to_owned();
        let (previous, now, dead): (i64, i64, Vec<String>) =
            self.bounded(cmd.query_async(conn)).await?;
        let dead = dead
            .chunks_exact(2)
            .filter_map(|pair| Some((pair[0].clone(), pair[1].parse::<f64>().ok()? as i64)))
            .collect();
        Ok(Lease {
            lost: previous >= 0 && previous < now,
            missing: previous < 0,
            now,
            dead,
        })
    }

    /// Writes queued changes, then sends their events, in order. Changes stay queued until
    /// they are written.
    async fn write_changes(
        &self,
        conn: &mut MultiplexedConnection,
        node: NodeId,
    ) -> RedisResult<Written> {
        let batch: Vec<Change> = {
            let queue = self.queue.lock();
            queue.changes.iter().take(MAX_BATCH).cloned().collect()
        };
        if batch.is_empty() {
            return Ok(Written::Nothing);
        }
        let node_hex = node.to_string();
        let mut keys = vec![self.keys.node_rooms(&node_hex), self.keys.leases.clone()];
        keys.extend(batch.iter().map(|change| self.keys.room(&change.room)));
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::APPLY)
            .arg(keys.len())
            .arg(&keys)
            .arg(Self::ms(self.ttl * 3))
            .arg(&node_hex);
        for change in &batch {
            let kind = match change.kind {
                PresenceKind::Join => "j",
                PresenceKind::Leave => "l",
            };
            cmd.arg(&*change.room)
                .arg(kind)
                .arg(record::field(change.entry.conn))
                .arg(change.entry.version)
                .arg(record::encode(change.entry.version, &change.entry.info));
        }
        let applied: i64 = self.bounded(cmd.query_async(conn)).await?;
        if applied == 0 {
            return Ok(Written::LeaseOver);
        }
        {
            let mut queue = self.queue.lock();
            // Only this task pops, and pushes go to the back: the front is the batch (a
            // rewrite, which also drops from the front, runs on this task too).
            queue.changes.drain(..batch.len());
        }
        Counters::add(&self.stats.written, batch.len() as u64);
        if let Some(hub) = self.hub() {
            for change in &batch {
                if hub
                    .announce(change.kind, &change.room, &change.entry)
                    .is_err()
                {
                    Counters::add(&self.stats.events_lost, 1);
                }
            }
        }
        Ok(Written::Some)
    }

    /// Writes every member of this node again, with a version newer than all before, and
    /// removes what Redis has of this node that the hub does not; announces a join for each
    /// member and a leave for each entry removed, at that version (harmless to a client that
    /// had them: the version rule makes them no-ops; needed by one that missed a change, or
    /// took this node's members for gone).
    async fn rewrite(&self, conn: &mut MultiplexedConnection, node: NodeId) -> RedisResult<()> {
        let Some(hub) = self.hub() else {
            return Ok(());
        };
        Counters::add(&self.stats.rewrites, 1);
        let mut old_leaves = Vec::new();
        // Newer than every change made so far, and than `old + 1`, the version the others
        // give the leaves of our old entries: one skipped. Taken before the hub's members
        // are read, so every change older than it is in what is read below: the queued
        // joins older than it are dropped (written after the rewrite, an old join would
        // bring back a member that has left since). The old leaves are taken out too (the
        // rewrite removes their entries) but announced: the rewrite announces the leaves of
        // the entries it finds, and Redis may have none left (restarted empty, or cleaned up
        // by the others), so the clients would not hear of them otherwise.
        hub.next_presence_version();
        let version = hub.next_presence_version();
        {
            let mut queue = self.queue.lock();
            queue.rewrite = false;
            let mut kept = VecDeque::with_capacity(queue.changes.len());
            for change in queue.changes.drain(..) {
                if change.entry.version > version {
                    kept.push_back(change);
                } else if change.kind == PresenceKind::Leave {
                    old_leaves.push(change);
                }
            }
            queue.changes = kept;
        }
        // Before Redis has them: harmless under the version rule (a snapshot that still lists
        // such an entry gives it an older version than its leave), and nothing is lost if the
        // rewrite fails halfway.
        for leave in old_leaves {
            if hub
                .announce(PresenceKind::Leave, &leave.room, &leave.entry)
                .is_err()
            {
                Counters::add(&self.stats.events_lost, 1);
            }
        }
        let node_hex = node.to_string();
        let rooms_key = self.keys.node_rooms(&node_hex);
        let local: Vec<RoomName> = hub.local_rooms();
        drop(hub);
        let written: Vec<String> = self
            .bounded(redis::cmd("SMEMBERS").arg(&rooms_key).query_async(conn))
            .await?;
        let prefix = record::node_prefix(node);
        let mut rooms: Vec<String> = local.iter().map(|r| r.to_string()).collect();
        let known: HashSet<&str> = rooms.iter().map(String::as_str).collect();
        let gone: Vec<String> = written
            .into_iter()
            .filter(|r| !known.contains(r.as_str()))
            .collect();
        rooms.extend(gone);
        // Pipelined, a chunk of rooms at a time (each within the command timeout): a node in
        // many rooms rewrites in a few round trips, renewing its lease between chunks so that
        // a long rewrite does not outlive it.
        for (i, chunk) in rooms.chunks(REWRITE_CHUNK).enumerate() {
            if *self.shutdown.borrow() {
                break; // the lease ends next: the others announce what is left
            }
            if i > 0 {
                let lease = self.lease(conn, node, "run").await?;
                if lease.lost || lease.missing {
                    // What the chunks before wrote may be gone already: all again, after.
                    Counters::add(&self.stats.evicted, 1);
                    self.queue.lock().rewrite = true;
                }
            }
            let Some(hub) = self.hub() else {
                return Ok(());
            };
            let mut pipe = redis::pipe();
            let mut joins = Vec::new();
            for room in chunk {
                let members: Vec<PresenceEntry> = hub
                    .local_members(room)
                    .into_iter()
                    .map(|entry| PresenceEntry::new(entry.conn, entry.info, version))
                    .collect();
                let mut cmd = eval(scripts::REPLACE, &[&self.keys.room(room), &rooms_key]);
                cmd.arg(Self::ms(self.ttl * 3))
                    .arg(&prefix)
                    .arg(version)
                    .arg(room);
                for entry in &members {
                    cmd.arg(record::field(entry.conn))
                        .arg(record::encode(version, &entry.info));
                }
                pipe.add_command(cmd);
                joins.push(members);
            }
            drop(hub);
            let deleted: Vec<Vec<Vec<u8>>> = self.bounded(pipe.query_async(conn)).await?;
            let Some(hub) = self.hub() else {
                return Ok(());
            };
            for ((room, members), deleted) in chunk.iter().zip(joins).zip(deleted) {
                let Ok(name) = RoomName::new(room) else {
                    continue;
                };
                let leaves = deleted
                    .chunks_exact(2)
                    .filter_map(|pair| record::entry(&pair[0], &pair[1]))
                    .map(|entry| (PresenceKind::Leave, entry));
                let joins = members.into_iter().map(|entry| (PresenceKind::Join, entry));
                for (kind, entry) in leaves.chain(joins) {
                    let entry = PresenceEntry::new(entry.conn, entry.info, version);
                    if hub.announce(kind, &name, &entry).is_err() {
                        Counters::add(&self.stats.events_lost, 1);
                    }
                }
            }
        }
        Ok(())
    }

    /// Renews the lifetime of this node's keys and makes its room list what the hub has.
    async fn refresh(&self, conn: &mut MultiplexedConnection, node: NodeId) -> RedisResult<()> {
        let Some(hub) = self.hub() else {
            return Ok(());
        };
        let rooms = hub.local_rooms();
        drop(hub);
        let mut cmd = eval(scripts::ROOMS, &[&self.keys.node_rooms(&node.to_string())]);
        cmd.arg(Self::ms(self.ttl * 3))
            .arg(&self.keys.room_prefix)
            .arg(record::node_prefix(node));
        for room in &rooms {
            cmd.arg(&**room);
        }
        self.bounded(cmd.query_async::<()>(conn)).await
    }

    /// Tells this node's members that the members of dead nodes left, once per dead lease,
    /// and deletes those entries a lease time later.
    async fn bury_dead(
        &self,
        conn: &mut MultiplexedConnection,
        me: NodeId,
        lease: &Lease,
        memory: &mut Memory,
    ) -> RedisResult<()> {
        let me = me.to_string();
        let grace = Self::ms(self.ttl) as i64;
        memory
            .dead
            .retain(|node, _| lease.dead.iter().any(|(dead, _)| dead == node));
        for (node, ends) in &lease.dead {
            if *node == me {
                continue;
            }
            let Ok(id) = u64::from_str_radix(node, 16) else {
                continue;
            };
            let prefix = record::node_prefix(NodeId::from_u64(id));
            let (mode, age) = match memory.dead.get(node) {
                Some((seen, _)) if seen != ends => ("read", 0),
                None => ("read", 0),
                Some((_, false)) if lease.now > ends + grace => ("delete", grace),
                Some(_) => continue,
            };
            let rooms: Vec<String> = self
                .bounded(
                    redis::cmd("SMEMBERS")
                        .arg(self.keys.node_rooms(node))
                        .query_async(conn),
                )
                .await?;
            let hub = self.hub();
            for room in rooms {
                let local = hub.as_ref().is_some_and(|hub| hub.room_size(&room) > 0);
                if mode == "read" && !local {
                    continue; // nobody here to tell
                }
                let cmd = eval(
                    scripts::DEAD_ENTRIES,
                    &[&self.keys.room(&room), &self.keys.leases],
                )
                .arg(node)
                .arg(&prefix)
                .arg(mode)
                .arg(age)
                .to_owned();
                let entries: Option<Vec<Vec<u8>>> = self.bounded(cmd.query_async(conn)).await?;
                let (Some(entries), Some(hub), "read") = (entries, hub.as_ref(), mode) else {
                    continue;
                };
                let Ok(name) = RoomName::new(&room) else {
                    continue;
                };
                for pair in entries.chunks_exact(2) {
                    if let Some(entry) = record::entry(&pair[0], &pair[1]) {
                        // Newer than its join, so that clients apply it.
                        let entry = PresenceEntry::new(entry.conn, entry.info, entry.version + 1);
                        hub.announce_local(PresenceKind::Leave, &name, &entry);
                    }
                }
            }
            if mode == "read" {
                Counters::add(&self.stats.dead_nodes, 1);
                tracing::info!(node = %node, "hub: a node's presence lease ran out; its members left");
            }
            memory.dead.insert(node.clone(), (*ends, mode == "delete"));
        }
        Ok(())
    }
}

/// An `EVAL` of `script` on `keys`.
fn eval(script: &str, keys: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(keys.len()).arg(keys);
    cmd
}

/// What a write of queued changes did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Nothing,
    Some,
    /// Refused: this node's lease is over.
    LeaseOver,
}

/// The store's task: dial, write everything again, then write changes as they come and
/// check leases on a schedule; dial again with backoff when the connection fails. On
/// shutdown, writes what is queued (for up to the command timeout) and ends the lease.
async fn run(shared: Arc<Shared>, node: NodeId) {
    let mut backoff = Backoff::new(shared.backoff.0, shared.backoff.1);
    let mut shutdown = shared.shutdown.subscribe();
    let mut memory = Memory::default();
    let mut ended = false;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let dialled = shared
            .bounded(shared.client.get_multiplexed_async_connection())
            .await;
        match dialled {
            Ok(conn) => {
                *shared.conn.lock() = Some(conn.clone());
                let session = session(
                    &shared,
                    conn,
                    node,
                    &mut memory,
                    &mut shutdown,
                    &mut backoff,
                )
                .await;
                *shared.conn.lock() = None;
                shared.stats.connected.store(false, Ordering::Relaxed);
                match session {
                    Ok(lease_ended) => {
                        ended = lease_ended;
                        break;
                    }
                    Err(err) => tracing::warn!(error = %err, "hub: redis presence connection lost"),
                }
            }
            Err(err) => tracing::debug!(error = %err, "hub: redis presence cannot connect"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.delay()) => {}
            _ = shutdown.changed() => break,
        }
    }
    if !ended
        && let Ok(mut conn) = shared
            .bounded(shared.client.get_multiplexed_async_connection())
            .await
    {
        // The others announce our members as gone at their next check.
        let _ = shared.lease(&mut conn, node, "stop").await;
    }
}

/// One connection's life: `Ok` when the store shuts down (whether it ended the lease).
async fn session(
    shared: &Shared,
    mut conn: MultiplexedConnection,
    node: NodeId,
    memory: &mut Memory,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> RedisResult<bool> {
    let lease = shared.lease(&mut conn, node, "run").await?;
    shared.stats.connected.store(true, Ordering::Relaxed);
    if lease.lost {
        Counters::add(&shared.stats.evicted, 1);
    }
    // A new connection: what Redis has of us may be stale (a restarted server has nothing).
    shared.rewrite(&mut conn, node).await?;
    shared.refresh(&mut conn, node).await?;
    shared.bury_dead(&mut conn, node, &lease, memory).await?;
    let mut next_check = Instant::now() + shared.check;
    let mut next_refresh = Instant::now() + shared.refresh;
    let mut lease_over = false;
    loop {
        if *shutdown.borrow() {
            // Whatever is queued (the leaves of the connections that just closed), then the
            // lease's end: the others see our members go now, not a TTL later.
            let deadline = Instant::now() + shared.timeout;
            while Instant::now() < deadline
                && shared.write_changes(&mut conn, node).await? == Written::Some
            {}
            shared.lease(&mut conn, node, "stop").await?;
            return Ok(true);
        }
        // The schedule first: a steady stream of changes must not starve the lease.
        if lease_over || Instant::now() >= next_check {
            next_check = Instant::now() + shared.check;
            let lease = shared.lease(&mut conn, node, "run").await?;
            // Missing in the middle of a session is lost too: whoever dropped it (a node
            // forgetting leases ended a day ago, a flush) may have buried ours.
            if lease_over || lease.lost || lease.missing {
                lease_over = false;
                Counters::add(&shared.stats.evicted, 1);
                tracing::warn!(
                    "hub: this node's presence lease ran out; writing its members again"
                );
                shared.rewrite(&mut conn, node).await?;
            }
            shared.bury_dead(&mut conn, node, &lease, memory).await?;
            backoff.reset();
            continue;
        }
        if Instant::now() >= next_refresh {
            next_refresh = Instant::now() + shared.refresh;
            shared.refresh(&mut conn, node).await?;
            continue;
        }
        // A full queue dropped changes: the rewrite first (it also drops the queued joins it
        // covers), even while changes keep coming.
        if shared.queue.lock().rewrite {
            shared.rewrite(&mut conn, node).await?;
            continue;
        }
        match shared.write_changes(&mut conn, node).await? {
            Written::Some => {
                backoff.reset();
                continue;
            }
            Written::LeaseOver => {
                lease_over = true;
                continue;
            }
            Written::Nothing => {}
        }
        tokio::select! {
            () = shared.queued.notified() => {}
            () = tokio::time::sleep_until(next_check.min(next_refresh)) => {}
            _ = shutdown.changed() => {}
        }
    }
}
