//! History and recovery across nodes on a real `redis-server` (started by the test on a free
//! loopback port, stopped by PID): Redis numbers each publication of a room that keeps
//! history, keeps it in a stream, and every node delivers in that order; a client that comes
//! back on another node with its last position gets what it missed.
#![cfg(feature = "redis")]

mod support;

use std::time::Duration;

use socketry::Message;
use socketry_hub::{History, Hub, HubConfig, RedisBroker, RoomOptions};
use support::{
    Client, bounded, brokers::RedisServer, eventually, hub_server, member_of, next_text,
};

fn node(redis: &RedisServer, max_len: usize) -> Hub {
    let broker = RedisBroker::builder(redis.url())
        .prefix("test")
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .timeout(Duration::from_secs(2))
        .build()
        .expect("broker");
    let config = HubConfig::default().room_options(move |_| {
        RoomOptions::default().history(
            History::new(|position, message| {
                let text = String::from_utf8_lossy(message.as_payload());
                Message::text(format!("{position} {text}"))
            })
            .max_len(max_len),
        )
    });
    Hub::builder().config(config).broker(broker).build()
}

/// `(offset, epoch, text)` of a numbered publication.
async fn next_numbered(ws: &mut Client) -> (u64, String, String) {
    let text = next_text(ws).await;
    let (position, body) = text.split_once(' ').expect("<position> <text>");
    let (offset, epoch) = position.split_once(':').expect("<offset>:<epoch>");
    (
        offset.parse().expect("an offset"),
        epoch.to_owned(),
        body.to_owned(),
    )
}

/// A client on `a` sees the first ten publications (made on `b`) and leaves; returns the
/// last position it saw.
async fn saw_ten_and_left(a: &Hub, b: &Hub, room: &str) -> String {
    let addr_a = hub_server(a.clone()).await;
    let mut first = member_of(addr_a, room).await;
    eventually("joined", || a.room_size(room) == 1).await;
    bounded(a.subscribed(room)).await;
    for i in 0..10 {
        b.publish(room, format!("m{i}")).unwrap();
    }
    let mut last = String::new();
    for i in 0..10u64 {
        let (offset, epoch, text) = next_numbered(&mut first).await;
        assert_eq!((offset, text), (i + 1, format!("m{i}")));
        last = format!("{offset}:{epoch}");
    }
    drop(first);
    eventually("left", || a.room_size(room) == 0).await;
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_back_on_another_node_gets_the_500_it_missed_in_order_then_the_live_ones() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, 1_000), node(&redis, 1_000));
    let last = saw_ten_and_left(&a, &b, "r").await;
    for i in 10..510 {
        b.publish("r", format!("m{i}")).unwrap();
    }
    eventually("B's publications in Redis", || {
        b.broker_stats().unwrap().published == 510
    })
    .await;
    // Back on node B while node A goes on publishing: the missed ones, then the live ones,
    // each once, in the order Redis numbered them.
    let addr_b = hub_server(b.clone()).await;
    let mut back = support::client(addr_b).await;
    back.send(format!("recover r {last}")).await.unwrap();
    let publisher = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 510..610 {
                a.publish("r", format!("m{i}")).unwrap();
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
    };
    let mut expected = 11;
    let mut reply = None;
    while expected <= 610 {
        let text = next_text(&mut back).await;
        if let Some(rest) = text.strip_prefix("recovery ") {
            reply = Some(rest.to_owned());
            continue;
        }
        let (position, body) = text.split_once(' ').unwrap();
        let offset: u64 = position.split_once(':').unwrap().0.parse().unwrap();
        assert_eq!(offset, expected, "{text}");
        assert_eq!(body, format!("m{}", expected - 1));
        expected += 1;
    }
    publisher.await.unwrap();
    let reply = match reply {
        Some(reply) => reply,
        None => next_text(&mut back).await,
    };
    // At least the 500 missed; more if A's first ones were in Redis before the read.
    let missed: usize = reply.rsplit(' ').next().unwrap().parse().expect(&reply);
    assert!(
        reply.contains("recovered") && (500..=600).contains(&missed),
        "{reply}"
    );
    let stats = a.broker_stats().unwrap();
    assert_eq!((stats.lost, stats.rejected, stats.invalid), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_trimming_or_a_redis_restart_the_client_is_told_why_it_cannot_recover() {
    let mut redis = RedisServer::start();
    let (a, b) = (node(&redis, 100), node(&redis, 100));
    let last = saw_ten_and_left(&a, &b, "r").await;
    for i in 10..510 {
        b.publish("r", format!("m{i}")).unwrap();
    }
    eventually("published", || b.broker_stats().unwrap().published == 510).await;
    let epoch = last.split_once(':').unwrap().1.to_owned();
    let addr_a = hub_server(a.clone()).await;
    let mut back = support::client(addr_a).await;
    back.send(format!("recover r {last}")).await.unwrap();
    assert_eq!(
        next_text(&mut back).await,
        format!("recovery lost Trimmed 510:{epoch}")
    );
    // Redis restarts empty: the room's history starts again in a new epoch.
    redis.restart();
    bounded(a.subscribed("r")).await;
    let mut again = support::client(addr_a).await;
    again
        .send("recover r 510:".to_owned() + &epoch)
        .await
        .unwrap();
    let reply = next_text(&mut again).await;
    assert!(reply.starts_with("recovery lost EpochChanged"), "{reply}");
    // The next publication opens the new epoch at 1, and members get it.
    eventually("B subscribed again", || b.broker_stats().unwrap().connected).await;
    let deadline = tokio::time::Instant::now() + support::TIMEOUT;
    let (offset, new_epoch, text) = loop {
        // The publisher finds the restart on its next pipeline: the first tries may be lost.
        b.publish("r", "fresh").unwrap();
        match tokio::time::timeout(Duration::from_millis(300), next_numbered(&mut again)).await {
            Ok(got) => break got,
            Err(_) => assert!(tokio::time::Instant::now() < deadline, "nothing crossed"),
        }
    };
    assert_eq!(text, "fresh");
    assert_ne!(new_epoch, epoch);
    assert!(offset >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_back_from_an_older_snapshot_starts_a_new_epoch_instead_of_reusing_offsets() {
    let mut redis = RedisServer::start();
    let (a, b) = (node(&redis, 100), node(&redis, 100));
    let last = saw_ten_and_left(&a, &b, "r").await;
    let epoch = last.split_once(':').unwrap().1.to_owned();
    // A snapshot at offset 10, then 10 more that clients see but the snapshot has not.
    assert_eq!(redis.command(&["SAVE"]), "+OK\r\n");
    for i in 10..20 {
        b.publish("r", format!("m{i}")).unwrap();
    }
    eventually("published", || b.broker_stats().unwrap().published == 20).await;
    // Killed, and back from the snapshot: the room's epoch is the old one, its top 10.
    redis.restart();
    assert_eq!(
        redis.command(&["HGET", "test:history:meta:r", "top"]),
        "$2\r\n10\r\n"
    );
    // New publications must not be numbered 11.. in the old epoch: those offsets named
    // other publications for the clients that saw them.
    let deadline = tokio::time::Instant::now() + support::TIMEOUT;
    loop {
        b.publish("r", "after").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = redis.command(&["HGET", "test:history:meta:r", "epoch"]);
        if !now.contains(&epoch) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still epoch {epoch}"
        );
    }
    // A client that saw up to 15 of the old epoch is told, not sent the new ones as 16...
    let addr_a = hub_server(a.clone()).await;
    let mut back = support::client(addr_a).await;
    back.send(format!("recover r 15:{epoch}")).await.unwrap();
    let reply = next_text(&mut back).await;
    assert!(reply.starts_with("recovery lost EpochChanged"), "{reply}");
}
