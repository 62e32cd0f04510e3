//! Redis Cluster's key space: which of the 16,384 slots a channel hashes to, and which master
//! serves each slot (from `CLUSTER SLOTS`).

use redis::Value;

/// Slots in a Redis Cluster.
pub(super) const SLOTS: u16 = 16_384;

/// CRC16-CCITT (XModem), the hash Redis Cluster uses for keys and shard channels.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of a key or shard channel: of the part between the first `{` and the next `}`
/// when that part is not empty (a hash tag), else of the whole name.
pub(super) fn slot(name: &[u8]) -> u16 {
    let tagged = name.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &name[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(name)) % SLOTS
}

/// A master's address as the cluster gives it.
pub(super) type Addr = (String, u16);

/// Which master serves which slots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct SlotMap {
    /// `(first slot, last slot, master)`, sorted by first slot.
    ranges: Vec<(u16, u16, Addr)>,
}

impl SlotMap {
    /// The map in a `CLUSTER SLOTS` reply; `fallback_host` stands in for a master that
    /// reports no host (an empty string or `?`: "the host you asked").
    pub(super) fn from_reply(reply: &Value, fallback_host: &str) -> Option<Self> {
        let Value::Array(ranges) = reply else {
            return None;
        };
        let mut map = Vec::with_capacity(ranges.len());
        for range in ranges {
            let Value::Array(fields) = range else {
                return None;
            };
            let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return None;
            };
            let host = match master.first() {
                Some(Value::BulkString(host)) => String::from_utf8(host.clone()).ok()?,
                Some(Value::SimpleString(host)) => host.clone(),
                _ => return None,
            };
            let host = if host.is_empty() || host == "?" {
                fallback_host.to_owned()
            } else {
                host
            };
            let Some(Value::Int(port)) = master.get(1) else {
                return None;
            };
            let (first, last, port) = (
                u16::try_from(*first).ok()?,
                u16::try_from(*last).ok()?,
                u16::try_from(*port).ok()?,
            );
            if first > last || last >= SLOTS {
                return None;
            }
            map.push((first, last, (host, port)));
        }
        map.sort_by_key(|(first, _, _)| *first);
        Some(Self { ranges: map })
    }

    /// The master that serves `slot`, if the map knows one.
    pub(super) fn owner(&self, slot: u16) -> Option<&Addr> {
        let index = self.ranges.partition_point(|(first, _, _)| *first <= slot);
        let (_, last, addr) = self.ranges.get(index.checked_sub(1)?)?;
        (slot <= *last).then_some(addr)
    }

    /// Every master, once each.
    pub(super) fn masters(&self) -> Vec<Addr> {
        let mut masters: Vec<Addr> = self.ranges.iter().map(|(_, _, a)| a.clone()).collect();
        masters.sort();
        masters.dedup();
        masters
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_what_redis_cluster_computes() {
        // From the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot(b"foo"), 12_182);
        assert_eq!(slot(b"bar"), 5_061);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(
            slot(b"foo{}{bar}"),
            crc16(b"foo{}{bar}") % SLOTS,
            "an empty tag hashes all"
        );
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    fn master(first: i64, last: i64, host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::Int(first),
            Value::Int(last),
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ]),
        ])
    }

    #[test]
    fn a_cluster_slots_reply_maps_every_slot_to_its_master() {
        let reply = Value::Array(vec![
            master(5_461, 10_922, "127.0.0.1", 7001),
            master(0, 5_460, "", 7000),
            master(10_923, 16_383, "127.0.0.1", 7002),
        ]);
        let map = SlotMap::from_reply(&reply, "10.0.0.9").unwrap();
        assert_eq!(map.owner(0), Some(&("10.0.0.9".to_owned(), 7000)));
        assert_eq!(map.owner(5_460).map(|a| a.1), Some(7000));
        assert_eq!(map.owner(5_461).map(|a| a.1), Some(7001));
        assert_eq!(map.owner(16_383).map(|a| a.1), Some(7002));
        assert_eq!(map.masters().len(), 3);
        let partial =
            SlotMap::from_reply(&Value::Array(vec![master(10, 20, "h", 1)]), "x").unwrap();
        assert_eq!(partial.owner(9), None);
        assert_eq!(partial.owner(21), None);
        assert!(SlotMap::from_reply(&Value::Int(1), "x").is_none());
        assert!(SlotMap::from_reply(&Value::Array(vec![master(20, 10, "h", 1)]), "x").is_none());
    }
}
