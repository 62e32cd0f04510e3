//! Sends each argument as a text message and prints the replies.
//!
//! ```sh
//! cargo run --example echo_server -- --addr 127.0.0.1:9001 &
//! cargo run --example client -- --url ws://127.0.0.1:9001 hello world
//! ```

use socketry::{CloseCode, Message};

#[tokio::main]
async fn main() -> Result<(), socketry::Error> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let url = match args.iter().position(|a| a == "--url") {
        Some(i) if i + 1 < args.len() => {
            let url = args.remove(i + 1);
            args.remove(i);
            url
        }
        _ => "ws://127.0.0.1:9001".to_owned(),
    };
    let (mut ws, _) = socketry::connect(&url).await?;
    for text in args {
        ws.send(Message::text(text)).await?;
        match ws.recv().await {
            Some(Ok(Message::Text(reply))) => println!("{reply}"),
            Some(Ok(other)) => println!("{other:?}"),
            Some(Err(err)) => return Err(err),
            None => break,
        }
    }
    ws.close(CloseCode::NORMAL, "done").await
}
