//! A `PreparedMessage` framed once and sent to 1,000 connections.

mod support;

use socketry::{Message, PreparedMessage};
use support::*;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_prepared_message_reaches_a_thousand_connections() {
    const N: usize = 1000;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let clients = tokio::spawn(async move {
        let mut tasks = Vec::with_capacity(N);
        for _ in 0..N {
            let (ws, _) = socketry::connect(&format!("ws://{addr}/")).await.unwrap();
            tasks.push(ws);
        }
        tasks
    });
    let mut servers = Vec::with_capacity(N);
    for _ in 0..N {
        let (stream, _) = bounded(listener.accept()).await.unwrap();
        servers.push(socketry::accept(stream).await.unwrap());
    }
    let mut clients = bounded(clients).await.unwrap();

    let prepared = PreparedMessage::new(Message::text("tick 1"));
    for ws in &mut servers {
        ws.send_prepared(&prepared).await.unwrap();
    }
    let binary = PreparedMessage::new(Message::binary(vec![9u8; 100_000]));
    for ws in &mut servers {
        ws.send_prepared(&binary).await.unwrap();
    }
    for ws in &mut clients {
        assert_eq!(
            bounded(ws.recv()).await.unwrap().unwrap(),
            Message::text("tick 1")
        );
        assert_eq!(
            bounded(ws.recv()).await.unwrap().unwrap(),
            Message::binary(vec![9u8; 100_000])
        );
    }
    // The other way: clients mask per connection, and the servers see the same message.
    let up = PreparedMessage::new(Message::text("from a client"));
    for ws in clients.iter_mut().take(10) {
        ws.send_prepared(&up).await.unwrap();
    }
    for ws in servers.iter_mut().take(10) {
        assert_eq!(
            bounded(ws.recv()).await.unwrap().unwrap(),
            Message::text("from a client")
        );
    }
}
