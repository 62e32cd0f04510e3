//! Sharded pub/sub on a Redis Cluster: each room's channel lives on the master that serves
//! its slot; a node `SPUBLISH`es there and holds one `SSUBSCRIBE` per room with local members
//! on a connection to that master (one connection per master). A publication then costs one
//! message on one shard per subscribed node, instead of the cluster-wide broadcast of plain
//! `PUBLISH`.
//!
//! The slot map comes from `CLUSTER SLOTS`, asked again when a master redirects (`MOVED`),
//! drops a subscription because its slot moved, or goes away.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use redis::{Client, ConnectionAddr, ConnectionInfo, Value, aio::MultiplexedConnection};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, tcp::OwnedWriteHalf},
    sync::mpsc,
    task::JoinHandle,
    time::Instant,
};

use super::{
    MAX_PIPELINE, Shared,
    resp::{self, Event, Frame},
    slots::{self, Addr, SlotMap},
};
use crate::{
    RoomName,
    cluster::{Backoff, Queued, Stat, shut_down},
};

/// A bulk string larger than this ends a subscriber connection (Redis's own limit for a
/// value is 512 MiB; a publication is bounded far below by the hub's queues).
const MAX_BULK: usize = 64 << 20;
/// Attempts at a publication whose master moved or could not be reached before it counts as
/// lost.
const ATTEMPTS: usize = 3;

/// The cluster as this node knows it.
#[derive(Debug)]
pub(super) struct Cluster {
    /// Where to ask for the slot map first (the URLs given).
    seeds: Vec<ConnectionInfo>,
    map: Mutex<Arc<SlotMap>>,
}

impl Cluster {
    pub(super) fn new(seeds: Vec<ConnectionInfo>) -> Self {
        Self {
            seeds,
            map: Mutex::new(Arc::default()),
        }
    }

    fn map(&self) -> Arc<SlotMap> {
        self.map.lock().clone()
    }

    /// Connection settings for the master at `addr`: the first seed's, at that address.
    fn info(&self, addr: &Addr) -> ConnectionInfo {
        self.seeds[0]
            .clone()
            .set_addr(ConnectionAddr::Tcp(addr.0.clone(), addr.1))
    }

    /// Asks the seeds, then the masters known so far, for the slot map; `true` once one
    /// answered with a whole map.
    async fn refresh(&self, shared: &Shared) -> bool {
        let mut candidates: Vec<ConnectionInfo> = self.seeds.clone();
        candidates.extend(self.map().masters().iter().map(|addr| self.info(addr)));
        for info in candidates {
            let host = match info.addr() {
                ConnectionAddr::Tcp(host, _) => host.clone(),
                _ => String::new(),
            };
            let Ok(client) = Client::open(info) else {
                continue;
            };
            let asked = async {
                let mut conn = shared.dial_client(&client).await?;
                redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async::<Value>(&mut conn)
                    .await
            };
            let Ok(Ok(reply)) = tokio::time::timeout(shared.timeout, asked).await else {
                continue;
            };
            if let Some(map) = SlotMap::from_reply(&reply, &host)
                && !map.is_empty()
            {
                *self.map.lock() = Arc::new(map);
                return true;
            }
        }
        false
    }
}

/// Sends what waits in the publish buffer: per master, one pipeline of `SPUBLISH`es.
pub(super) async fn publisher(shared: Arc<Shared>) {
    let Some(cluster) = shared.cluster.as_ref() else {
        return;
    };
    let mut backoff = Backoff::new(shared.link.backoff.0, shared.link.backoff.1);
    let mut conns: HashMap<Addr, MultiplexedConnection> = HashMap::new();
    let mut batch = Vec::new();
    while shared.link.outbound.take(MAX_PIPELINE, &mut batch).await {
        // Indexes into the batch still to send, in order.
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 || cluster.map().is_empty() {
                cluster.refresh(&shared).await;
            }
            let map = cluster.map();
            // Per master, in order; publications to one room share a slot, so a room's
            // order holds.
            let mut groups: Vec<(Addr, Vec<usize>)> = Vec::new();
            let mut retry = Vec::new();
            for &i in &pending {
                let channel = shared.channel(&batch[i].room);
                match map.owner(slots::slot(channel.as_bytes())) {
                    Some(owner) => match groups.iter_mut().find(|(addr, _)| addr == owner) {
                        Some((_, group)) => group.push(i),
                        None => groups.push((owner.clone(), vec![i])),
                    },
                    None => retry.push(i),
                }
            }
            for (addr, group) in groups {
                let conn = match conns.get_mut(&addr) {
                    Some(conn) => conn,
                    None => match Client::open(cluster.info(&addr)) {
                        Ok(client) => match shared.dial_client(&client).await {
                            Ok(conn) => conns.entry(addr.clone()).or_insert(conn),
                            Err(err) => {
                                tracing::debug!(error = %err, master = ?addr, "hub: redis master unreachable");
                                retry.extend(group); // not sent: safe to send again
                                continue;
                            }
                        },
                        Err(_) => {
                            retry.extend(group);
                            continue;
                        }
                    },
                };
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for &i in &group {
                    let Queued { room, envelope, .. } = &batch[i];
                    pipe.cmd("SPUBLISH")
                        .arg(shared.channel(room))
                        .arg(&envelope[..]);
                }
                match pipe
                    .query_async::<Vec<redis::RedisResult<Value>>>(conn)
                    .await
                {
                    Ok(results) => {
                        for (&i, result) in group.iter().zip(results) {
                            match result {
                                Ok(_) => shared.link.stats.add(Stat::Published, 1),
                                // Redirected (the slot moved), or the cluster is busy: not
                                // executed, so sent again after a new map.
                                Err(err) if err.is_cluster_error() => retry.push(i),
                                Err(_) => shared.link.stats.add(Stat::Lost, 1),
                            }
                        }
                    }
                    Err(err) => {
                        // Some may have gone out: at most once, so they count as lost.
                        tracing::warn!(error = %err, master = ?addr, "hub: redis publish failed");
                        shared.link.stats.add(Stat::Lost, group.len() as u64);
                        conns.remove(&addr);
                    }
                }
            }
            retry.sort_unstable();
            pending = retry;
            if pending.is_empty() {
                backoff.reset();
                break;
            }
            if !shared.link.pause(backoff.delay()).await {
                break;
            }
        }
        if !pending.is_empty() {
            shared.link.stats.add(Stat::Lost, pending.len() as u64);
        }
        batch.clear();
    }
}

/// A subscriber connection to one master: written by the holder, read by its own task.
struct SubConn {
    /// Tells this connection's reports from those of an earlier one to the same master.
    id: u64,
    writer: OwnedWriteHalf,
    /// How long a write may wait (a frozen master with a full socket buffer).
    timeout: std::time::Duration,
    reader: JoinHandle<()>,
    heard: Arc<Heard>,
    /// When the unanswered ping went out (ms since the broker's epoch).
    ping_sent_ms: Option<u64>,
    /// The (un)subscriptions sent and not yet answered, in order: replies come in the order
    /// of the commands, so each reply (an error too) names its command.
    inflight: VecDeque<(Command, RoomName)>,
}

/// A command whose reply is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Subscribe,
    Unsubscribe,
}
#[derive(Default)]
struct Heard {
    /// Milliseconds since the broker's epoch of the last reply or message.
    last_ms: AtomicU64,
    down: AtomicBool,
}

impl Drop for SubConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl SubConn {
    async fn send(&mut self, args: &[&[u8]]) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        resp::command(&mut out, args);
        match tokio::time::timeout(self.timeout, self.writer.write_all(&out)).await {
            Ok(written) => written,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
}

/// What a reader task tells the holder, with the connection's id: a report queued by a
/// connection since replaced must not touch the new one.
enum Told {
    Event(Addr, u64, Event),
    Down(Addr, u64),
}

/// Numbers subscriber connections.
static SUB_CONNS: AtomicU64 = AtomicU64::new(0);

/// Dials a master for subscribing: TCP, `AUTH` if the URL has a password, then its reader.
async fn dial_subscriber(
    shared: &Arc<Shared>,
    cluster: &Cluster,
    addr: &Addr,
    told: &mpsc::Sender<Told>,
) -> std::io::Result<SubConn> {
    let connect = TcpStream::connect((addr.0.as_str(), addr.1));
    let tcp = tokio::time::timeout(shared.timeout, connect)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    tcp.set_nodelay(true)?;
    let (mut read, mut writer) = tcp.into_split();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let settings = cluster.seeds[0].redis_settings();
    if let Some(password) = settings.password() {
        let mut out = BytesMut::new();
        match settings.username() {
            Some(user) => resp::command(&mut out, &[b"AUTH", user.as_bytes(), password.as_bytes()]),
            None => resp::command(&mut out, &[b"AUTH", password.as_bytes()]),
        }
        writer.write_all(&out).await?;
        let reply = tokio::time::timeout(shared.timeout, read_frame(&mut read, &mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "AUTH timed out"))??;
        if !matches!(reply, Frame::Simple(_)) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "AUTH refused",
            ));
        }
    }
    let heard = Arc::new(Heard::default());
    heard.last_ms.store(shared.now_ms(), Ordering::Relaxed);
    let id = SUB_CONNS.fetch_add(1, Ordering::Relaxed);
    let reader = tokio::spawn(read_replies(
        shared.clone(),
        (addr.clone(), id),
        read,
        buf,
        heard.clone(),
        told.clone(),
    ));
    Ok(SubConn {
        id,
        writer,
        timeout: shared.timeout,
        reader,
        heard,
        ping_sent_ms: None,
        inflight: VecDeque::new(),
    })
}

async fn read_frame(
    read: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
) -> std::io::Result<Frame> {
    loop {
        if let Some(frame) = resp::parse(buf, MAX_BULK).map_err(std::io::Error::other)? {
            return Ok(frame);
        }
        if read.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// A subscriber connection's reader: delivers each message as it is parsed, tells the
/// holder the rest.
async fn read_replies(
    shared: Arc<Shared>,
    (addr, id): (Addr, u64),
    mut read: tokio::net::tcp::OwnedReadHalf,
    mut buf: BytesMut,
    heard: Arc<Heard>,
    told: mpsc::Sender<Told>,
) {
    loop {
        match read_frame(&mut read, &mut buf).await {
            Ok(frame) => {
                heard.last_ms.store(shared.now_ms(), Ordering::Relaxed);
                match Event::of(frame) {
                    Event::Message { channel, payload } => shared.deliver(&channel, payload),
                    Event::Pong | Event::Other => {}
                    event => {
                        if told
                            .send(Told::Event(addr.clone(), id, event))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, master = ?addr, "hub: redis shard subscriber connection lost");
                heard.down.store(true, Ordering::Release);
                let _ = told.send(Told::Down(addr, id)).await;
                return;
            }
        }
    }
}

/// Where a room is subscribed.
struct Placed {
    addr: Addr,
    confirmed: bool,
    sent: Instant,
}

/// Holds one `SSUBSCRIBE` per room with local members, on the master that serves it.
pub(super) async fn subscriber(shared: Arc<Shared>) {
    let Some(cluster) = shared.cluster.as_ref() else {
        return;
    };
    let (told_tx, mut told) = mpsc::channel::<Told>(1024);
    let mut conns: HashMap<Addr, SubConn> = HashMap::new();
    let mut placed: HashMap<RoomName, Placed> = HashMap::new();
    // Rooms to look at again once the map is new.
    let mut retry: HashSet<RoomName> = HashSet::new();
    let mut backoff = Backoff::new(shared.link.backoff.0, shared.link.backoff.1);
    let mut shutdown = shared.link.shutdown_signal();
    let mut stale = true;
    // Masters whose connection failed: dialling one again is a reconnection.
    let mut lost: HashSet<Addr> = HashSet::new();
    shared.link.subs.connected();
    let mut next_tick = Instant::now() + shared.timeout;
    // A room refused by an error reply (a persistent error, or a map that lags the masters')
    // waits a backoff of its own before it is subscribed again, after the next refresh, which
    // waits too: no loop of refreshes and subscriptions, and the other rooms go on. A room's
    // backoff grows with each error and ends at its confirmed subscription.
    let mut errors: HashMap<RoomName, Backoff> = HashMap::new();
    let mut delayed: HashMap<RoomName, Instant> = HashMap::new();
    let mut refresh_after = Instant::now();
    // The map is wanted again because of error replies only: refreshed at `refresh_after`,
    // or when a delayed room is due (whichever comes first). Any other cause (`stale`: a
    // moved slot, a lost master) refreshes at once.
    let mut error_stale = false;
    loop {
        let first_due = delayed.values().min().copied();
        let error_refresh = refresh_after.min(first_due.unwrap_or(refresh_after));
        if stale || (error_stale && Instant::now() >= error_refresh) {
            if cluster.refresh(&shared).await {
                stale = false;
                error_stale = false;
                let Some(hub) = shared.link.hub() else {
                    return;
                };
                retry.extend(hub.local_rooms());
                retry.extend(placed.keys().cloned());
            } else {
                shared.link.stats.set_connected(false);
                if !shared.link.pause(backoff.delay()).await {
                    return;
                }
                continue;
            }
        }
        let map = cluster.map();
        let now = Instant::now();
        delayed.retain(|room, due| {
            // On a new map only.
            if *due <= now && !stale && !error_stale {
                retry.insert(room.clone());
                false
            } else {
                true
            }
        });
        let mut dirty: HashSet<RoomName> = shared.link.subs.take_dirty().into_iter().collect();
        dirty.extend(retry.drain());
        // Decided with the hub held, before any await: a room this node leaves, or whose
        // slot moved, is unconfirmed now (a recovery joining meanwhile waits for the new
        // subscription, not for this one about to end). The commands go out after.
        let mut unsubscribe: Vec<(Addr, RoomName, String)> = Vec::new();
        let mut subscribe: Vec<(RoomName, Option<Addr>)> = Vec::new();
        {
            let Some(hub) = shared.link.hub() else {
                return;
            };
            for room in dirty {
                if delayed.contains_key(&room) {
                    continue; // its time comes
                }
                let want = hub.room_size(&room) > 0;
                if !want {
                    errors.remove(&room);
                }
                let channel = shared.channel(&room);
                let owner = map.owner(slots::slot(channel.as_bytes())).cloned();
                let here = placed.get(&room).map(|p| p.addr.clone());
                if (!want || here.as_ref() != owner.as_ref())
                    && let Some(old) = here
                {
                    placed.remove(&room);
                    shared.link.subs.confirm(&[], std::slice::from_ref(&room));
                    unsubscribe.push((old, room.clone(), channel));
                }
                if want && !placed.contains_key(&room) {
                    subscribe.push((room, owner));
                }
            }
        }
        for (old, room, channel) in unsubscribe {
            let Some(conn) = conns.get_mut(&old) else {
                continue;
            };
            if conn
                .send(&[b"SUNSUBSCRIBE", channel.as_bytes()])
                .await
                .is_ok()
            {
                conn.inflight.push_back((Command::Unsubscribe, room));
            } else {
                drop_conn(
                    &shared,
                    &old,
                    &mut conns,
                    &mut lost,
                    &mut placed,
                    &mut retry,
                );
                stale = true;
            }
        } // Masters that could not be dialled in this pass: not dialled again for each room.
        let mut unreachable: HashSet<Addr> = HashSet::new();
        for (room, owner) in subscribe {
            let Some(owner) = owner else {
                stale = true;
                retry.insert(room);
                continue;
            };
            if unreachable.contains(&owner) {
                retry.insert(room);
                continue;
            }
            if !conns.contains_key(&owner) {
                match dial_subscriber(&shared, cluster, &owner, &told_tx).await {
                    Ok(conn) => {
                        if lost.remove(&owner) {
                            shared.link.stats.add(Stat::Reconnects, 1);
                        }
                        conns.insert(owner.clone(), conn);
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, master = ?owner, "hub: redis master unreachable");
                        shared.link.stats.set_connected(false);
                        lost.insert(owner.clone());
                        unreachable.insert(owner);
                        stale = true;
                        retry.insert(room);
                        continue;
                    }
                }
            }
            let channel = shared.channel(&room);
            let conn = conns.get_mut(&owner).expect("dialled above");
            if conn
                .send(&[b"SSUBSCRIBE", channel.as_bytes()])
                .await
                .is_err()
            {
                drop_conn(
                    &shared,
                    &owner,
                    &mut conns,
                    &mut lost,
                    &mut placed,
                    &mut retry,
                );
                unreachable.insert(owner);
                stale = true;
                retry.insert(room);
                continue;
            }
            conn.inflight.push_back((Command::Subscribe, room.clone()));
            placed.insert(
                room,
                Placed {
                    addr: owner,
                    confirmed: false,
                    sent: Instant::now(),
                },
            );
        }
        if !stale {
            shared.link.stats.set_connected(true);
        }
        let retrying = stale && !retry.is_empty();
        if retrying && !shared.link.pause(backoff.delay()).await {
            return;
        }
        // Retrying: round again at once after the backoff (reports that are there may be
        // read first); else at the next tick, a delayed room's time or the next refresh.
        let mut wake = if retrying { Instant::now() } else { next_tick };
        if let Some(due) = delayed.values().min() {
            // With the map wanted for errors, a due room waits for it: the refresh is then
            // due too (see the loop's top).
            wake = wake.min((*due).max(Instant::now()));
        }
        if error_stale {
            wake = wake.min(refresh_after.max(Instant::now()));
        }
        tokio::select! {
            () = shared.link.subs.changed.notified() => {}
            () = shut_down(&mut shutdown) => return,
            told = told.recv() => {
                let Some(told) = told else { return };
                let current = |addr: &Addr, id: u64| conns.get(addr).is_some_and(|c| c.id == id);
                match told {
                                        Told::Event(addr, id, event) if current(&addr, id) => {
                        let conn = conns.get_mut(&addr).expect("current");
                        match on_event(&shared, &addr, conn, event, &mut placed, &mut retry) {
                            Then::Go => {}
                            Then::Confirmed(room) => {
                                errors.remove(&room);
                            }
                            Then::Refresh => stale = true,
                            Then::Wait(room) => {
                                let backoff = errors.entry(room.clone()).or_insert_with(|| {
                                    Backoff::new(shared.link.backoff.0, shared.link.backoff.1)
                                });
                                let now = Instant::now();
                                let due = now + backoff.delay();
                                delayed.insert(room, due);
                                // Never later than a refresh already due.
                                refresh_after = if refresh_after > now {
                                    refresh_after.min(due)
                                } else {
                                    due
                                };
                                error_stale = true;
                            }
                        }
                    }Told::Down(addr, id) if current(&addr, id) => {
                        drop_conn(&shared, &addr, &mut conns, &mut lost, &mut placed, &mut retry);
                        stale = true;
                    }
                    // From a connection replaced since.
                    Told::Event(..) | Told::Down(..) => {}
                }
            }
            () = tokio::time::sleep_until(wake) => 'tick: {
                if Instant::now() < next_tick {
                    break 'tick;
                }
                next_tick = Instant::now() + shared.timeout;
                let now = shared.now_ms();
                let timeout_ms = shared.timeout.as_millis() as u64;
                let mut dead = Vec::new();
                for (addr, conn) in &mut conns {
                    let heard = conn.heard.last_ms.load(Ordering::Relaxed);
                    if let Some(sent) = conn.ping_sent_ms {
                        if heard >= sent {
                            conn.ping_sent_ms = None; // answered
                        } else if now.saturating_sub(sent) >= timeout_ms {
                            dead.push(addr.clone());
                            continue;
                        }
                    }
                    if conn.heard.down.load(Ordering::Acquire) {
                        dead.push(addr.clone());
                    } else if conn.ping_sent_ms.is_none()
                        && now.saturating_sub(heard) >= timeout_ms
                    {
                        // Quiet for a timeout: a ping, answered within the next one or the
                        // master counts as gone.
                        if conn.send(&[b"PING"]).await.is_err() {
                            dead.push(addr.clone());
                        } else {
                            conn.ping_sent_ms = Some(now);
                        }
                    }
                }
                // A subscription not confirmed within a timeout: its master is asked again.
                let late: Vec<RoomName> = (placed.iter())
                    .filter(|(_, p)| !p.confirmed && p.sent.elapsed() >= shared.timeout)
                    .map(|(room, _)| room.clone())
                    .collect();
                for room in late {
                    placed.remove(&room);
                    retry.insert(room);
                    stale = true;
                }
                for addr in dead {
                    tracing::warn!(master = ?addr, "hub: redis shard subscriber went quiet");
                    drop_conn(&shared, &addr, &mut conns, &mut lost, &mut placed, &mut retry);
                    stale = true;
                }
            }
        }
        if !stale {
            backoff.reset();
        }
    }
}

/// What the holder does after a report.
enum Then {
    Go,
    /// The room's subscription was confirmed.
    Confirmed(RoomName),
    /// Ask for the slot map again.
    Refresh,
    /// An error reply to the room's subscription: subscribe again after its backoff, on a
    /// new map.
    Wait(RoomName),
}
/// Drops the connection to master `addr` (it failed, or a write to it did): everything
/// subscribed there is to subscribe again, and dialling it again is a reconnection.
fn drop_conn(
    shared: &Shared,
    addr: &Addr,
    conns: &mut HashMap<Addr, SubConn>,
    lost: &mut HashSet<Addr>,
    placed: &mut HashMap<RoomName, Placed>,
    retry: &mut HashSet<RoomName>,
) {
    shared.link.stats.set_connected(false);
    conns.remove(addr);
    lost.insert(addr.clone());
    forget_master(shared, addr, placed, retry);
}

/// A reply from master `addr`, on its connection `conn`.
fn on_event(
    shared: &Shared,
    addr: &Addr,
    conn: &mut SubConn,
    event: Event,
    placed: &mut HashMap<RoomName, Placed>,
    retry: &mut HashSet<RoomName>,
) -> Then {
    let room_of = |channel: &Bytes| {
        std::str::from_utf8(channel)
            .ok()
            .and_then(|c| c.strip_prefix(shared.channel_prefix.as_str()))
            .and_then(|room| RoomName::new(room).ok())
    };
    // Takes the command at the head if this reply answers it (`command` for `room`).
    let answers = |conn: &mut SubConn, command: Command, room: &RoomName| {
        let head = conn.inflight.front();
        if head.is_some_and(|(c, r)| *c == command && r == room) {
            conn.inflight.pop_front();
            true
        } else {
            false
        }
    };
    // No unsubscription of `room` waits behind: what this reply says holds (a later
    // subscription of it, sent again as late, changes nothing).
    let settled = |conn: &SubConn, room: &RoomName| {
        (conn.inflight.iter()).all(|(c, r)| r != room || *c != Command::Unsubscribe)
    };
    match event {
        Event::Subscribed(channel) => {
            let Some(room) = room_of(&channel) else {
                return Then::Go;
            };
            answers(conn, Command::Subscribe, &room);
            if settled(conn, &room)
                && let Some(place) = placed.get_mut(&room)
                && place.addr == *addr
            {
                place.confirmed = true;
                shared.link.subs.confirm(std::slice::from_ref(&room), &[]);
                return Then::Confirmed(room);
            }
            Then::Go
        }
        Event::Unsubscribed(channel) => {
            let Some(room) = room_of(&channel) else {
                return Then::Go;
            };
            if answers(conn, Command::Unsubscribe, &room) {
                return Then::Go; // the answer to ours
            }
            // Not an answer: the master's own doing (the slot moved).
            if placed.get(&room).is_some_and(|p| p.addr == *addr) {
                placed.remove(&room);
                shared.link.subs.confirm(&[], std::slice::from_ref(&room));
                retry.insert(room);
                return Then::Refresh;
            }
            Then::Go
        }
        Event::Error(text) => {
            // The answer to the command at the head: a `MOVED` to an `SSUBSCRIBE` (the map
            // was stale), or a refusal.
            tracing::warn!(master = ?addr, error = %String::from_utf8_lossy(&text), "hub: redis shard subscriber error");
            match conn.inflight.pop_front() {
                Some((Command::Subscribe, room))
                    if settled(conn, &room)
                        && placed.get(&room).is_some_and(|p| p.addr == *addr) =>
                {
                    placed.remove(&room);
                    shared.link.subs.confirm(&[], std::slice::from_ref(&room));
                    Then::Wait(room)
                }
                _ => Then::Go,
            }
        }
        Event::Message { .. } | Event::Pong | Event::Other => Then::Go,
    }
}

/// Everything subscribed on master `addr` is to subscribe again.
fn forget_master(
    shared: &Shared,
    addr: &Addr,
    placed: &mut HashMap<RoomName, Placed>,
    retry: &mut HashSet<RoomName>,
) {
    let gone: Vec<RoomName> = (placed.iter())
        .filter(|(_, p)| p.addr == *addr)
        .map(|(room, _)| room.clone())
        .collect();
    shared.link.subs.confirm(&[], &gone);
    for room in gone {
        placed.remove(&room);
        retry.insert(room);
    }
}
