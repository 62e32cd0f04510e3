//! A per-thread pool of write buffers (gorilla's `WriteBufferPool`): a connection borrows one
//! while it has bytes queued and gives it back when the queue drains, so an idle connection
//! holds no write buffer and a busy one allocates none per message.

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

/// Gives `out` a pooled buffer if it has none.
pub(crate) fn lend(out: &mut Outgoing) {
    if out.has_buffer() {
        return;
    }
    if let Some(buf) = POOL.with(|pool| pool.borrow_mut().pop()) {
        out.set_buffer(buf);
    }
}

/// Takes the buffer of a drained `out` back into the pool.
pub(crate) fn reclaim(out: &mut Outgoing) {
    let Some(buf) = out.take_buffer() else { return };
    if buf.capacity() <= MAX_POOLED_CAPACITY {
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < MAX_POOLED {
                pool.push(buf);
            }
        });
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
