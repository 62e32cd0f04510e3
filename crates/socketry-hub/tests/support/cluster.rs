//! Scenarios every broker between nodes must pass, run by each broker's test file against
//! its real server.

use socketry_hub::Hub;

use super::{bounded, eventually, hub_server, member_of, next_text};

/// Two nodes, one member on `a` and two on `b` in one room: 200 publications from `a` and 100
/// from `b` reach all three members once each, in each publisher's order; the broker holds
/// one subscription per node (`subscriptions` asks the server).
pub async fn members_on_two_nodes_get_every_publication_once_in_order(
    a: Hub,
    b: Hub,
    subscriptions: impl Fn() -> usize,
) {
    let (addr_a, addr_b) = (hub_server(a.clone()).await, hub_server(b.clone()).await);
    let mut on_a = member_of(addr_a, "lobby").await;
    let mut on_b = member_of(addr_b, "lobby").await;
    let mut also_on_b = member_of(addr_b, "lobby").await;
    eventually("members joined", || {
        a.room_size("lobby") == 1 && b.room_size("lobby") == 2
    })
    .await;
    bounded(a.subscribed("lobby")).await;
    bounded(b.subscribed("lobby")).await;
    assert_eq!(
        subscriptions(),
        2,
        "one subscription per node, not per member"
    );

    for i in 0..200 {
        a.publish("lobby", format!("a{i}")).unwrap();
        if i % 2 == 0 {
            b.publish("lobby", format!("b{i}")).unwrap();
        }
    }
    for ws in [&mut on_a, &mut on_b, &mut also_on_b] {
        let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
        while from_a.len() < 200 || from_b.len() < 100 {
            let text = next_text(ws).await;
            match text.as_bytes()[0] {
                b'a' => from_a.push(text),
                _ => from_b.push(text),
            }
        }
        // Each publisher's order holds on every node; nothing came twice (an echo of a
        // node's own publication would show up here as an extra message).
        assert_eq!(
            from_a,
            (0..200).map(|i| format!("a{i}")).collect::<Vec<_>>()
        );
        assert_eq!(
            from_b,
            (0..200)
                .step_by(2)
                .map(|i| format!("b{i}"))
                .collect::<Vec<_>>()
        );
    }
    // Nothing more is on its way: a marker published after everything arrives next.
    a.publish("lobby", "end").unwrap();
    for ws in [&mut on_a, &mut on_b, &mut also_on_b] {
        assert_eq!(next_text(ws).await, "end");
    }
    eventually("publications handed over", || {
        a.broker_stats().unwrap().published == 201 && b.broker_stats().unwrap().published == 100
    })
    .await;
    let (stats_a, stats_b) = (a.broker_stats().unwrap(), b.broker_stats().unwrap());
    assert_eq!(stats_a.received, 100, "B's publications, once each");
    assert_eq!(stats_b.received, 201, "A's publications, once per node");
    assert_eq!((stats_a.invalid, stats_a.lost, stats_a.rejected), (0, 0, 0));
}
