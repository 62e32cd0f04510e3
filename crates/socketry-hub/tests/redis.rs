//! The hub across nodes on a real `redis-server` (started by the test on a free loopback
//! port, stopped by PID): two hubs in one process stand for two nodes, each with its own
//! WebSocket server, its own `RedisBroker` and its own connections to Redis.
#![cfg(feature = "redis")]

mod support;

use std::time::Duration;

use socketry_hub::{Hub, HubError, PublishBuffer, RedisBroker};
use support::{bounded, brokers::RedisServer, eventually, hub_server, member_of, next_text};

fn node(redis: &RedisServer, buffer: PublishBuffer) -> Hub {
    let broker = RedisBroker::builder(redis.url())
        .prefix("test")
        .publish_buffer(buffer)
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .timeout(Duration::from_secs(2))
        .build()
        .expect("broker");
    Hub::builder().broker(broker).build()
}

/// `PUBSUB NUMSUB channel` as seen by Redis: how many connections subscribe to it.
fn subscribers(redis: &RedisServer, room: &str) -> usize {
    let reply = redis.command(&["PUBSUB", "NUMSUB", &format!("test:room:{room}")]);
    let count = reply.lines().last().unwrap_or_default();
    count
        .trim_start_matches(':')
        .parse()
        .expect("an integer reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_nodes_get_every_publication_once_in_order() {
    let redis = RedisServer::start();
    let (a, b) = (
        node(&redis, PublishBuffer::default()),
        node(&redis, PublishBuffer::default()),
    );
    support::cluster::members_on_two_nodes_get_every_publication_once_in_order(a, b, || {
        subscribers(&redis, "lobby")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_subscribes_on_its_first_member_and_unsubscribes_after_its_last() {
    let redis = RedisServer::start();
    let (a, b) = (
        node(&redis, PublishBuffer::default()),
        node(&redis, PublishBuffer::default()),
    );
    let addr_b = hub_server(b.clone()).await;
    assert_eq!(subscribers(&redis, "quiet"), 0);
    let first = member_of(addr_b, "quiet").await;
    let second = member_of(addr_b, "quiet").await;
    eventually("joined", || b.room_size("quiet") == 2).await;
    bounded(b.subscribed("quiet")).await;
    assert_eq!(subscribers(&redis, "quiet"), 1);
    // A publishes to a room it has no member in: no subscription needed to publish.
    a.publish("quiet", "hello").unwrap();
    drop(first);
    eventually("one left", || b.room_size("quiet") == 1).await;
    assert_eq!(subscribers(&redis, "quiet"), 1, "a member is still there");
    drop(second);
    eventually("the last left", || b.room_size("quiet") == 0).await;
    let deadline = tokio::time::Instant::now() + support::TIMEOUT;
    while subscribers(&redis, "quiet") != 0 {
        assert!(tokio::time::Instant::now() < deadline, "never unsubscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(subscribers(&redis, "quiet"), 0);
    assert_eq!(a.room_size("quiet"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_away_local_delivery_goes_on_and_the_buffer_bound_is_an_error() {
    let mut redis = RedisServer::start();
    let buffer = PublishBuffer::new(20, 1 << 20);
    let (a, b) = (node(&redis, buffer), node(&redis, buffer));
    let (addr_a, addr_b) = (hub_server(a.clone()).await, hub_server(b.clone()).await);
    let mut on_a = member_of(addr_a, "r").await;
    let mut on_b = member_of(addr_b, "r").await;
    eventually("joined", || a.room_size("r") == 1 && b.room_size("r") == 1).await;
    bounded(a.subscribed("r")).await;
    bounded(b.subscribed("r")).await;
    a.publish("r", "before").unwrap();
    assert_eq!(next_text(&mut on_a).await, "before");
    assert_eq!(next_text(&mut on_b).await, "before");

    redis.kill();
    // The `Disconnection` push tells both at once (their pings would take the 2 s timeout).
    let lost = tokio::time::Instant::now();
    eventually("the subscribers saw the loss", || {
        !a.broker_stats().unwrap().connected && !b.broker_stats().unwrap().connected
    })
    .await;
    assert!(
        lost.elapsed() < Duration::from_secs(1),
        "{:?}",
        lost.elapsed()
    );
    // The publisher finds out on its next pipeline; what it had in flight then counts as
    // lost. Everything after waits in the buffer until the bound, then fails.
    let (mut accepted, mut refused) = (0u64, 0u64);
    for i in 0..100 {
        match a.publish("r", format!("during {i}")) {
            Ok(_) => {
                accepted += 1;
                assert_eq!(next_text(&mut on_a).await, format!("during {i}"));
            }
            Err(HubError::Broker(_)) => refused += 1,
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert!(refused > 0, "the bound was reached");
    assert!(accepted >= 20, "the buffer took its bound: {accepted}");
    let stats = a.broker_stats().unwrap();
    assert_eq!(stats.rejected, refused, "every refusal is counted");

    redis.restart();
    bounded(a.subscribed("r")).await;
    bounded(b.subscribed("r")).await;
    eventually("the buffer is flushed", || {
        let s = a.broker_stats().unwrap();
        s.published + s.lost == 1 + accepted
    })
    .await;
    let stats = a.broker_stats().unwrap();
    assert!(stats.reconnects >= 1);
    // Once both subscribe again, publications cross again.
    a.publish("r", "after").unwrap();
    assert_eq!(next_text(&mut on_a).await, "after");
    loop {
        // B may get some of what waited in A's buffer first (if it subscribed in time).
        let text = next_text(&mut on_b).await;
        if text == "after" {
            break;
        }
        assert!(text.starts_with("during "), "unexpected {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_envelope_is_counted_and_skipped() {
    let redis = RedisServer::start();
    let a = node(&redis, PublishBuffer::default());
    let addr_a = hub_server(a.clone()).await;
    let mut on_a = member_of(addr_a, "r").await;
    eventually("joined", || a.room_size("r") == 1).await;
    bounded(a.subscribed("r")).await;
    redis.command(&["PUBLISH", "test:room:r", "not an envelope"]);
    eventually("counted", || a.broker_stats().unwrap().invalid == 1).await;
    // The member got nothing of it: the next message is the next publication.
    let b = node(&redis, PublishBuffer::default());
    b.publish("r", "valid").unwrap();
    assert_eq!(next_text(&mut on_a).await, "valid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_hub_closes_its_redis_connections() {
    let redis = RedisServer::start();
    // Connections other than the one that asks.
    let clients = || {
        let reply = redis.command(&["CLIENT", "LIST"]);
        reply.lines().filter(|l| l.contains("addr=")).count() - 1
    };
    assert_eq!(clients(), 0);
    let a = node(&redis, PublishBuffer::default());
    a.publish("r", "x").unwrap();
    eventually("published", || a.broker_stats().unwrap().published == 1).await;
    eventually("subscriber up", || a.broker_stats().unwrap().connected).await;
    assert_eq!(clients(), 2, "the publisher's and the subscriber's");
    drop(a);
    let deadline = tokio::time::Instant::now() + support::TIMEOUT;
    while clients() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "connections stay");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_follow_members_through_churn() {
    let redis = RedisServer::start();
    let a = node(&redis, PublishBuffer::default());
    let addr_a = hub_server(a.clone()).await;
    // Rooms 0-9 flap: members come and go quickly; rooms with an even number keep one.
    let mut keep = Vec::new();
    for round in 0..5 {
        let mut passing = Vec::new();
        for room in 0..10 {
            passing.push(member_of(addr_a, &format!("flap{room}")).await);
            if round == 4 && room % 2 == 0 {
                keep.push(member_of(addr_a, &format!("flap{room}")).await);
            }
        }
        drop(passing);
    }
    eventually("the churn settles", || {
        (0..10).all(|room| a.room_size(&format!("flap{room}")) == usize::from(room % 2 == 0))
    })
    .await;
    let deadline = tokio::time::Instant::now() + support::TIMEOUT;
    loop {
        let counts: Vec<usize> = (0..10)
            .map(|room| subscribers(&redis, &format!("flap{room}")))
            .collect();
        if counts == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis subscriptions {counts:?} do not match the rooms' members"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(keep);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_is_dialled_again() {
    let redis = RedisServer::start();
    let broker = RedisBroker::builder(redis.url())
        .prefix("test")
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let a = Hub::builder().broker(broker).build();
    let b = node(&redis, PublishBuffer::default());
    let addr_a = hub_server(a.clone()).await;
    let mut on_a = member_of(addr_a, "r").await;
    eventually("joined", || a.room_size("r") == 1).await;
    bounded(a.subscribed("r")).await;
    // The server keeps its connections open but answers nothing for 2 s: only the ping,
    // sent when nothing came for a timeout, finds that out.
    redis.command(&["CLIENT", "PAUSE", "2000", "ALL"]);
    eventually("the silence noticed", || {
        !a.broker_stats().unwrap().connected
    })
    .await;
    eventually("dialled again", || {
        let stats = a.broker_stats().unwrap();
        stats.connected && stats.reconnects >= 1
    })
    .await;
    bounded(a.subscribed("r")).await;
    b.publish("r", "across").unwrap();
    assert_eq!(next_text(&mut on_a).await, "across");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_frozen_for_10_s_publishing_never_waits_and_buffering_stays_bounded() {
    let redis = RedisServer::start();
    let buffer = PublishBuffer::new(1_000, 1 << 20);
    let (a, b) = (node(&redis, buffer), node(&redis, buffer));
    let (addr_a, addr_b) = (hub_server(a.clone()).await, hub_server(b.clone()).await);
    let mut on_a = member_of(addr_a, "r").await;
    let mut on_b = member_of(addr_b, "r").await;
    eventually("joined", || a.room_size("r") == 1 && b.room_size("r") == 1).await;
    bounded(a.subscribed("r")).await;
    bounded(b.subscribed("r")).await;
    a.publish("r", "before").unwrap();
    assert_eq!(next_text(&mut on_a).await, "before");
    assert_eq!(next_text(&mut on_b).await, "before");

    redis.freeze();
    let frozen = tokio::time::Instant::now();
    let (mut accepted, mut refused, mut slowest) = (0u64, 0u64, Duration::ZERO);
    let mut i = 0;
    while frozen.elapsed() < Duration::from_secs(10) {
        let started = std::time::Instant::now();
        let published = a.publish("r", format!("during {i}"));
        slowest = slowest.max(started.elapsed());
        match published {
            Ok(_) => {
                accepted += 1;
                // Local members are not held up by the broker.
                assert_eq!(next_text(&mut on_a).await, format!("during {i}"));
            }
            Err(HubError::Broker(_)) => refused += 1,
            Err(other) => panic!("unexpected error {other}"),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    redis.thaw();
    // Publishing only queues (or refuses): it never waits for Redis.
    assert!(
        slowest < Duration::from_millis(100),
        "a publish took {slowest:?}"
    );
    assert!(refused > 0, "the bound was reached: {accepted} accepted");
    let stats = a.broker_stats().unwrap();
    assert_eq!(stats.rejected, refused, "every refusal is counted");
    // Everything accepted is published or counted lost once Redis answers again: nothing
    // stays held.
    eventually("the buffer is flushed", || {
        let s = a.broker_stats().unwrap();
        s.published + s.lost == 1 + accepted
    })
    .await;
    bounded(a.subscribed("r")).await;
    bounded(b.subscribed("r")).await;
    a.publish("r", "after").unwrap();
    assert_eq!(next_text(&mut on_a).await, "after");
    // B gets some of what was accepted meanwhile, each once and in order, then "after".
    let mut last = None;
    loop {
        let text = next_text(&mut on_b).await;
        if text == "after" {
            break;
        }
        let n: u64 = text
            .strip_prefix("during ")
            .expect("a publication")
            .parse()
            .unwrap();
        assert!(last.is_none_or(|last| n > last), "{n} after {last:?}");
        last = Some(n);
    }
}
