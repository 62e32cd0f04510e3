//! A per-thread pool of buffers (gorilla's `WriteBufferPool`, for reads too): a connection
//! borrows a write buffer while it has bytes queued and a read buffer while bytes arrive, and
//! gives them back when the queue drains or the socket has nothing more to read. So an idle
//! connection holds no buffer, and a busy one allocates none per message.

use std::cell::RefCell;

use bytes::BytesMut;
use socketry_proto::Outgoing;

/// Buffers kept per thread.
const MAX_POOLED: usize = 256;
/// Larger buffers (after a large message) are freed instead of pooled.
const MAX_POOLED_CAPACITY: usize = 64 * 1024;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A pooled buffer, or a new empty one.
pub(crate) fn take() -> BytesMut {
    POOL.with(|pool| pool.borrow_mut().pop())
        .unwrap_or_default()
}

/// Gives a buffer back: its contents are dropped, its allocation kept for the next `take`.
pub(crate) fn give(mut buf: BytesMut) {
    if buf.capacity() == 0 || buf.capacity() > MAX_POOLED_CAPACITY {
        return;
    }
    buf.clear();
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < MAX_POOLED {
            pool.push(buf);
        }
    });
}

/// Gives `out` a pooled buffer if it has none.
pub(crate) fn lend(out: &mut Outgoing) {
    if !out.has_buffer() {
        out.set_buffer(take());
    }
}

/// Takes the buffer of a drained `out` back into the pool.
pub(crate) fn reclaim(out: &mut Outgoing) {
    if let Some(buf) = out.take_buffer() {
        give(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drained_queue_gives_its_buffer_back_and_the_next_borrows_it() {
        let mut conn = socketry_proto::Connection::new(
            socketry_proto::Role::Server,
            socketry_proto::Config::default(),
        );
        lend(conn.outgoing_mut());
        conn.send(socketry_proto::Message::text("hello")).unwrap();
        let len = conn.outgoing().len();
        conn.outgoing_mut().advance(len);
        assert!(conn.outgoing().has_buffer());
        reclaim(conn.outgoing_mut());
        assert!(!conn.outgoing().has_buffer(), "idle: no write buffer");
        let pooled = POOL.with(|p| p.borrow().len());
        assert!(pooled >= 1);
        lend(conn.outgoing_mut());
        assert!(conn.outgoing().has_buffer());
        assert_eq!(POOL.with(|p| p.borrow().len()), pooled - 1);
    }
}
