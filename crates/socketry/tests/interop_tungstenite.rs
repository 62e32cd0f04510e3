//! Interop with tokio-tungstenite, a peer nobody here wrote: our server with its client, our
//! client with its server. Text and binary at every length boundary, fragmented messages,
//! ping/pong, and close codes both ways.

mod support;

use futures_util::{SinkExt, StreamExt};
use socketry::{CloseCode, Message, OpCode};
use support::*;
use tokio_tungstenite::tungstenite::{
    self,
    protocol::{
        CloseFrame as TCloseFrame,
        frame::{
            Frame,
            coding::{CloseCode as TCloseCode, Data, OpCode as TOpCode},
        },
    },
};

type TMessage = tungstenite::Message;

#[tokio::test]
async fn our_server_echoes_a_tungstenite_client_at_every_length_boundary() {
    let addr = socketry_echo_server().await;
    let mut client = tungstenite_client(addr).await;
    assert_tungstenite_echo_at_every_length(&mut client).await;
    client.close(None).await.unwrap();
}

#[tokio::test]
async fn our_server_assembles_fragments_from_tungstenite() {
    let addr = socketry_echo_server().await;
    let mut client = tungstenite_client(addr).await;
    let text = text_of(300);
    let (a, b) = text.as_bytes().split_at(149); // inside a multi-byte char? 149 is ASCII
    let (b, c) = b.split_at(b.len() - 2); // splits the final '€'
    let frames = [
        Frame::message(a.to_vec(), TOpCode::Data(Data::Text), false),
        Frame::ping(b"between".to_vec()),
        Frame::message(b.to_vec(), TOpCode::Data(Data::Continue), false),
        Frame::message(c.to_vec(), TOpCode::Data(Data::Continue), true),
    ];
    for frame in frames {
        client.send(TMessage::Frame(frame)).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(bounded(client.next()).await.unwrap().unwrap());
    }
    assert_eq!(
        got[0],
        TMessage::Pong("between".into()),
        "ping answered first"
    );
    assert_eq!(got[1], TMessage::text(text));
}

#[tokio::test]
async fn our_server_answers_tungstenite_pings() {
    let addr = socketry_echo_server().await;
    let mut client = tungstenite_client(addr).await;
    client.send(TMessage::Ping("p1".into())).await.unwrap();
    assert_eq!(
        bounded(client.next()).await.unwrap().unwrap(),
        TMessage::Pong("p1".into())
    );
}

#[tokio::test]
async fn tungstenite_close_code_reaches_our_server_and_is_echoed() {
    let (addr, mut rx) = serve_reporting(move |stream| async move {
        let mut ws = socketry::accept(stream).await.unwrap();
        let first = ws.recv().await;
        let after = ws.recv().await;
        (first, after.is_none())
    })
    .await;
    let mut client = tungstenite_client(addr).await;
    client
        .close(Some(TCloseFrame {
            code: TCloseCode::from(4001),
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    let echoed = bounded(client.next()).await.unwrap().unwrap();
    assert_eq!(
        echoed,
        TMessage::Close(Some(TCloseFrame {
            code: TCloseCode::from(4001),
            reason: "".into()
        }))
    );
    let (first, then_none) = bounded(rx.recv()).await.unwrap();
    assert_eq!(
        first.unwrap().unwrap(),
        Message::Close(Some(socketry::CloseFrame::new(4001.into(), "bye")))
    );
    assert!(then_none, "recv returns None after the close");
}

async fn tungstenite_echo_server() -> std::net::SocketAddr {
    serve(|stream| async move {
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    })
    .await
}

#[tokio::test]
async fn our_client_talks_to_a_tungstenite_server_at_every_length_boundary() {
    let addr = tungstenite_echo_server().await;
    let (mut ws, response) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    assert_eq!(response.status(), 101);
    for len in SIZES {
        ws.send(text_message(len)).await.unwrap();
        assert_eq!(
            bounded(ws.recv()).await.unwrap().unwrap(),
            text_message(len)
        );
        ws.send(Message::binary(binary_of(len))).await.unwrap();
        assert_eq!(
            bounded(ws.recv()).await.unwrap().unwrap(),
            Message::binary(binary_of(len))
        );
    }
    bounded(ws.close(CloseCode::NORMAL, "done")).await.unwrap();
}

#[tokio::test]
async fn our_client_sends_fragments_that_tungstenite_assembles() {
    let addr = tungstenite_echo_server().await;
    let (mut ws, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    let text = text_of(70_000);
    let bytes = socketry::Bytes::from(text.clone());
    ws.send_frame(OpCode::Text, bytes.slice(..40_000), false)
        .await
        .unwrap();
    ws.send(Message::Ping("mid".into())).await.unwrap();
    ws.send_frame(OpCode::Continuation, bytes.slice(40_000..69_999), false)
        .await
        .unwrap();
    ws.send_frame(OpCode::Continuation, bytes.slice(69_999..), true)
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(bounded(ws.recv()).await.unwrap().unwrap());
    }
    assert_eq!(got[0], Message::Pong("mid".into()));
    assert_eq!(got[1], Message::text(text));
}

#[tokio::test]
async fn our_client_close_code_reaches_tungstenite() {
    let (addr, mut rx) = serve_reporting(move |stream| async move {
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        let mut close = None;
        while let Some(Ok(msg)) = ws.next().await {
            if let TMessage::Close(frame) = msg {
                close = frame;
            }
        }
        close
    })
    .await;
    let (mut ws, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    bounded(ws.close(CloseCode::GOING_AWAY, "navigating away"))
        .await
        .unwrap();
    let close = bounded(rx.recv()).await.unwrap().unwrap();
    assert_eq!(u16::from(close.code), 1001);
    assert_eq!(close.reason.as_str(), "navigating away");
    assert!(ws.recv().await.is_none(), "closed after the handshake");
}

#[tokio::test]
async fn tungstenite_server_close_reaches_our_client() {
    let addr = serve(|stream| async move {
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        ws.close(Some(TCloseFrame {
            code: TCloseCode::from(3001),
            reason: "server says bye".into(),
        }))
        .await
        .unwrap();
        while ws.next().await.is_some() {}
    })
    .await;
    let (mut ws, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    let close = bounded(ws.recv()).await.unwrap().unwrap();
    assert_eq!(
        close,
        Message::Close(Some(socketry::CloseFrame::new(
            3001.into(),
            "server says bye"
        )))
    );
    assert!(bounded(ws.recv()).await.is_none());
}

#[tokio::test]
async fn our_client_pings_and_gets_tungstenites_pong() {
    let addr = tungstenite_echo_server().await;
    let (mut ws, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
    ws.send(Message::Ping("hello?".into())).await.unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::Pong("hello?".into())
    );
}
