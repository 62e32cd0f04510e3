//! Streaming one message: [`MessageReader`] (`AsyncRead`) hands out an incoming message frame by
//! frame, [`MessageWriter`] (`AsyncWrite`) sends one as fragments — gorilla's `NextReader` and
//! `NextWriter`, for messages too large to hold.

use std::{
    fmt, io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes, BytesMut};
use socketry_proto::{Fragment, Incoming, Message, OpCode, utf8::Utf8Validator};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{
    Error, WebSocket, WebSocketReader, WebSocketWriter,
    core::Mode,
    endpoint::{self, Endpoint},
};

/// The default fragment size of a [`MessageWriter`]: 64 KiB.
pub const DEFAULT_FRAGMENT_SIZE: usize = 64 * 1024;

/// Copies what fits of `chunk` into `buf`; `false` if `chunk` was empty.
fn copy_out(chunk: &mut Bytes, buf: &mut ReadBuf<'_>) -> bool {
    if chunk.is_empty() {
        return false;
    }
    let n = chunk.len().min(buf.remaining());
    buf.put_slice(&chunk[..n]);
    chunk.advance(n);
    true
}

/// What a streamed message is read from.
enum Source<'a, S> {
    Whole(&'a mut WebSocket<S>),
    Reader(&'a mut WebSocketReader<S>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Source<'_, S> {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Incoming, Error>>> {
        match self {
            Self::Whole(ws) => endpoint::poll_recv(*ws, cx, Mode::Fragments),
            Self::Reader(reader) => endpoint::poll_recv(*reader, cx, Mode::Fragments),
        }
    }

    /// The next frame of data, skipping pings, pongs and the close (already handled);
    /// `None` once the connection ended.
    fn poll_fragment(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Fragment>>> {
        loop {
            match ready!(self.poll_recv(cx)) {
                Some(Ok(Incoming::Fragment(fragment))) => return Poll::Ready(Ok(Some(fragment))),
                Some(Ok(Incoming::Control(_))) => {}
                Some(Err(err)) => return Poll::Ready(Err(io::Error::other(err))),
                None => return Poll::Ready(Ok(None)),
            }
        }
    }
}

/// Waits for the first frame of the next data message (pings and pongs are answered and
/// skipped, as are leftover frames of a message dropped earlier).
async fn next_reader<S: AsyncRead + AsyncWrite + Unpin>(
    mut source: Source<'_, S>,
) -> Option<Result<MessageReader<'_, S>, Error>> {
    loop {
        match std::future::poll_fn(|cx| source.poll_recv(cx)).await? {
            Ok(Incoming::Fragment(fragment)) if fragment.first => {
                return Some(Ok(MessageReader {
                    source,
                    kind: fragment.kind,
                    chunk: fragment.payload,
                    fin: fragment.fin,
                }));
            }
            Ok(Incoming::Control(Message::Close(_))) => return None,
            Ok(_) => {}
            Err(err) => return Some(Err(err)),
        }
    }
}

/// One incoming message, read frame by frame as an [`AsyncRead`]: at most one frame is held
/// in memory. End of file is the end of the message.
///
/// Dropping it before the end discards the rest of the message as it arrives.
///
/// # Examples
///
/// ```no_run
/// # async fn run(mut ws: socketry::WebSocket<tokio::net::TcpStream>) -> std::io::Result<()> {
/// let mut file = tokio::fs::File::create("upload.bin").await?;
/// if let Some(Ok(mut message)) = ws.next_reader().await {
///     tokio::io::copy(&mut message, &mut file).await?;
/// }
/// # Ok(()) }
/// # let _ = run;
/// ```
pub struct MessageReader<'a, S> {
    source: Source<'a, S>,
    kind: OpCode,
    chunk: Bytes,
    fin: bool,
}

impl<S> fmt::Debug for MessageReader<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageReader")
            .field("kind", &self.kind)
            .field("buffered", &self.chunk.len())
            .field("fin", &self.fin)
            .finish_non_exhaustive()
    }
}

impl<S> MessageReader<'_, S> {
    /// [`OpCode::Text`] or [`OpCode::Binary`].
    pub fn kind(&self) -> OpCode {
        self.kind
    }

    /// Whether this is a text message (whose bytes, read to the end, are valid UTF-8).
    pub fn is_text(&self) -> bool {
        self.kind == OpCode::Text
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MessageReader<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if copy_out(&mut this.chunk, buf) {
                return Poll::Ready(Ok(()));
            }
            if this.fin {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.source.poll_fragment(cx))? {
                Some(fragment) => {
                    this.chunk = fragment.payload;
                    this.fin = fragment.fin;
                }
                None => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
            }
        }
    }
}

impl<S> Drop for MessageReader<'_, S> {
    fn drop(&mut self) {
        if !self.fin {
            match &mut self.source {
                Source::Whole(ws) => ws.core.conn.discard_message(),
                Source::Reader(reader) => reader.discard_message(),
            }
        }
    }
}

/// Where a streamed message is written to.
enum Target<'a, S> {
    Whole(&'a mut WebSocket<S>),
    Writer(&'a mut WebSocketWriter<S>),
}

/// One outgoing message, written as an [`AsyncWrite`] and sent as fragments of at most the
/// fragment size; [`shutdown`](tokio::io::AsyncWriteExt::shutdown) sends the final frame.
///
/// Memory stays bounded by the fragment size and the write buffer, whatever the message size.
/// A text message is checked as it is written: bytes that are not UTF-8 fail the write with
/// [`io::ErrorKind::InvalidData`].
///
/// A message that was not finished never looks whole to the peer: dropping the writer before
/// [`shutdown`](tokio::io::AsyncWriteExt::shutdown) completed (an early return with `?`, a
/// cancelled task) discards the message if none of it was sent yet, and otherwise fails the
/// connection with 1011 "message abandoned", since its first frames are already out.
///
/// # Examples
///
/// ```no_run
/// # async fn run(mut ws: socketry::WebSocket<tokio::net::TcpStream>) -> std::io::Result<()> {
/// use tokio::io::AsyncWriteExt;
///
/// let mut file = tokio::fs::File::open("video.mp4").await?;
/// let mut message = ws.message_writer(socketry::OpCode::Binary);
/// tokio::io::copy(&mut file, &mut message).await?;
/// message.shutdown().await?;
/// # Ok(()) }
/// # let _ = run;
/// ```
pub struct MessageWriter<'a, S> {
    target: Target<'a, S>,
    kind: OpCode,
    fragment_size: usize,
    buf: BytesMut,
    started: bool,
    /// A fragment was queued and is being written.
    flushing: bool,
    /// The final frame is queued: the message is whole.
    finished: bool,
    utf8: Option<Utf8Validator>,
}

impl<S> fmt::Debug for MessageWriter<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageWriter")
            .field("kind", &self.kind)
            .field("buffered", &self.buf.len())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin> MessageWriter<'a, S> {
    fn new(target: Target<'a, S>, kind: OpCode, fragment_size: usize) -> Self {
        let kind = if kind == OpCode::Text {
            kind
        } else {
            OpCode::Binary
        };
        Self {
            target,
            kind,
            fragment_size: fragment_size.max(1),
            buf: BytesMut::new(),
            started: false,
            flushing: false,
            finished: false,
            utf8: (kind == OpCode::Text).then(Utf8Validator::default),
        }
    }

    fn queue_fragment(&mut self, fin: bool) -> Result<(), Error> {
        let opcode = if self.started {
            OpCode::Continuation
        } else {
            self.kind
        };
        let payload = self.buf.split().freeze();
        let queue = |core: &mut crate::core::Core| {
            core.queue_with(|conn| conn.send_frame(opcode, payload, fin))
        };
        match &mut self.target {
            Target::Whole(ws) => queue(&mut ws.core),
            Target::Writer(writer) => writer.with_core(queue),
        }?;
        self.started = true;
        Ok(())
    }

    fn poll_flush_target(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match &mut self.target {
            Target::Whole(ws) => endpoint::poll_flush(*ws, cx),
            Target::Writer(writer) => endpoint::poll_flush(*writer, cx),
        }
    }

    /// Queues the buffered bytes as a fragment (once) and writes them out.
    fn poll_send_fragment(&mut self, cx: &mut Context<'_>, fin: bool) -> Poll<io::Result<()>> {
        if !self.flushing {
            self.queue_fragment(fin).map_err(io::Error::other)?;
            self.flushing = true;
        }
        ready!(self.poll_flush_target(cx)).map_err(io::Error::other)?;
        self.flushing = false;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MessageWriter<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(Err(io::Error::other(Error::AlreadyClosed)));
        }
        if this.flushing || this.buf.len() >= this.fragment_size {
            ready!(this.poll_send_fragment(cx, false))?;
        }
        let take = data.len().min(this.fragment_size - this.buf.len());
        if let Some(utf8) = &mut this.utf8 {
            utf8.feed(&data[..take])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        this.buf.extend_from_slice(&data[..take]);
        Poll::Ready(Ok(take))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.finished && (this.flushing || !this.buf.is_empty()) {
            ready!(this.poll_send_fragment(cx, false))?;
        }
        this.poll_flush_target(cx).map_err(io::Error::other)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.finished {
            if this.flushing {
                ready!(this.poll_send_fragment(cx, false))?;
            }
            if let Some(utf8) = &mut this.utf8 {
                utf8.finish()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            }
            // Queued once: a flush that is pending (or cancelled) does not queue it again.
            this.queue_fragment(true).map_err(io::Error::other)?;
            this.finished = true;
        }
        this.poll_flush_target(cx).map_err(io::Error::other)
    }
}

impl<S> Drop for MessageWriter<'_, S> {
    fn drop(&mut self) {
        if self.finished || !(self.started || self.flushing) {
            // Whole, or nothing of it sent: the next message starts on a clean sequence.
            return;
        }
        // Part of the message is out; ending it with what was written would make a truncated
        // message look whole. Fail the connection instead (the close frame may go between
        // fragments, RFC 6455 §5.4).
        // Once a close is under way the message cannot end anyway.
        let abandon = |core: &mut crate::core::Core| {
            if core.state() == socketry_proto::State::Open {
                core.conn.fail(
                    socketry_proto::CloseCode::INTERNAL_ERROR,
                    "message abandoned",
                );
            }
        };
        match &mut self.target {
            Target::Whole(ws) => abandon(&mut ws.core),
            Target::Writer(writer) => writer.with_core_dropping(abandon),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Waits for the next data message and returns a reader over it, frame by frame; pings
    /// and pongs in between are answered and skipped. `None` once the connection closed.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub async fn next_reader(&mut self) -> Option<Result<MessageReader<'_, S>, Error>> {
        next_reader(Source::Whole(self)).await
    }

    /// A writer that sends one message of `kind` ([`OpCode::Text`] or [`OpCode::Binary`]) in
    /// fragments of [`DEFAULT_FRAGMENT_SIZE`].
    pub fn message_writer(&mut self, kind: OpCode) -> MessageWriter<'_, S> {
        MessageWriter::new(Target::Whole(self), kind, DEFAULT_FRAGMENT_SIZE)
    }

    /// [`message_writer`](Self::message_writer) with fragments of `fragment_size` bytes.
    pub fn message_writer_with(
        &mut self,
        kind: OpCode,
        fragment_size: usize,
    ) -> MessageWriter<'_, S> {
        MessageWriter::new(Target::Whole(self), kind, fragment_size)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketReader<S> {
    /// Waits for the next data message and returns a reader over it; see
    /// [`WebSocket::next_reader`].
    ///
    /// # Errors
    ///
    /// As [`WebSocket::recv`].
    pub async fn next_reader(&mut self) -> Option<Result<MessageReader<'_, S>, Error>> {
        next_reader(Source::Reader(self)).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketWriter<S> {
    /// A writer that sends one message in fragments; see [`WebSocket::message_writer`].
    pub fn message_writer(&mut self, kind: OpCode) -> MessageWriter<'_, S> {
        MessageWriter::new(Target::Writer(self), kind, DEFAULT_FRAGMENT_SIZE)
    }

    /// [`message_writer`](Self::message_writer) with fragments of `fragment_size` bytes.
    pub fn message_writer_with(
        &mut self,
        kind: OpCode,
        fragment_size: usize,
    ) -> MessageWriter<'_, S> {
        MessageWriter::new(Target::Writer(self), kind, fragment_size)
    }
}

/// Consecutive messages as one [`AsyncRead`], each followed by a terminator (gorilla's
/// `JoinMessages`): a line-oriented protocol reads them with `BufReader::lines`. End of file
/// comes when the connection closes.
///
/// # Examples
///
/// ```no_run
/// # async fn run(mut ws: socketry::WebSocket<tokio::net::TcpStream>) -> std::io::Result<()> {
/// use tokio::io::AsyncBufReadExt;
///
/// let mut lines = tokio::io::BufReader::new(ws.join_messages("\n")).lines();
/// while let Some(line) = lines.next_line().await? {
///     println!("{line}");
/// }
/// # Ok(()) }
/// # let _ = run;
/// ```
pub struct JoinedMessages<'a, S> {
    source: Source<'a, S>,
    terminator: Bytes,
    chunk: Bytes,
    /// Whether the terminator is owed after the current chunk.
    ends_message: bool,
    eof: bool,
}

impl<S> fmt::Debug for JoinedMessages<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinedMessages")
            .field("terminator", &self.terminator)
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for JoinedMessages<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if copy_out(&mut this.chunk, buf) {
                return Poll::Ready(Ok(()));
            }
            if this.ends_message {
                this.ends_message = false;
                this.chunk = this.terminator.clone();
                continue;
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.source.poll_fragment(cx))? {
                Some(fragment) => {
                    this.chunk = fragment.payload;
                    this.ends_message = fragment.fin;
                }
                None => this.eof = true,
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Reads consecutive messages as one stream of bytes, `terminator` after each; see
    /// [`JoinedMessages`].
    pub fn join_messages(&mut self, terminator: impl Into<Bytes>) -> JoinedMessages<'_, S> {
        JoinedMessages {
            source: Source::Whole(self),
            terminator: terminator.into(),
            chunk: Bytes::new(),
            ends_message: false,
            eof: false,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketReader<S> {
    /// Reads consecutive messages as one stream of bytes; see [`WebSocket::join_messages`].
    pub fn join_messages(&mut self, terminator: impl Into<Bytes>) -> JoinedMessages<'_, S> {
        JoinedMessages {
            source: Source::Reader(self),
            terminator: terminator.into(),
            chunk: Bytes::new(),
            ends_message: false,
            eof: false,
        }
    }
}
