//! The Lua scripts [`RedisPresence`](super::RedisPresence) runs on the server: each reads and
//! writes in one step, on the server's clock, so two nodes never decide on different times.
//!
//! Keys: a hash per room (`<prefix>:presence:room:<room>`, field = connection id, value =
//! [`super::record`]), a sorted set of node leases (`<prefix>:presence:nodes`, score = when the
//! lease ends, in the server's milliseconds), and a set per node of the rooms it wrote to
//! (`<prefix>:presence:node:<node id>`), for whoever cleans up after it.

/// The server's time in milliseconds, as a Lua local `now`.
macro_rules! now {
    () => {
        "local t = redis.call('TIME')\n\
         local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    };
}

/// A Lua function `extend(key, ms)`: makes a key live at least `ms` more, never shortening
/// what a node with a longer TTL set.
macro_rules! extend {
    () => {
        "local function extend(key, ms)\n\
           if redis.call('PTTL', key) < tonumber(ms) then redis.call('PEXPIRE', key, ms) end\n\
         end\n"
    };
}

/// Writes joins and leaves, each only if its version is newer than the one the entry has:
/// after a node wrote its members again with new versions, a change from before that is
/// queued behind does not undo it.
///
/// Nothing is written once the node's lease is over (the others took its members for gone
/// and may have deleted them): it answers 0, and the node renews and writes everyone again.
///
/// KEYS: the node's room set, the lease set, then one room hash per change. ARGV: the keys'
/// lifetime in ms, the node, then per change: room, `j` or `l`, field, version, record.
pub(super) const APPLY: &str = concat!(
    now!(),
    extend!(),
    "\
local ttl = ARGV[1]
local ends = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[2]) or '-1')
if ends < now then return 0 end
for i = 3, #KEYS do
  local b = 3 + (i - 3) * 5
  local room, kind, field, version = ARGV[b], ARGV[b + 1], ARGV[b + 2], tonumber(ARGV[b + 3])
  local current = redis.call('HGET', KEYS[i], field)
  local seen = -1
  if current then seen = tonumber(string.match(current, '^(%d+)')) or -1 end
  if version > seen then
    if kind == 'j' then
      redis.call('HSET', KEYS[i], field, ARGV[b + 4])
      extend(KEYS[i], ttl)
      redis.call('SADD', KEYS[1], room)
    else
      redis.call('HDEL', KEYS[i], field)
    end
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"
);

/// Renews a node's lease (or, with `stop`, ends it now), drops leases dead for longer than
/// the garbage time, and lists the dead ones.
///
/// KEYS: the lease set. ARGV: node, lease in ms, garbage time in ms, `run` or `stop`.
/// Returns `{previous end or -1, now, {node, end, node, end, ...}}`.
pub(super) const LEASE: &str = concat!(
    now!(),
    "\
local previous = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '-1')
if ARGV[4] == 'stop' then
  redis.call('ZADD', KEYS[1], now - 1, ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'WITHSCORES')
return {previous, now, dead}
"
);

/// A dead node's entries in one room, read (and with `delete`, removed) only while its lease
/// is still over, for at least `age` ms: a node that came back keeps what it wrote since.
///
/// KEYS: the room hash, the lease set. ARGV: node, field prefix, `read` or `delete`, age in
/// ms. Returns nil if the node is not dead (or unknown), else `{field, record, ...}`.
pub(super) const DEAD_ENTRIES: &str = concat!(
    now!(),
    "\
local ends = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or '-1')
if ends < 0 or ends + tonumber(ARGV[4]) >= now then return false end
local out = {}
local all = redis.call('HGETALL', KEYS[1])
local prefix = ARGV[2]
for i = 1, #all, 2 do
  if string.sub(all[i], 1, #prefix) == prefix then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
    if ARGV[3] == 'delete' then redis.call('HDEL', KEYS[1], all[i]) end
  end
end
return out
"
);

/// A room's entries with the nodes whose leases run.
///
/// KEYS: the room hash, the lease set. Returns `{{node, ...}, {field, record, ...}}`.
pub(super) const READ: &str = concat!(
    now!(),
    "\
local alive = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')
return {alive, redis.call('HGETALL', KEYS[1])}
"
);

/// Makes a node's room set what it has members in now, plus the rooms where Redis still has
/// an entry of it (a leave not written yet, or dropped from a full queue: the next rewrite
/// must find it), and renews the lifetime of those rooms' hashes.
///
/// KEYS: the node's room set. ARGV: lifetime in ms, the prefix of room hashes, the node's
/// field prefix, then the rooms. (The room hashes are named from ARGV: presence runs on one
/// Redis server, not a cluster.)
pub(super) const ROOMS: &str = concat!(
    extend!(),
    "\
local ttl, prefix, mine = ARGV[1], ARGV[2], ARGV[3]
local keep = {}
for i = 4, #ARGV do keep[ARGV[i]] = true end
for _, room in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not keep[room] then
    local cursor, found = '0', false
    repeat
      local r = redis.call('HSCAN', prefix .. room, cursor, 'MATCH', mine .. '*', 'COUNT', 100)
      cursor, found = r[1], #r[2] > 0
    until cursor == '0' or found
    if found then keep[room] = true else redis.call('SREM', KEYS[1], room) end
  end
end
local any = false
for room in pairs(keep) do
  redis.call('SADD', KEYS[1], room)
  extend(prefix .. room, ttl)
  any = true
end
if any then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"
);

/// A node's entries in one room made exactly `entries`, all at `version` (newer than every
/// entry the node wrote before): what the node writes again after a new connection. Returns
/// the entries it deleted, `{field, record, ...}`, for their leaves to be announced.
///
/// KEYS: the room hash, the node's room set. ARGV: lifetime in ms, field prefix, version,
/// room, then `field, record` pairs.
pub(super) const REPLACE: &str = concat!(
    extend!(),
    "\
local ttl, prefix, version = ARGV[1], ARGV[2], tonumber(ARGV[3])
local keep = {}
for i = 5, #ARGV, 2 do keep[ARGV[i]] = ARGV[i + 1] end
local deleted = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local field = all[i]
  if string.sub(field, 1, #prefix) == prefix and not keep[field] then
    local seen = tonumber(string.match(all[i + 1], '^(%d+)')) or -1
    if seen < version then
      redis.call('HDEL', KEYS[1], field)
      deleted[#deleted + 1] = field
      deleted[#deleted + 1] = all[i + 1]
    end
  end
end
local any = false
for field, record in pairs(keep) do
  redis.call('HSET', KEYS[1], field, record)
  any = true
end
if any then
  extend(KEYS[1], ttl)
  redis.call('SADD', KEYS[2], ARGV[4])
end
return deleted
"
);
