//! `Conn::attach`: a controller's connection in a socketry-hub hub.

mod support;

use axum::Router;
use futures_util::{SinkExt, StreamExt};
use socketry_axum::{
    Upgrader, handler_fn,
    hub::{ClientInfo, Hub},
};
use support::{bounded, serve};
use tokio_tungstenite::tungstenite::Message;

type Client = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn connect(addr: std::net::SocketAddr, path: &str) -> Client {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(format!("ws://{addr}{path}"), tcp)
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn what_a_controller_queued_through_its_member_arrives_before_the_automatic_close() {
    let hub = Hub::default();
    let server_hub = hub.clone();
    let upgrader = Upgrader::new(handler_fn(move |conn, _request| {
        let hub = server_hub.clone();
        Box::pin(async move {
            let member = conn.attach(&hub, ClientInfo::new("x"))?;
            for i in 0..50 {
                member.send(format!("bye {i}"))?;
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
            // `serve` returns at once: the close must wait for the 50 messages.
        })
    }));
    let addr = serve(upgrader.route(Router::new(), "/ws")).await;
    let mut ws = connect(addr, "/ws").await;
    for i in 0..50 {
        match bounded(ws.next()).await {
            Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), format!("bye {i}")),
            other => panic!("message {i}: {other:?}"),
        }
    }
    match bounded(ws.next()).await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected the close, got {other:?}"),
    }
    assert_eq!(hub.stats().connections, 0);
}

#[tokio::test]
async fn an_attached_connection_reads_with_recv_and_its_room_hears_it() {
    let hub = Hub::default();
    let server_hub = hub.clone();
    let upgrader = Upgrader::new(handler_fn(move |conn, _request| {
        let hub = server_hub.clone();
        Box::pin(async move {
            let member = conn.attach(&hub, ClientInfo::default())?;
            member.join("room")?;
            // The writer went to the hub: the Conn's own sending ends at once.
            assert!(conn.send("direct").await.is_err());
            while let Some(message) = conn.recv().await {
                let message = message?;
                if message.is_text() {
                    member.publish_to_others("room", message)?;
                }
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        })
    }));
    let addr = serve(upgrader.route(Router::new(), "/ws")).await;
    let mut a = connect(addr, "/ws").await;
    let mut b = connect(addr, "/ws").await;
    bounded(async {
        while hub.room_size("room") < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
    a.send(Message::text("from a")).await.unwrap();
    match bounded(b.next()).await {
        Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), "from a"),
        other => panic!("{other:?}"),
    }
    a.close(None).await.unwrap();
    bounded(async { while let Some(Ok(_)) = a.next().await {} }).await;
    bounded(async {
        while hub.room_size("room") != 1 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
}
