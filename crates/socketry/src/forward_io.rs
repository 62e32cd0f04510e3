//! `forward_io!`: `AsyncRead` + `AsyncWrite` for a type that is one of several transports.

/// Implements `AsyncRead` and `AsyncWrite` for `$ty` by matching the enum at `self$(.$field)?`
/// and forwarding every call to the transport inside the variant. Each variant may carry
/// attributes (a `#[cfg]` for transports behind a feature).
macro_rules! forward_io {
    ($ty:ty $(, .$field:tt)? => [$($(#[$attr:meta])* $variant:path),+ $(,)?]) => {
        impl ::tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut ::tokio::io::ReadBuf<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                match &mut self.get_mut()$(.$field)? {
                    $($(#[$attr])* $variant(io) => ::std::pin::Pin::new(io).poll_read(cx, buf),)+
                }
            }
        }

        impl ::tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                match &mut self.get_mut()$(.$field)? {
                    $($(#[$attr])* $variant(io) => ::std::pin::Pin::new(io).poll_write(cx, buf),)+
                }
            }

            fn poll_write_vectored(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                match &mut self.get_mut()$(.$field)? {
                    $($(#[$attr])* $variant(io) => {
                        ::std::pin::Pin::new(io).poll_write_vectored(cx, bufs)
                    })+
                }
            }

            fn is_write_vectored(&self) -> bool {
                match &self$(.$field)? {
                    $($(#[$attr])* $variant(io) => io.is_write_vectored(),)+
                }
            }

            fn poll_flush(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                match &mut self.get_mut()$(.$field)? {
                    $($(#[$attr])* $variant(io) => ::std::pin::Pin::new(io).poll_flush(cx),)+
                }
            }

            fn poll_shutdown(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                match &mut self.get_mut()$(.$field)? {
                    $($(#[$attr])* $variant(io) => ::std::pin::Pin::new(io).poll_shutdown(cx),)+
                }
            }
        }
    };
}
