//! JSON messages (feature `json`) and joined messages (gorilla's `JoinMessages`).

mod support;

use serde::{Deserialize, Serialize};
use socketry::{Error, Message};
use support::*;
use tokio::io::AsyncBufReadExt;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Move {
    player: String,
    x: i32,
    y: i32,
}

#[tokio::test]
async fn json_round_trips_and_a_malformed_message_leaves_the_connection_usable() {
    let addr = socketry_echo_server().await;
    let (mut ws, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    let m = Move {
        player: "ann".into(),
        x: 3,
        y: -4,
    };
    ws.send_json(&m).await.unwrap();
    assert_eq!(bounded(ws.recv_json::<Move>()).await.unwrap().unwrap(), m);

    ws.send("{ not json").await.unwrap();
    ws.send(Message::Ping("skipped".into())).await.unwrap();
    ws.send_json(&m).await.unwrap();
    let bad = bounded(ws.recv_json::<Move>()).await.unwrap();
    assert!(matches!(bad, Err(Error::Json(_))), "{bad:?}");
    let good = bounded(ws.recv_json::<Move>()).await.unwrap().unwrap();
    assert_eq!(
        good, m,
        "the connection is still usable after a bad message"
    );
}

#[tokio::test]
async fn joined_messages_read_as_lines() {
    let addr = serve(|stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        for line in ["alpha", "", "gamma with ünïcode"] {
            ws.send(line).await.unwrap();
        }
        ws.send_frame(socketry::OpCode::Text, "frag".into(), false)
            .await
            .unwrap();
        ws.send_frame(socketry::OpCode::Continuation, "mented".into(), true)
            .await
            .unwrap();
        ws.close(socketry::CloseCode::NORMAL, "").await.unwrap();
    })
    .await;
    let (mut ws, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    let mut lines = tokio::io::BufReader::new(ws.join_messages("\n")).lines();
    let mut got = Vec::new();
    while let Some(line) = bounded(lines.next_line()).await.unwrap() {
        got.push(line);
    }
    assert_eq!(got, ["alpha", "", "gamma with ünïcode", "fragmented"]);
}
