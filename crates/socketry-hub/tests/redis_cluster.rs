//! The hub across nodes on a real Redis Cluster: three `redis-server` masters the test starts
//! on free loopback ports and joins with `redis-cli --cluster create`, stopped by PID. Rooms
//! use sharded pub/sub (`SPUBLISH` / `SSUBSCRIBE` on the master of each room's slot).
#![cfg(feature = "redis")]

mod support;

use std::time::Duration;

use socketry_hub::{Hub, RedisBroker};
use support::{bounded, brokers::RedisCluster, eventually, hub_server, member_of, next_text};

fn node(cluster: &RedisCluster, seed: usize) -> Hub {
    let broker = RedisBroker::cluster_builder([cluster.urls()[seed].clone()])
        .prefix("test")
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .timeout(Duration::from_secs(2))
        .build()
        .expect("broker");
    Hub::builder().broker(broker).build()
}

/// Shard subscriptions to `room`'s channel per master (`PUBSUB SHARDNUMSUB`; a master that
/// does not serve the slot redirects, and counts as none).
fn shard_subscribers(cluster: &RedisCluster, room: &str) -> Vec<usize> {
    let channel = format!("test:room:{room}");
    (0..cluster.len())
        .map(|i| {
            let reply = cluster
                .node(i)
                .command(&["PUBSUB", "SHARDNUMSUB", &channel]);
            if reply.starts_with('-') {
                return 0;
            }
            let last = reply.lines().last().unwrap_or_default();
            last.trim_start_matches(':').parse().unwrap_or(0)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_nodes_get_every_publication_once_in_order_through_one_shard() {
    let cluster = RedisCluster::start(3);
    let (a, b) = (node(&cluster, 0), node(&cluster, 1));
    let owner = cluster.owner(cluster.slot("test:room:lobby"));
    support::cluster::members_on_two_nodes_get_every_publication_once_in_order(a, b, || {
        let counts = shard_subscribers(&cluster, "lobby");
        // Only the master of the room's slot holds subscriptions.
        for (i, count) in counts.iter().enumerate() {
            if i != owner {
                assert_eq!(*count, 0, "master {i} of {counts:?}");
            }
        }
        counts[owner]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_spread_over_the_masters_and_follow_their_first_and_last_member() {
    let cluster = RedisCluster::start(3);
    let (a, b) = (node(&cluster, 0), node(&cluster, 2));
    let (addr_a, addr_b) = (hub_server(a.clone()).await, hub_server(b.clone()).await);
    let rooms: Vec<String> = (0..12).map(|i| format!("room{i}")).collect();
    let owners: std::collections::HashSet<usize> = (rooms.iter())
        .map(|room| cluster.owner(cluster.slot(&format!("test:room:{room}"))))
        .collect();
    assert_eq!(owners.len(), 3, "twelve rooms land on every master");
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for room in &rooms {
        on_a.push(member_of(addr_a, room).await);
        on_b.push(member_of(addr_b, room).await);
    }
    for room in &rooms {
        eventually("joins", || a.room_size(room) == 1 && b.room_size(room) == 1).await;
        bounded(a.subscribed(room)).await;
        bounded(b.subscribed(room)).await;
        assert_eq!(shard_subscribers(&cluster, room).iter().sum::<usize>(), 2);
    }
    for (i, room) in rooms.iter().enumerate() {
        a.publish(room, format!("from a to {room}")).unwrap();
        b.publish(room, format!("from b to {room}")).unwrap();
        for ws in [&mut on_a[i], &mut on_b[i]] {
            let mut got = [next_text(ws).await, next_text(ws).await];
            got.sort();
            assert_eq!(
                got,
                [format!("from a to {room}"), format!("from b to {room}")]
            );
        }
    }
    // Quiet connections are pinged, not dropped: after a few timeouts of silence nothing
    // was dialled again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(a.broker_stats().unwrap().reconnects, 0);
    assert_eq!(b.broker_stats().unwrap().reconnects, 0);
    // B's members leave: B unsubscribes every room, A keeps its subscriptions.
    drop(on_b);
    for room in &rooms {
        eventually("B's members left", || b.room_size(room) == 0).await;
    }
    let deadline = tokio::time::Instant::now() + support::TIMEOUT;
    while rooms
        .iter()
        .any(|room| shard_subscribers(&cluster, room).iter().sum::<usize>() != 1)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never unsubscribed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = a.broker_stats().unwrap();
    assert_eq!((stats.lost, stats.invalid), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_whose_slot_moves_is_subscribed_again_on_its_new_master() {
    let cluster = RedisCluster::start(3);
    let (a, b) = (node(&cluster, 0), node(&cluster, 1));
    let (addr_a, addr_b) = (hub_server(a.clone()).await, hub_server(b.clone()).await);
    let mut on_a = member_of(addr_a, "moving").await;
    let mut on_b = member_of(addr_b, "moving").await;
    eventually("joins", || {
        a.room_size("moving") == 1 && b.room_size("moving") == 1
    })
    .await;
    bounded(a.subscribed("moving")).await;
    bounded(b.subscribed("moving")).await;
    a.publish("moving", "before").unwrap();
    assert_eq!(next_text(&mut on_a).await, "before");
    assert_eq!(next_text(&mut on_b).await, "before");
    let slot = cluster.slot("test:room:moving");
    let from = cluster.owner(slot);
    let to = (from + 1) % cluster.len();
    // The old master drops its shard subscribers (`sunsubscribe`); each node asks for the
    // map again and subscribes on the new one.
    cluster.move_slot(slot, to);
    let deadline = tokio::time::Instant::now() + support::TIMEOUT;
    while shard_subscribers(&cluster, "moving")[to] != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never subscribed on the new master"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bounded(a.subscribed("moving")).await;
    bounded(b.subscribed("moving")).await;
    // Publications go to the new master too (a stale map is redirected and sent again).
    a.publish("moving", "after").unwrap();
    assert_eq!(next_text(&mut on_a).await, "after");
    assert_eq!(next_text(&mut on_b).await, "after");
    b.publish("moving", "back").unwrap();
    assert_eq!(next_text(&mut on_b).await, "back");
    assert_eq!(next_text(&mut on_a).await, "back");
    assert_eq!(a.broker_stats().unwrap().lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_dialled_again_and_its_rooms_subscribed_again() {
    let mut cluster = RedisCluster::start(3);
    let (a, b) = (node(&cluster, 0), node(&cluster, 1));
    let (addr_a, addr_b) = (hub_server(a.clone()).await, hub_server(b.clone()).await);
    // A room on the third master, whose seed neither node was given.
    let room = (0..100)
        .map(|i| format!("on2-{i}"))
        .find(|room| cluster.owner(cluster.slot(&format!("test:room:{room}"))) == 2)
        .unwrap();
    let mut on_a = member_of(addr_a, &room).await;
    let mut on_b = member_of(addr_b, &room).await;
    eventually("joins", || {
        a.room_size(&room) == 1 && b.room_size(&room) == 1
    })
    .await;
    bounded(a.subscribed(&room)).await;
    bounded(b.subscribed(&room)).await;
    cluster.kill(2);
    // Local delivery goes on while the room's master is away.
    a.publish(&room, "local").unwrap();
    assert_eq!(next_text(&mut on_a).await, "local");
    eventually("A saw the loss", || !a.broker_stats().unwrap().connected).await;
    cluster.restart(2);
    bounded(a.subscribed(&room)).await;
    bounded(b.subscribed(&room)).await;
    assert_eq!(shard_subscribers(&cluster, &room)[2], 2);
    a.publish(&room, "across").unwrap();
    assert_eq!(next_text(&mut on_a).await, "across");
    loop {
        // B may get "local" if it went out before the master died.
        let text = next_text(&mut on_b).await;
        if text == "across" {
            break;
        }
        assert_eq!(text, "local");
    }
    let stats = b.broker_stats().unwrap();
    assert!(stats.reconnects >= 1, "{stats:?}");
}

/// Calls of `command` on every master, refused ones included (`calls` and `rejected_calls`
/// in `INFO commandstats`).
fn calls(cluster: &RedisCluster, command: &str) -> u64 {
    stat(cluster, command, &["calls", "rejected_calls"])
}

/// The sum of `fields` of `command` in `INFO commandstats` of every master.
fn stat(cluster: &RedisCluster, command: &str, fields: &[&str]) -> u64 {
    let key = format!("cmdstat_{command}:");
    (0..cluster.len())
        .map(|i| {
            let info = cluster.node(i).command(&["INFO", "commandstats"]);
            let Some(line) = info.lines().find_map(|line| line.strip_prefix(&key)) else {
                return 0;
            };
            (line.split(','))
                .filter_map(|field| field.split_once('='))
                .filter(|(name, _)| fields.contains(name))
                .map(|(_, n)| n.trim().parse::<u64>().unwrap_or(0))
                .sum::<u64>()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subscription_is_asked_again_after_a_backoff_not_in_a_loop() {
    let cluster = RedisCluster::start(3);
    // A user that may use one channel only: the subscription to "room" gets an error reply
    // every time, the one to "open" goes through.
    for i in 0..cluster.len() {
        let node = cluster.node(i);
        let reply = node.command(&[
            "ACL",
            "SETUSER",
            "limited",
            "on",
            ">secret",
            "~*",
            "&test:room:open",
            "+@all",
        ]);
        assert_eq!(reply, "+OK\r\n");
        node.command(&["CONFIG", "RESETSTAT"]);
    }
    let seed = cluster.urls()[0].replace("redis://", "redis://limited:secret@");
    let broker = RedisBroker::cluster_builder([seed])
        .prefix("test")
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .timeout(Duration::from_secs(2))
        .build()
        .expect("broker");
    let hub = Hub::builder().broker(broker).build();
    let addr = hub_server(hub.clone()).await;
    let _member = member_of(addr, "room").await;
    let _open = member_of(addr, "open").await;
    eventually("the joins", || {
        hub.room_size("room") == 1 && hub.room_size("open") == 1
    })
    .await;
    // The refused room holds no other room back.
    bounded(hub.subscribed("open")).await;
    assert_eq!(shard_subscribers(&cluster, "open").iter().sum::<usize>(), 1);
    eventually("a refused subscription", || {
        stat(&cluster, "ssubscribe", &["rejected_calls"]) >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // With a backoff from 20 ms to 200 ms, about a dozen rounds in 2 s (a loop without one
    // makes thousands).
    let (slots, subscribes) = (
        calls(&cluster, "cluster|slots"),
        calls(&cluster, "ssubscribe"),
    );
    assert!(slots < 60, "{slots} CLUSTER SLOTS in 2 s");
    assert!(subscribes < 60, "{subscribes} SSUBSCRIBE in 2 s");
    // Local delivery goes on meanwhile.
    assert_eq!(
        hub.deliver_local(&socketry_hub::Publication::new(
            socketry_hub::RoomName::new("room").unwrap(),
            socketry::PreparedMessage::new(socketry::Message::text("local")),
        ))
        .delivered,
        1
    );
}
