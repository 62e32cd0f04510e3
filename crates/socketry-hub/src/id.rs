//! Connection and node identifiers.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
};

/// Identifies one hub (one process, one node of a cluster): random, so that two nodes do not
/// pick the same one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u64);

impl NodeId {
    pub(crate) fn random() -> Self {
        Self(rand::random())
    }

    /// The id as a number (for envelopes between nodes).
    pub fn get(self) -> u64 {
        self.0
    }

    /// The node id a number stands for (from an envelope).
    pub fn from_u64(id: u64) -> Self {
        Self(id)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Identifies a connection in a hub: its node's id and a sequence number, so it is unique
/// across the nodes of a cluster and never reused by a process.
///
/// It prints as `<node>-<sequence>`, the node in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    node: NodeId,
    seq: u64,
}

impl ConnId {
    /// The node the connection lives on.
    pub fn node(self) -> NodeId {
        self.node
    }

    /// The connection's sequence number on its node (1 for the first).
    pub fn seq(self) -> u64 {
        self.seq
    }

    /// The id made of `node` and `seq` (from an envelope).
    pub fn from_parts(node: NodeId, seq: u64) -> Self {
        Self { node, seq }
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({self})")
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.node, self.seq)
    }
}

/// Hands out the connection ids of one node.
#[derive(Debug)]
pub(crate) struct IdSource {
    node: NodeId,
    next: AtomicU64,
}

impl IdSource {
    pub(crate) fn new(node: NodeId) -> Self {
        Self {
            node,
            next: AtomicU64::new(1),
        }
    }

    pub(crate) fn node(&self) -> NodeId {
        self.node
    }

    pub(crate) fn next(&self) -> ConnId {
        ConnId {
            node: self.node,
            seq: self.next.fetch_add(1, Ordering::Relaxed),
        }
    }
}
