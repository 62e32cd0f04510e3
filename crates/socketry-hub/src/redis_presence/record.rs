//! What Redis holds for one member of a room: the field is the connection id
//! (`<node hex>-<sequence>`, as [`ConnId`] prints), the value a record
//! `<version> <user length> <user><data>` (decimal numbers; user and data as they are).

use std::sync::Arc;

use bytes::Bytes;

use crate::{ClientInfo, ConnId, NodeId, PresenceEntry};

/// The hash field of `conn`.
pub(super) fn field(conn: ConnId) -> String {
    conn.to_string()
}

/// What every field of `node`'s connections starts with.
pub(super) fn node_prefix(node: NodeId) -> String {
    format!("{node}-")
}

/// The connection a field names, if it is one.
pub(super) fn parse_field(field: &[u8]) -> Option<ConnId> {
    let field = std::str::from_utf8(field).ok()?;
    let (node, seq) = field.split_once('-')?;
    if node.len() != 16 {
        return None;
    }
    let node = u64::from_str_radix(node, 16).ok()?;
    Some(ConnId::from_parts(
        NodeId::from_u64(node),
        seq.parse().ok()?,
    ))
}

/// The record of `info` joined at `version`.
pub(super) fn encode(version: u64, info: &ClientInfo) -> Vec<u8> {
    let user = info.user().as_bytes();
    let mut out = format!("{version} {} ", user.len()).into_bytes();
    out.extend_from_slice(user);
    out.extend_from_slice(info.data());
    out
}

/// The version and info of a record, if it is one.
pub(super) fn decode(record: &[u8]) -> Option<(u64, ClientInfo)> {
    let (version, rest) = split_number(record)?;
    let (user_len, rest) = split_number(rest)?;
    let user_len = usize::try_from(user_len).ok()?;
    if rest.len() < user_len {
        return None;
    }
    let (user, data) = rest.split_at(user_len);
    let user = std::str::from_utf8(user).ok()?;
    Some((
        version,
        ClientInfo::new(user).with_data(Bytes::copy_from_slice(data)),
    ))
}

/// A member read back from a field and a record.
pub(super) fn entry(field: &[u8], record: &[u8]) -> Option<PresenceEntry> {
    let conn = parse_field(field)?;
    let (version, info) = decode(record)?;
    Some(PresenceEntry::new(conn, Arc::new(info), version))
}

/// A decimal number and what follows the space after it.
fn split_number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let space = bytes.iter().position(|&b| b == b' ')?;
    let number = std::str::from_utf8(&bytes[..space]).ok()?.parse().ok()?;
    Some((number, &bytes[space + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_it_was_written_whatever_the_bytes() {
        let info = ClientInfo::new("a b 7 ").with_data(&b"\0 1 {\"x\": 2}\xff"[..]);
        let conn = ConnId::from_parts(NodeId::from_u64(0xfeed_0000_0000_0001), 42);
        let record = encode(9_007_199_254_740_000, &info);
        let entry = entry(field(conn).as_bytes(), &record).expect("a record");
        assert_eq!(entry.conn, conn);
        assert_eq!(entry.version, 9_007_199_254_740_000);
        assert_eq!(*entry.info, info);
        assert!(field(conn).starts_with(&node_prefix(conn.node())));
    }

    #[test]
    fn what_is_not_a_record_or_a_field_is_refused() {
        for record in [&b""[..], b"12", b"x 1 a", b"1 5 abc", b"1 -1 a"] {
            assert!(decode(record).is_none(), "{record:?}");
        }
        for field in [
            &b""[..],
            b"12-3",
            b"zzzzzzzzzzzzzzzz-1",
            b"0000000000000001-x",
        ] {
            assert!(parse_field(field).is_none(), "{field:?}");
        }
    }
}
