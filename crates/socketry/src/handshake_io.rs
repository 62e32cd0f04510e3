//! Reading an HTTP head off a transport, shared by the server and client handshakes.

use bytes::BytesMut;
use socketry_proto::HandshakeError;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::Error;

/// Reads until `parse` finds a complete head; returns it and the bytes read past it.
pub(crate) async fn read_head<S, T>(
    io: &mut S,
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, HandshakeError>,
) -> Result<(T, BytesMut), Error>
where
    S: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if io.read_buf(&mut buf).await? == 0 {
            return Err(if buf.is_empty() {
                Error::AbnormalClosure
            } else {
                HandshakeError::MalformedHttp("connection closed inside the http head").into()
            });
        }
        if let Some((head, len)) = parse(&buf)? {
            let _ = buf.split_to(len);
            return Ok((head, buf));
        }
        // parse() refuses heads over MAX_HEAD_LEN, so `buf` stays bounded.
    }
}
