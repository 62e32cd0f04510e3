//! Room history in Redis Streams: a stream per room (`<prefix>:history:stream:<room>`, entry
//! id `<offset>-1`, field `e` = the publication's envelope) and a hash beside it
//! (`<prefix>:history:meta:<room>`: `epoch`, `top`). One script numbers, keeps and publishes
//! each publication, so the offsets, the stream and the order subscribers see agree; both
//! keys expire a TTL after the room's last publication, and a room whose meta is gone starts
//! a new epoch.

use std::sync::Arc;

use bytes::Bytes;
use redis::Value;

use super::Shared;
use crate::{HistoryRead, HubError, Position, RoomName, cluster::envelope};

/// Numbers, keeps and publishes one publication.
///
/// A room starts a new epoch when it has none, and when its epoch was made by another run
/// of the server (`run_id` changes at each start): a server restarted from an older
/// snapshot, or a replica promoted before it had every write, may have gone back, and its
/// offsets would then name other publications than the ones clients saw.
///
/// KEYS: stream, meta. ARGV: channel, envelope, max length, TTL in ms, a new epoch's name
/// (used if a new epoch starts). Returns the offset.
pub(super) const PUBLISH: &str = "\
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'run')
local epoch = meta[1]
if not epoch or meta[2] ~= run then
  epoch = ARGV[5]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'top', 0, 'run', run)
end
local offset = redis.call('HINCRBY', KEYS[2], 'top', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], offset .. '-1', 'e', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[1], '\\2' .. offset .. ' ' .. epoch .. ' ' .. ARGV[2])
return offset
";

/// The room's epoch and top, and (for a position of that epoch) the entries after it.
///
/// KEYS: stream, meta. ARGV: offset (-1 for none), epoch. Returns `{epoch or nil, top,
/// {{id, {field, value}}, ...}}`.
const READ: &str = "\
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then return {false, 0, {}} end
local top = tonumber(redis.call('HGET', KEYS[2], 'top') or '0')
if ARGV[2] ~= epoch or tonumber(ARGV[1]) < 0 then return {epoch, top, {}} end
return {epoch, top, redis.call('XRANGE', KEYS[1], '(' .. ARGV[1] .. '-1', '+')}
";

impl Shared {
    pub(super) fn stream_key(&self, room: &str) -> String {
        format!("{}history:stream:{room}", self.key_prefix)
    }

    pub(super) fn meta_key(&self, room: &str) -> String {
        format!("{}history:meta:{room}", self.key_prefix)
    }

    /// What `room`'s history holds after `since`.
    pub(super) async fn read_history(
        &self,
        room: &RoomName,
        since: Option<&Position>,
    ) -> Result<HistoryRead, HubError> {
        let broker = |e: redis::RedisError| HubError::Broker(Box::new(e));
        let (offset, epoch) = since.map_or((-1, ""), |p| (p.offset() as i64, p.epoch()));
        let mut read = redis::cmd("EVAL");
        read.arg(READ)
            .arg(2)
            .arg(self.stream_key(room))
            .arg(self.meta_key(room))
            .arg(offset)
            .arg(epoch);
        // The connection kept from the last read may have died since (Redis restarted, say):
        // one more try on a new one.
        let mut reply = None;
        for attempt in 0..2 {
            let cached = self.reader.lock().clone();
            let mut conn = match cached {
                Some(conn) => conn,
                None => {
                    let conn = self.dial_client(&self.client).await.map_err(broker)?;
                    *self.reader.lock() = Some(conn.clone());
                    conn
                }
            };
            match read.query_async::<Value>(&mut conn).await {
                Ok(value) => {
                    reply = Some(value);
                    break;
                }
                Err(err) => {
                    *self.reader.lock() = None;
                    let dropped = err.is_connection_dropped()
                        || err.is_io_error()
                        || err.is_unrecoverable_error();
                    if attempt == 1 || !dropped {
                        return Err(broker(err));
                    }
                }
            }
        }
        let reply = reply.ok_or_else(|| HubError::Broker("history not read".into()))?;
        parse_read(room, since, reply)
            .ok_or_else(|| HubError::Broker("malformed history reply".into()))
    }
}

fn parse_read(room: &RoomName, since: Option<&Position>, reply: Value) -> Option<HistoryRead> {
    let Value::Array(parts) = reply else {
        return None;
    };
    let mut parts = parts.into_iter();
    let epoch: Arc<str> = match parts.next()? {
        Value::BulkString(epoch) => Arc::from(String::from_utf8(epoch).ok()?),
        Value::Nil => return Some(HistoryRead::default()),
        _ => return None,
    };
    let Value::Int(top) = parts.next()? else {
        return None;
    };
    let top = u64::try_from(top).ok()?;
    let Value::Array(entries) = parts.next()? else {
        return None;
    };
    let mut items = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(entry) = entry else {
            return None;
        };
        let (Some(Value::BulkString(id)), Some(Value::Array(fields))) =
            (entry.first(), entry.get(1))
        else {
            return None;
        };
        let offset: u64 = std::str::from_utf8(id)
            .ok()?
            .split_once('-')?
            .0
            .parse()
            .ok()?;
        let Some(Value::BulkString(env)) = fields.get(1) else {
            return None;
        };
        let publication = envelope::decode(room.clone(), Bytes::copy_from_slice(env)).ok()?;
        items.push((
            Position::new(offset, epoch.clone()),
            publication.message.message().clone(),
        ));
    }
    let current = (top > 0).then(|| Position::new(top, epoch.clone()));
    let contiguous = since.is_some_and(|since| {
        since.epoch() == &*epoch
            && since.offset() <= top
            && items
                .first()
                .map_or(Some(top), |(p, _)| p.offset().checked_sub(1))
                == Some(since.offset())
    });
    Some(HistoryRead {
        current,
        items,
        contiguous,
    })
}
