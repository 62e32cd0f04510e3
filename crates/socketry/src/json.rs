//! JSON messages (feature `json`): gorilla's `ReadJSON` and `WriteJSON`.

use serde::{Serialize, de::DeserializeOwned};
use socketry_proto::Message;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{Error, WebSocket, WebSocketReader, WebSocketWriter};

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Message, Error> {
    Ok(Message::text(
        serde_json::to_string(value).map_err(Error::Json)?,
    ))
}

/// Parses a data message; `None` for pings and pongs, which carry no JSON.
fn decode<T: DeserializeOwned>(message: &Message) -> Option<Result<T, Error>> {
    match message {
        Message::Text(_) | Message::Binary(_) => {
            Some(serde_json::from_slice(message.as_payload()).map_err(Error::Json))
        }
        _ => None,
    }
}

macro_rules! recv_json {
    ($receiver:expr) => {{
        loop {
            match $receiver.recv().await? {
                Ok(Message::Close(_)) => return None,
                Ok(message) => {
                    if let Some(value) = decode(&message) {
                        return Some(value);
                    }
                }
                Err(err) => return Some(Err(err)),
            }
        }
    }};
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Sends `value` as a JSON text message.
    ///
    /// # Errors
    ///
    /// [`Error::Json`] if `value` cannot be serialized (nothing is sent), and the errors of
    /// [`send`](Self::send).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(mut ws: socketry::WebSocket<tokio::net::TcpStream>) -> Result<(), socketry::Error> {
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Move { x: u32, y: u32 }
    ///
    /// ws.send_json(&Move { x: 1, y: 2 }).await?;
    /// if let Some(reply) = ws.recv_json::<Move>().await {
    ///     let reply = reply?; // a malformed message is Error::Json; the connection stays open
    ///     println!("{} {}", reply.x, reply.y);
    /// }
    /// # Ok(()) }
    /// # let _ = run;
    /// ```
    pub async fn send_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.send(encode(value)?).await
    }

    /// Receives the next data message and parses it as JSON; pings and pongs are skipped.
    /// `None` once the connection closed.
    ///
    /// # Errors
    ///
    /// [`Error::Json`] for a message that is not the expected JSON: only that message is
    /// lost, the connection stays usable. Otherwise as [`recv`](Self::recv).
    pub async fn recv_json<T: DeserializeOwned>(&mut self) -> Option<Result<T, Error>> {
        recv_json!(self)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketReader<S> {
    /// Receives and parses JSON; see [`WebSocket::recv_json`].
    ///
    /// # Errors
    ///
    /// As [`WebSocket::recv_json`].
    pub async fn recv_json<T: DeserializeOwned>(&mut self) -> Option<Result<T, Error>> {
        recv_json!(self)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketWriter<S> {
    /// Sends `value` as JSON; see [`WebSocket::send_json`].
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send_json`].
    pub async fn send_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.send(encode(value)?).await
    }
}
