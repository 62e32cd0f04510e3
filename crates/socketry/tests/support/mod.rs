//! Helpers shared by the integration tests: loopback servers, raw peers, bounded waits.
#![allow(dead_code, unreachable_pub)] // each test file uses a different subset

use std::{future::Future, net::SocketAddr, time::Duration};

use bytes::BytesMut;
use socketry::{
    Message, Role, WebSocket,
    proto::frame::{Decoder, Frame, OpCode, encode_frame},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

/// Every wait in a test is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `f`, failing the test if it takes longer than [`TIMEOUT`].
pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .expect("test step timed out")
}

/// Serves every connection on a loopback port with `handler`; returns the address.
pub async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handler(stream));
        }
    });
    addr
}

/// Echoes text and binary messages until the connection ends.
/// Sends `text` on `ws` and asserts that the next message back is the same text.
pub async fn assert_echo<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>, text: &str) {
    ws.send(text).await.unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text(text)
    );
}

pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocket<S>) {
    while let Some(Ok(message)) = ws.recv().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

/// A tokio-tungstenite client (a peer nobody here wrote) connected to `addr`.
pub async fn tungstenite_client(addr: SocketAddr) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (ws, response) = tokio_tungstenite::client_async(format!("ws://{addr}/echo"), stream)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    ws
}

/// Sends text and binary messages of every [`SIZES`] length through `client`, one at a
/// time, and asserts that each comes back as sent.
pub async fn assert_tungstenite_echo_at_every_length(
    client: &mut tokio_tungstenite::WebSocketStream<TcpStream>,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as TMessage;
    for len in SIZES {
        client.send(TMessage::text(text_of(len))).await.unwrap();
        let reply = bounded(client.next()).await.unwrap().unwrap();
        assert_eq!(reply, TMessage::text(text_of(len)), "text {len}");
        client.send(TMessage::binary(binary_of(len))).await.unwrap();
        let reply = bounded(client.next()).await.unwrap().unwrap();
        assert_eq!(reply, TMessage::binary(binary_of(len)), "binary {len}");
    }
}

/// A socketry echo server on a loopback port.
pub async fn socketry_echo_server() -> SocketAddr {
    serve(|stream| async move {
        if let Ok(ws) = socketry::accept(stream).await {
            echo(ws).await;
        }
    })
    .await
}

/// A valid opening request for `addr`.
pub fn upgrade_request(addr: SocketAddr) -> String {
    format!(
        "GET /chat HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Sends `request` raw and returns the whole answer (until the server closes), as text.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    bounded(stream.read_to_end(&mut answer)).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// A hand-driven client: does the handshake, then sends and reads raw frames.
pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::connect_with(addr, "").await
    }

    /// Connects with extra request header lines (each ending in `\r\n`).
    pub async fn connect_with(addr: SocketAddr, extra_headers: &str) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request =
            upgrade_request(addr).replacen("\r\n\r\n", &format!("\r\n{extra_headers}\r\n"), 1);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = BytesMut::new();
        loop {
            assert!(
                bounded(stream.read_buf(&mut buf)).await.unwrap() > 0,
                "closed in handshake"
            );
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                assert!(
                    buf.starts_with(b"HTTP/1.1 101"),
                    "{:?}",
                    String::from_utf8_lossy(&buf)
                );
                let _ = buf.split_to(end + 4);
                break;
            }
        }
        let mut decoder = Decoder::new(Role::Client);
        decoder.set_max_frame_size(None);
        decoder.set_allowed_rsv(socketry::proto::frame::RSV1);
        Self {
            stream,
            buf,
            decoder,
        }
    }

    /// Sends one masked frame.
    pub async fn send_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        let mut wire = BytesMut::new();
        encode_frame(&mut wire, fin, 0, opcode, Some(rand_key()), payload);
        self.stream.write_all(&wire).await.unwrap();
    }

    /// Sends unfragmented masked frames in one write, so that they arrive together.
    pub async fn send_frames(&mut self, frames: &[(OpCode, &[u8])]) {
        let mut wire = BytesMut::new();
        for (opcode, payload) in frames {
            encode_frame(&mut wire, true, 0, *opcode, Some(rand_key()), payload);
        }
        self.stream.write_all(&wire).await.unwrap();
    }

    /// Reads the next frame, or `None` once the server closed the connection.
    pub async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self
                .decoder
                .decode(&mut self.buf)
                .expect("valid server frame")
            {
                return Some(frame);
            }
            match bounded(self.stream.read_buf(&mut self.buf)).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads frames until a close frame; returns its code.
    pub async fn read_close_code(&mut self) -> u16 {
        while let Some(frame) = self.read_frame().await {
            if frame.opcode == OpCode::Close {
                return u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
            }
        }
        panic!("connection ended without a close frame");
    }

    /// Whether the server closed the transport (reads end of file) in time.
    pub async fn closed_by_server(&mut self) -> bool {
        let mut scratch = [0u8; 1024];
        loop {
            match bounded(self.stream.read(&mut scratch)).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    }
}

fn rand_key() -> [u8; 4] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    nanos.to_le_bytes()
}

/// The message sizes every interop test walks: each length-encoding boundary.
pub const SIZES: [usize; 8] = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20];

/// `count` copies of one masked ping with a 125-byte payload (the largest a control frame
/// may carry), as a client flooding a server with pings writes them.
pub fn ping_flood(count: usize) -> Vec<u8> {
    let mut ping = BytesMut::new();
    encode_frame(
        &mut ping,
        true,
        0,
        OpCode::Ping,
        Some([1, 2, 3, 4]),
        &[0x55; 125],
    );
    ping.repeat(count)
}

/// A text message of `len` bytes mixing one-, two- and three-byte characters near the end.
pub fn text_of(len: usize) -> String {
    let mut s = "a".repeat(len.saturating_sub(6));
    while s.len() < len {
        s.push(match len - s.len() {
            n if n >= 3 => '€',
            2 => 'é',
            _ => 'z',
        });
    }
    s
}

/// A binary payload of `len` bytes with every byte value.
pub fn binary_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The message as socketry sees it: only to compare with.
pub fn text_message(len: usize) -> Message {
    Message::text(text_of(len))
}

/// Serves every connection with `handler` and reports what each handler returned.
pub async fn serve_reporting<T, F, Fut>(handler: F) -> (SocketAddr, mpsc::UnboundedReceiver<T>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = serve(move |stream| {
        let tx = tx.clone();
        let handled = handler(stream);
        async move {
            let _ = tx.send(handled.await);
        }
    })
    .await;
    (addr, rx)
}

/// A future that is ready at its `n`th poll, waking itself in between: raced against a
/// receive in `select!`, it cancels the receive at an arbitrary poll, whatever the timing.
pub fn after_polls(n: u32) -> impl Future<Output = ()> {
    let mut left = n;
    std::future::poll_fn(move |cx| {
        if left <= 1 {
            return std::task::Poll::Ready(());
        }
        left -= 1;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
}
