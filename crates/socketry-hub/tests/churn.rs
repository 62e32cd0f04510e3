//! Joins, leaves and presence under churn: connections come and go while messages flow, and
//! nothing of theirs stays behind.

mod support;

use std::time::Duration;

use socketry::{CloseCode, Message};
use socketry_hub::Hub;
use support::{bounded, client, eventually, hub_server, member_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_stays_exact_while_connections_come_and_go_during_publishing() {
    const PUBLICATIONS: usize = 2000;
    let hub = Hub::default();
    let addr = hub_server(hub.clone()).await;
    let mut steady = member_of(addr, "churn").await;
    eventually("steady join", || hub.room_size("churn") == 1).await;

    // Churners: connect, join two rooms, read a little, close or vanish; over and over.
    let mut churners = Vec::new();
    for worker in 0..20 {
        churners.push(tokio::spawn(async move {
            for round in 0..25 {
                let mut ws = client(addr).await;
                ws.send("join churn").await.unwrap();
                ws.send(format!("join private-{worker}")).await.unwrap();
                let _ = tokio::time::timeout(Duration::from_millis(2), ws.recv()).await;
                if round % 2 == 0 {
                    let _ = ws.close(CloseCode::NORMAL, "").await;
                    while let Some(Ok(_)) = ws.recv().await {}
                } // else: dropped without a close, as a vanished peer
            }
        }));
    }
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for seq in 0..PUBLICATIONS {
                hub.publish("churn", format!("{seq}")).unwrap();
                if seq % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    // The steady member gets every publication, in order, whoever comes and goes.
    for expected in 0..PUBLICATIONS {
        match bounded(steady.recv()).await {
            Some(Ok(Message::Text(text))) => assert_eq!(text.parse::<usize>().unwrap(), expected),
            other => panic!("steady member got {other:?}"),
        }
    }
    bounded(publisher).await.unwrap();
    for churner in churners {
        bounded(churner).await.unwrap();
    }
    eventually("the churners to leave", || hub.room_size("churn") == 1).await;
    let members = hub.local_members("churn");
    assert_eq!(members.len(), 1);
    assert_eq!(hub.stats().connections, 1);
    assert_eq!(
        hub.stats().rooms,
        1,
        "every private room went with its last member"
    );
    assert_eq!(hub.stats().slow_disconnects, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_left_after_ten_thousand_connections_come_and_go() {
    const CONNECTIONS: usize = 10_000;
    const AT_ONCE: usize = 500;
    support::raise_file_limit();
    let hub = Hub::default();
    let addr = hub_server(hub.clone()).await;
    for batch in 0..CONNECTIONS / AT_ONCE {
        let mut clients = Vec::new();
        for i in 0..AT_ONCE {
            let mut ws = member_of(addr, "shared").await;
            ws.send(format!("join own-{batch}-{i}")).await.unwrap();
            ws.send(format!("join batch-{batch}")).await.unwrap();
            clients.push(ws);
        }
        eventually("the batch's joins", || {
            hub.room_size(&format!("batch-{batch}")) == AT_ONCE
        })
        .await;
        hub.publish("shared", "tick").unwrap();
        for (i, mut ws) in clients.into_iter().enumerate() {
            if i % 2 == 0 {
                assert!(matches!(
                    bounded(ws.recv()).await,
                    Some(Ok(Message::Text(_)))
                ));
                let _ = ws.close(CloseCode::NORMAL, "").await;
            }
        }
    }
    // A connection leaves the hub's table before its rooms: wait for both.
    eventually("every connection and room to go", || {
        let stats = hub.stats();
        stats.connections == 0 && stats.rooms == 0
    })
    .await;
    let stats = hub.stats();
    assert_eq!(stats.rooms, 0, "{stats:?}");
    assert_eq!(hub.room_size("shared"), 0);
    assert!(hub.local_members("shared").is_empty());
}
