//! The hub across nodes on a real `nats-server` (started by the test on a free loopback port,
//! stopped by PID): two hubs in one process stand for two nodes, each with its own WebSocket
//! server and its own `NatsBroker` client.
#![cfg(feature = "nats")]

mod support;

use std::time::Duration;

use socketry_hub::{Hub, HubError, NatsBroker, PublishBuffer};
use support::{bounded, brokers::NatsServer, eventually, hub_server, member_of, next_text};

fn node(nats: &NatsServer, buffer: PublishBuffer) -> Hub {
    let broker = NatsBroker::builder(nats.url())
        .prefix("test")
        .publish_buffer(buffer)
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .expect("broker");
    Hub::builder().broker(broker).build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_nodes_get_every_publication_once_in_order() {
    let nats = NatsServer::start();
    let (a, b) = (
        node(&nats, PublishBuffer::default()),
        node(&nats, PublishBuffer::default()),
    );
    support::cluster::members_on_two_nodes_get_every_publication_once_in_order(a, b, || {
        nats.subscriptions("test.room.")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_subscribes_on_its_first_member_and_unsubscribes_after_its_last() {
    let nats = NatsServer::start();
    let b = node(&nats, PublishBuffer::default());
    let addr_b = hub_server(b.clone()).await;
    // A room whose name is no valid subject token as it is.
    let room = "a.room*with>dots";
    let first = member_of(addr_b, room).await;
    let second = member_of(addr_b, room).await;
    eventually("joined", || b.room_size(room) == 2).await;
    bounded(b.subscribed(room)).await;
    assert_eq!(nats.subscriptions("test.room."), 1);
    let a = node(&nats, PublishBuffer::default());
    let mut third = member_of(addr_b, room).await;
    eventually("joined", || b.room_size(room) == 3).await;
    a.publish(room, "hello").unwrap();
    assert_eq!(next_text(&mut third).await, "hello");
    drop((first, second, third));
    eventually("the last left", || b.room_size(room) == 0).await;
    let deadline = tokio::time::Instant::now() + support::TIMEOUT;
    while nats.subscriptions("test.room.") != 0 {
        assert!(tokio::time::Instant::now() < deadline, "never unsubscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_nats_is_away_local_delivery_goes_on_and_the_client_resubscribes() {
    let mut nats = NatsServer::start();
    let buffer = PublishBuffer::new(20, 1 << 20);
    let (a, b) = (node(&nats, buffer), node(&nats, buffer));
    let (addr_a, addr_b) = (hub_server(a.clone()).await, hub_server(b.clone()).await);
    let mut on_a = member_of(addr_a, "r").await;
    let mut on_b = member_of(addr_b, "r").await;
    eventually("joined", || a.room_size("r") == 1 && b.room_size("r") == 1).await;
    bounded(a.subscribed("r")).await;
    bounded(b.subscribed("r")).await;
    a.publish("r", "before").unwrap();
    assert_eq!(next_text(&mut on_a).await, "before");
    assert_eq!(next_text(&mut on_b).await, "before");

    nats.kill();
    eventually("both saw the loss", || {
        !a.broker_stats().unwrap().connected && !b.broker_stats().unwrap().connected
    })
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), a.subscribed("r"))
            .await
            .is_err(),
        "nothing counts as subscribed while NATS is away"
    );
    // The client's own command channel takes some; then the publish buffer fills; then
    // publishing fails, and each refusal is counted.
    let (mut accepted, mut refused) = (0u64, 0u64);
    for i in 0..5000 {
        match a.publish("r", format!("during {i}")) {
            Ok(_) => {
                accepted += 1;
                assert_eq!(next_text(&mut on_a).await, format!("during {i}"));
            }
            Err(HubError::Broker(_)) => refused += 1,
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert!(refused > 0, "the bound was reached after {accepted}");
    assert_eq!(a.broker_stats().unwrap().rejected, refused);

    nats.restart();
    eventually("both connected again", || {
        let (sa, sb) = (a.broker_stats().unwrap(), b.broker_stats().unwrap());
        sa.connected && sb.connected && sa.reconnects >= 1 && sb.reconnects >= 1
    })
    .await;
    bounded(a.subscribed("r")).await;
    bounded(b.subscribed("r")).await;
    a.publish("r", "after").unwrap();
    assert_eq!(next_text(&mut on_a).await, "after");
    loop {
        let text = next_text(&mut on_b).await;
        if text == "after" {
            break;
        }
        assert!(text.starts_with("during "), "unexpected {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_hub_closes_its_nats_connection() {
    let nats = NatsServer::start();
    let a = node(&nats, PublishBuffer::default());
    // The client names itself after its node.
    let name = format!("socketry-hub {}", a.node());
    a.publish("r", "x").unwrap();
    eventually("connected", || a.broker_stats().unwrap().connected).await;
    eventually("published", || a.broker_stats().unwrap().published == 1).await;
    assert_eq!(nats.connections_named(&name), 1);
    drop(a);
    let deadline = tokio::time::Instant::now() + support::TIMEOUT;
    while nats.connections_named(&name) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connection stays"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_that_is_no_subject_is_refused_when_the_broker_is_built() {
    let err = NatsBroker::builder("nats://127.0.0.1:4222")
        .prefix("bad prefix")
        .build()
        .unwrap_err();
    assert!(matches!(err, HubError::Broker(_)), "{err}");
    assert!(
        NatsBroker::builder("nats://127.0.0.1:4222")
            .prefix("a..b")
            .build()
            .is_err()
    );
    assert!(
        NatsBroker::builder("nats://127.0.0.1:4222")
            .prefix("ok.prefix")
            .build()
            .is_ok()
    );
}
