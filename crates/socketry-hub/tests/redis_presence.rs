//! Presence across nodes on a real `redis-server` (started by the test on a free loopback
//! port, stopped by PID): hubs in this process, and one in a child process for the node that
//! is SIGKILLed, each with a `RedisBroker` and a `RedisPresence`.
#![cfg(feature = "redis")]

mod support;

use std::{process::Stdio, time::Duration};

use socketry::Message;
use socketry_hub::{
    ConnId, Hub, HubConfig, PresenceEntry, PresenceKind, PresenceStatsHandle, RedisBroker,
    RedisPresence, RoomOptions,
};
use support::{
    Client, TIMEOUT, bounded, brokers::RedisServer, eventually, hub_server, member_of, next_text,
};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The lease of the test nodes: short, so that a dead node is found in seconds.
const TTL: Duration = Duration::from_secs(2);

/// A node whose rooms send `join <conn> <version>` and `leave <conn> <version>`.
fn node_with(redis_url: &str, capacity: usize) -> (Hub, PresenceStatsHandle) {
    let broker = RedisBroker::builder(redis_url)
        .prefix("test")
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .timeout(Duration::from_secs(2))
        .build()
        .expect("broker");
    let presence = RedisPresence::builder(redis_url)
        .prefix("test")
        .ttl(TTL)
        .refresh_interval(Duration::from_millis(500))
        .queue_capacity(capacity)
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .timeout(Duration::from_secs(2))
        .build()
        .expect("presence");
    let stats = presence.stats_handle();
    let config = HubConfig::default().room_options(|_| {
        RoomOptions::default().presence_events(|event| {
            let verb = match event.kind {
                PresenceKind::Join => "join",
                PresenceKind::Leave => "leave",
            };
            Some(Message::text(format!(
                "{verb} {} {}",
                event.conn, event.version
            )))
        })
    });
    let hub = Hub::builder()
        .config(config)
        .broker(broker)
        .presence(presence)
        .build();
    (hub, stats)
}

fn node(redis: &RedisServer) -> (Hub, PresenceStatsHandle) {
    node_with(&redis.url(), 65_536)
}

/// A presence event as a client got it.
#[derive(Debug, PartialEq, Eq)]
struct Event {
    join: bool,
    conn: String,
    version: u64,
}

async fn next_event(ws: &mut Client) -> Event {
    let text = next_text(ws).await;
    let mut words = text.split(' ');
    let (Some(verb), Some(conn), Some(version)) = (words.next(), words.next(), words.next()) else {
        panic!("not an event: {text}");
    };
    Event {
        join: verb == "join",
        conn: conn.to_owned(),
        version: version.parse().expect("a version"),
    }
}

/// The next event past repeated joins of `joined`'s member: a node that rewrites its members
/// announces them again at a newer version, which may come before the awaited leave.
async fn next_leave(ws: &mut Client, joined: &Event) -> Event {
    loop {
        let event = next_event(ws).await;
        if !(event.join && event.conn == joined.conn) {
            return event;
        }
    }
}

/// Waits until `hub.presence(room)` lists exactly `conns`; returns the entries.
async fn presence_is(hub: &Hub, room: &str, conns: &[ConnId]) -> Vec<PresenceEntry> {
    let mut want: Vec<ConnId> = conns.to_vec();
    want.sort();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let members = hub.presence(room).await;
        if let Ok(members) = &members {
            let mut got: Vec<ConnId> = members.iter().map(|e| e.conn).collect();
            got.sort();
            if got == want {
                return members.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "presence of {room} never became {want:?}: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The only member of `room` on `hub`.
async fn only_member(hub: &Hub, room: &str) -> ConnId {
    eventually("the member's join", || hub.room_size(room) == 1).await;
    hub.local_members(room)[0].conn
}

/// Two nodes on `redis` with a member each in "room"; A's member has heard B's join.
struct Pair {
    a: Hub,
    b: Hub,
    on_a: Client,
    on_b: Client,
    id_a: ConnId,
    id_b: ConnId,
    join: Event,
    stats_b: PresenceStatsHandle,
}

impl Pair {
    async fn start(redis: &RedisServer) -> Self {
        let ((a, _), (b, stats_b)) = (node(redis), node(redis));
        let (addr_a, addr_b) = (hub_server(a.clone()).await, hub_server(b.clone()).await);
        let mut on_a = member_of(addr_a, "room").await;
        let id_a = only_member(&a, "room").await;
        bounded(a.subscribed("room")).await;
        let on_b = member_of(addr_b, "room").await;
        let id_b = only_member(&b, "room").await;
        let join = next_event(&mut on_a).await;
        assert_eq!((join.join, join.conn.as_str()), (true, &*id_b.to_string()));
        Self {
            a,
            b,
            on_a,
            on_b,
            id_a,
            id_b,
            join,
            stats_b,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_lists_every_nodes_members_and_joins_and_leaves_reach_the_other_node() {
    let redis = RedisServer::start();
    // The join made on B reaches A's member, after Redis has it (checked by `Pair::start`).
    let pair = Pair::start(&redis).await;
    let (a, b, mut on_a, on_b) = (pair.a, pair.b, pair.on_a, pair.on_b);
    let (id_a, id_b, join) = (pair.id_a, pair.id_b, pair.join);
    for hub in [&a, &b] {
        let members = presence_is(hub, "room", &[id_a, id_b]).await;
        let entry_b = members.iter().find(|e| e.conn == id_b).unwrap();
        assert!(entry_b.version >= join.version);
        assert_eq!(entry_b.info.user(), "user");
    }
    assert_eq!(a.presence_count("room").await.unwrap(), 2);
    drop(on_b);
    let leave = next_event(&mut on_a).await;
    assert_eq!(
        (leave.join, leave.conn.as_str()),
        (false, &*id_b.to_string())
    );
    assert!(leave.version > join.version, "{leave:?} after {join:?}");
    presence_is(&a, "room", &[id_a]).await;
    presence_is(&b, "room", &[id_a]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_nodes_members_leave_every_room_within_the_ttl() {
    let redis = RedisServer::start();
    let (a, stats) = node(&redis);
    let addr_a = hub_server(a.clone()).await;
    let mut in_one = member_of(addr_a, "one").await;
    let mut in_two = member_of(addr_a, "two").await;
    eventually("A's members", || {
        a.room_size("one") == 1 && a.room_size("two") == 1
    })
    .await;
    bounded(a.subscribed("one")).await;
    bounded(a.subscribed("two")).await;
    // Node B, in a process of its own, with a member in both rooms.
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "presence_node_process",
            "--nocapture",
        ])
        .env("REDIS_URL", redis.url())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr_b = loop {
        let line = bounded(lines.next_line())
            .await
            .unwrap()
            .expect("the node's address");
        if let Some(addr) = line.strip_prefix("NODE ") {
            break addr.parse().unwrap();
        }
    };
    let mut on_b = member_of(addr_b, "one").await;
    on_b.send("join two").await.unwrap();
    let joined_one = next_event(&mut in_one).await;
    let joined_two = next_event(&mut in_two).await;
    assert!(joined_one.join && joined_two.join);
    assert_eq!(joined_one.conn, joined_two.conn);
    let id_a = a.local_members("one")[0].conn;
    let members = presence_is(&a, "one", &[id_a, joined_one.conn.parse_id()]).await;
    assert_eq!(members.len(), 2);
    // SIGKILL: no goodbye reaches anyone.
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let killed = tokio::time::Instant::now();
    // A node may announce its members again (at a newer version) when it rewrites them, so a
    // repeated join of the same member can come before the leave.
    let left_one = next_leave(&mut in_one, &joined_one).await;
    let left_two = next_leave(&mut in_two, &joined_two).await;
    let took = killed.elapsed();
    for (left, joined) in [(&left_one, &joined_one), (&left_two, &joined_two)] {
        assert!(!left.join);
        assert_eq!(left.conn, joined.conn);
        assert!(left.version > joined.version);
    }
    // The lease ran out at most TTL after the kill, and A checks every TTL / 12.
    assert!(
        took <= TTL + TTL / 12 + Duration::from_secs(1),
        "took {took:?}"
    );
    presence_is(&a, "one", &[id_a]).await;
    presence_is(&a, "two", &[a.local_members("two")[0].conn]).await;
    assert_eq!(stats.get().dead_nodes, 1);
    // A lease time later, B's entries are gone from Redis too, not only left out of reads.
    let deadline = tokio::time::Instant::now() + support::TIMEOUT;
    while ["one", "two"]
        .iter()
        .any(|room| redis.command(&["HLEN", &format!("test:presence:room:{room}")]) != ":1\r\n")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B's entries still in Redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(on_b);
}

/// Node B of the test above: serves a hub until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_sigkilled_nodes_members_leave_every_room_within_the_ttl"]
async fn presence_node_process() {
    let (hub, _) = node_with(&std::env::var("REDIS_URL").unwrap(), 65_536);
    let addr = hub_server(hub.clone()).await;
    println!("NODE {addr}");
    // Killed long before this.
    tokio::time::sleep(Duration::from_secs(120)).await;
}

trait ParseId {
    fn parse_id(&self) -> ConnId;
}

impl ParseId for String {
    fn parse_id(&self) -> ConnId {
        let (node, seq) = self.split_once('-').expect("node-seq");
        ConnId::from_parts(
            socketry_hub::NodeId::from_u64(u64::from_str_radix(node, 16).unwrap()),
            seq.parse().unwrap(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_ran_out_writes_its_members_again_and_announces_them() {
    // Ended 10 s ago by the server's clock: past the TTL, well short of being forgotten.
    lease_lost_then_rewritten(&[
        "EVAL",
        "local t = redis.call('TIME') \
         return redis.call('ZADD', KEYS[1], 'XX', 'CH', t[1] * 1000 - 10000, ARGV[1])",
        "1",
        "test:presence:nodes",
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_is_gone_from_redis_writes_its_members_again() {
    // Forgotten (as after a day away, a flush or an eviction): a running node treats a
    // missing lease like one that ran out, not like a fresh start.
    lease_lost_then_rewritten(&["ZREM", "test:presence:nodes"]).await;
}

/// B's lease is ended behind its back by `command` (B's node id appended): B notices at its
/// next check, writes its members again with newer versions and A's members hear them join.
async fn lease_lost_then_rewritten(command: &[&str]) {
    let redis = RedisServer::start();
    let pair = Pair::start(&redis).await;
    let (a, b, mut on_a, stats_b) = (pair.a, pair.b, pair.on_a, pair.stats_b);
    let (id_a, id_b, first) = (pair.id_a, pair.id_b, pair.join);
    presence_is(&a, "room", &[id_a, id_b]).await;
    // As if B had been away longer than its lease: it finds out at its next renewal.
    let node_b = b.node().to_string();
    let mut command = command.to_vec();
    command.push(&node_b);
    assert_eq!(redis.command(&command), ":1\r\n");
    eventually("B to notice", || stats_b.get().evicted == 1).await;
    // A's member may first hear that B's member left (if A looked at the leases first),
    // then hears it join again, newer than anything before.
    let mut last = next_event(&mut on_a).await;
    if !last.join {
        assert!(last.version > first.version);
        last = next_event(&mut on_a).await;
    }
    assert!(last.join && last.conn == id_b.to_string() && last.version > first.version + 1);
    let members = presence_is(&a, "room", &[id_a, id_b]).await;
    let entry_b = members.iter().find(|e| e.conn == id_b).unwrap();
    assert_eq!(entry_b.version, last.version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_restarts_empty_every_node_writes_its_members_again_even_past_a_full_queue() {
    let mut redis = RedisServer::start();
    let (a, _) = node(&redis);
    // B queues one change at most while Redis is away.
    let (b, stats_b) = node_with(&redis.url(), 1);
    let (addr_a, addr_b) = (hub_server(a.clone()).await, hub_server(b.clone()).await);
    let _on_a = member_of(addr_a, "room").await;
    let id_a = only_member(&a, "room").await;
    let _first_b = member_of(addr_b, "room").await;
    let id_b = only_member(&b, "room").await;
    presence_is(&a, "room", &[id_a, id_b]).await;
    let rewrites = stats_b.get().rewrites;
    redis.kill();
    // Its join is queued; the next two changes (a join and this one's leave) are dropped.
    let second_b = member_of(addr_b, "room").await;
    eventually("B's second member", || b.room_size("room") == 2).await;
    let _third_b = member_of(addr_b, "room").await;
    eventually("B's third member", || b.room_size("room") == 3).await;
    drop(second_b);
    eventually("B's second member gone", || b.room_size("room") == 2).await;
    assert!(stats_b.get().events_lost >= 2, "{:?}", stats_b.get());
    redis.restart();
    eventually("B to write its members again", || {
        let stats = stats_b.get();
        stats.connected && stats.rewrites > rewrites
    })
    .await;
    // Long enough for what B still had queued to be written: the second member's old join,
    // if it were written after the rewrite, would bring back a member that left.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let everyone: Vec<ConnId> = std::iter::once(id_a)
        .chain(b.local_members("room").iter().map(|e| e.conn))
        .collect();
    assert_eq!(everyone.len(), 3);
    presence_is(&a, "room", &everyone).await;
    presence_is(&b, "room", &everyone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shut_down_leaves_the_others_presence_at_once() {
    let redis = RedisServer::start();
    let pair = Pair::start(&redis).await;
    let (a, b, mut on_a, id_a, id_b) = (pair.a, pair.b, pair.on_a, pair.id_a, pair.id_b);
    // B's member is still connected: its leave comes from B's ended lease, which A finds at
    // its next check (a TTL / 12), not from a leave written by B.
    bounded(b.shutdown()).await;
    let score = redis.command(&["ZSCORE", "test:presence:nodes", &b.node().to_string()]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    let ends: f64 = score
        .lines()
        .nth(1)
        .expect("a score")
        .parse()
        .expect("a number");
    assert!(
        ends < now_ms + 1.0,
        "B's lease still runs: ends {ends}, now {now_ms}"
    );
    let leave = next_event(&mut on_a).await;
    assert_eq!(
        (leave.join, leave.conn.as_str()),
        (false, &*id_b.to_string())
    );
    presence_is(&a, "room", &[id_a]).await;
}
