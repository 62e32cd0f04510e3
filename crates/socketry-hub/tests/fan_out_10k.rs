//! 10,000 subscribers in one room receive every message, in order. The subscribers run in a
//! child process (this test binary again), so that each process stays under the file limit.

mod support;

use std::{process::Stdio, time::Duration};

use socketry::Message;
use socketry_hub::Hub;
use support::{eventually, hub_server, member_of};
use tokio::io::{AsyncBufReadExt, BufReader};

const SUBSCRIBERS: usize = 10_000;
const MESSAGES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_subscribers_receive_every_message_in_order() {
    support::raise_file_limit();
    let hub = Hub::default();
    let addr = hub_server(hub.clone()).await;
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "subscriber_process", "--nocapture"])
        .env("HUB_ADDR", addr.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let wait = async {
        eventually("10,000 joins", || hub.room_size("all") == SUBSCRIBERS).await;
        for seq in 0..MESSAGES {
            let report = hub.publish("all", format!("{seq}")).unwrap();
            assert_eq!(report.delivered, SUBSCRIBERS);
        }
        let mut result = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("RESULT ") {
                result = Some(rest.to_owned());
            }
        }
        let status = child.wait().await.unwrap();
        (result, status)
    };
    let (result, status) = tokio::time::timeout(Duration::from_secs(240), wait)
        .await
        .expect("the fan-out took over 4 minutes");
    assert!(status.success(), "subscriber process failed: {result:?}");
    assert_eq!(
        result.as_deref(),
        Some("10000 subscribers got 20 messages in order")
    );
    assert_eq!(hub.stats().deliveries, (SUBSCRIBERS * MESSAGES) as u64);
    // A connection leaves the hub's table before its rooms: wait for both.
    eventually("every subscriber and its room to go", || {
        let stats = hub.stats();
        stats.connections == 0 && stats.rooms == 0
    })
    .await;
}

/// The subscribers' side, run by the test above in a child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by ten_thousand_subscribers_receive_every_message_in_order"]
async fn subscriber_process() {
    support::raise_file_limit();
    let addr = std::env::var("HUB_ADDR").unwrap().parse().unwrap();
    let connecting = tokio::sync::Semaphore::new(256);
    let connecting = std::sync::Arc::new(connecting);
    let mut tasks = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let permit = connecting.clone().acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut ws = member_of(addr, "all").await;
            drop(permit);
            for expected in 0..MESSAGES {
                match ws.recv().await {
                    Some(Ok(Message::Text(text))) => {
                        assert_eq!(text.parse::<usize>().unwrap(), expected)
                    }
                    other => panic!("got {other:?}"),
                }
            }
            ws
        }));
    }
    let mut done = Vec::new();
    for task in tasks {
        done.push(task.await.unwrap());
    }
    println!(
        "RESULT {} subscribers got {MESSAGES} messages in order",
        done.len()
    );
}
