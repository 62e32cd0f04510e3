//! History and recovery: a room whose [`RoomOptions`](crate::RoomOptions) keep
//! [`History`] numbers its publications ([`Position`]: an offset in an epoch) and keeps the
//! last of them, so that a client that comes back with the last position it saw gets what it
//! missed ([`Member::join_since`](crate::Member::join_since)), or is told it cannot.

use std::{
    collections::VecDeque,
    fmt,
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use dashmap::DashMap;
use parking_lot::Mutex;
use socketry::{Message, PreparedMessage};

use crate::RoomName;

/// Where a publication stands in its room's history: its offset (1 for the first), in an
/// epoch that names this run of the history. When the history is lost (a store restarted
/// empty, a room quiet for longer than its history is kept), it starts again in a new epoch,
/// and positions of the old one cannot be recovered.
///
/// Written `<offset>:<epoch>` (what a client sends back, in a query parameter say).
///
/// # Examples
///
/// ```
/// use socketry_hub::Position;
///
/// let position: Position = "42:9f3a".parse()?;
/// assert_eq!((position.offset(), position.epoch()), (42, "9f3a"));
/// assert_eq!(position.to_string(), "42:9f3a");
/// # Ok::<(), socketry_hub::HubError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Position {
    offset: u64,
    epoch: Arc<str>,
}

impl Position {
    /// A position.
    pub fn new(offset: u64, epoch: impl Into<Arc<str>>) -> Self {
        Self {
            offset,
            epoch: epoch.into(),
        }
    }

    /// Its offset: the count of publications to the room in this epoch, up to this one.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Its epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    pub(crate) fn epoch_arc(&self) -> Arc<str> {
        self.epoch.clone()
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.offset, self.epoch)
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position({self})")
    }
}

impl FromStr for Position {
    type Err = crate::HubError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || crate::HubError::InvalidPosition(s.chars().take(64).collect());
        let (offset, epoch) = s.split_once(':').ok_or_else(bad)?;
        let valid_epoch = !epoch.is_empty()
            && epoch.len() <= 32
            && epoch.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid_epoch {
            return Err(bad());
        }
        Ok(Self::new(offset.parse().map_err(|_| bad())?, epoch))
    }
}

/// Turns a room's publication and its position into the message members get (so that they
/// can send the position back when they reconnect).
pub type PositionFormatter = Arc<dyn Fn(&Position, &Message) -> Message + Send + Sync>;

/// How a room keeps its history: the last `max_len` publications (1,000 by default), for
/// `ttl` after each (5 minutes), and how a position goes into the message members get.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use socketry::Message;
/// use socketry_hub::{History, HubConfig, RoomOptions};
///
/// let config = HubConfig::default().room_options(|_room| {
///     RoomOptions::default().history(
///         History::new(|position, message| {
///             // The chat puts it in its JSON; anything the client can read back will do.
///             Message::text(format!("{position} {}", String::from_utf8_lossy(message.as_payload())))
///         })
///         .max_len(500)
///         .ttl(Duration::from_secs(120)),
///     )
/// });
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct History {
    pub(crate) limits: HistoryLimits,
    pub(crate) format: PositionFormatter,
}

/// A history's bounds, as they travel to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HistoryLimits {
    pub(crate) max_len: usize,
    pub(crate) ttl: Duration,
}

impl History {
    /// A history whose members get each publication as `format` makes it.
    pub fn new(format: impl Fn(&Position, &Message) -> Message + Send + Sync + 'static) -> Self {
        Self {
            limits: HistoryLimits {
                max_len: 1_000,
                ttl: Duration::from_secs(300),
            },
            format: Arc::new(format),
        }
    }

    /// Keeps the last `max_len` publications (at least 1). On Redis the stream is trimmed
    /// approximately (`MAXLEN ~`, whole stream nodes of 100 entries), so it may keep up to
    /// about 100 more; a recovery never gets more than what is kept.
    #[must_use]
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.limits.max_len = max_len.max(1);
        self
    }

    /// Keeps the room's history for `ttl` after its last publication (from a second to a
    /// year; 5 minutes by default); a room quiet for longer starts a new epoch.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.limits.ttl = ttl.clamp(Duration::from_secs(1), Duration::from_secs(365 * 86_400));
        self
    }

    /// The message members get for `message` at `position`. A formatter that panics sends
    /// the message as it was published.
    pub(crate) fn format(&self, position: &Position, message: &Message) -> Message {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (self.format)(position, message)
        }))
        .unwrap_or_else(|_| {
            tracing::error!("hub: the history's position formatter panicked");
            message.clone()
        })
    }
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("History")
            .field("max_len", &self.limits.max_len)
            .field("ttl", &self.limits.ttl)
            .finish()
    }
}

/// What a client that came back with a position gets ([`Member::join_since`](crate::Member::join_since)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// Every publication after the position was sent, in order, before anything newer.
    Recovered {
        /// How many.
        missed: usize,
    },
    /// What was missed cannot be told: the history was trimmed past the position, its epoch
    /// changed, or more arrived during the recovery than it holds. The member is in the
    /// room and gets what is published from now on; the client should load the room's state
    /// afresh. `current` is the room's position now, if it has one.
    Lost {
        /// Why.
        reason: LostReason,
        /// The room's latest position.
        current: Option<Position>,
    },
    /// No position was given, or the room keeps no history: a plain join.
    Fresh {
        /// The room's latest position, if it keeps history.
        current: Option<Position>,
    },
}

/// Why a recovery was not possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostReason {
    /// The history no longer holds the publication after the position.
    Trimmed,
    /// The history started again (a new epoch) since the position.
    EpochChanged,
    /// More was published during the recovery than it could hold back.
    TooMuch,
    /// The history could not be read (its store is away).
    Unavailable,
}

/// A history read: the epoch and latest offset, and the publications after a position.
#[derive(Debug, Clone, Default)]
pub struct HistoryRead {
    /// The room's current position (`None` for a room with no history yet).
    pub current: Option<Position>,
    /// Publications after the position asked for, oldest first (empty if the position is
    /// not of the current epoch).
    pub items: Vec<(Position, Message)>,
    /// Whether `items` starts right after the position asked for (nothing trimmed).
    pub contiguous: bool,
}

/// The history of one process's rooms (what [`LocalBroker`](crate::LocalBroker) keeps):
/// per room the last `max_len` publications, forgotten `ttl` after the last one, and at most
/// `max_rooms` rooms (past it, quiet rooms are forgotten first, then the oldest).
pub(crate) struct LocalHistory {
    rooms: DashMap<RoomName, Arc<Mutex<RoomHistory>>>,
    max_rooms: usize,
}

pub(crate) struct RoomHistory {
    epoch: Arc<str>,
    top: u64,
    last: Instant,
    ttl: Duration,
    items: VecDeque<(u64, Arc<PreparedMessage>)>,
    /// Publications numbered but not yet delivered, in order, and the lock of the one
    /// publisher delivering them (outside this lock: the position formatter is user code).
    pub(crate) pending: VecDeque<(Position, crate::Publication)>,
    pub(crate) delivering: Arc<Mutex<()>>,
}

/// A new epoch's name: 8 random hex digits.
pub(crate) fn new_epoch() -> Arc<str> {
    Arc::from(format!("{:08x}", rand::random::<u32>()))
}

impl LocalHistory {
    pub(crate) fn new(max_rooms: usize) -> Self {
        Self {
            rooms: DashMap::new(),
            max_rooms: max_rooms.max(1),
        }
    }

    /// The history of `room`, made (in a new epoch) if it has none or it expired.
    pub(crate) fn room(&self, room: &RoomName, limits: HistoryLimits) -> Arc<Mutex<RoomHistory>> {
        if let Some(history) = self.rooms.get(room) {
            let history = history.clone();
            if !history.lock().expired() {
                return history;
            }
        }
        if self.rooms.len() >= self.max_rooms {
            self.rooms.retain(|_, history| !history.lock().expired());
            while self.rooms.len() >= self.max_rooms {
                let oldest = (self.rooms.iter())
                    .min_by_key(|entry| entry.value().lock().last)
                    .map(|entry| entry.key().clone());
                match oldest {
                    Some(oldest) => self.rooms.remove(&oldest),
                    None => break,
                };
            }
        }
        let fresh = Arc::new(Mutex::new(RoomHistory {
            epoch: new_epoch(),
            top: 0,
            last: Instant::now(),
            ttl: limits.ttl,
            items: VecDeque::new(),
            pending: VecDeque::new(),
            delivering: Arc::default(),
        }));
        match self.rooms.entry(room.clone()) {
            dashmap::mapref::entry::Entry::Occupied(mut entry) => {
                if entry.get().lock().expired() {
                    entry.insert(fresh.clone());
                    fresh
                } else {
                    entry.get().clone()
                }
            }
            dashmap::mapref::entry::Entry::Vacant(entry) => entry.insert(fresh).clone(),
        }
    }

    /// What `room` holds after `since`.
    pub(crate) fn read(&self, room: &str, since: Option<&Position>) -> HistoryRead {
        let Some(history) = self.rooms.get(room).map(|h| h.clone()) else {
            return HistoryRead::default();
        };
        let history = history.lock();
        if history.expired() {
            return HistoryRead::default();
        }
        history.read(since)
    }
}

impl RoomHistory {
    fn expired(&self) -> bool {
        self.last.elapsed() >= self.ttl
    }

    /// Numbers and keeps a publication; returns its position.
    pub(crate) fn append(
        &mut self,
        message: Arc<PreparedMessage>,
        limits: HistoryLimits,
    ) -> Position {
        self.top += 1;
        self.last = Instant::now();
        self.ttl = limits.ttl;
        self.items.push_back((self.top, message));
        while self.items.len() > limits.max_len {
            self.items.pop_front();
        }
        Position::new(self.top, self.epoch.clone())
    }

    fn read(&self, since: Option<&Position>) -> HistoryRead {
        let current = (self.top > 0).then(|| Position::new(self.top, self.epoch.clone()));
        let Some(since) = since.filter(|since| *since.epoch == *self.epoch) else {
            return HistoryRead {
                current,
                items: Vec::new(),
                contiguous: false,
            };
        };
        let items: Vec<_> = (self.items.iter())
            .filter(|(offset, _)| *offset > since.offset)
            .map(|(offset, message)| {
                (
                    Position::new(*offset, self.epoch.clone()),
                    message.message().clone(),
                )
            })
            .collect();
        let first = items.first().map_or(self.top + 1, |(p, _)| p.offset);
        HistoryRead {
            current,
            contiguous: since.offset <= self.top && first == since.offset + 1,
            items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_back_as_written_and_bad_ones_are_refused() {
        let position = Position::new(7, "ab12");
        assert_eq!(position.to_string().parse::<Position>().unwrap(), position);
        for bad in [
            "",
            "7",
            ":ab",
            "x:ab",
            "7:",
            "7:a-b",
            "-1:ab",
            "7:0123456789abcdef0123456789abcdef0",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_local_history_keeps_the_last_publications_and_says_when_it_was_trimmed() {
        let limits = HistoryLimits {
            max_len: 3,
            ttl: Duration::from_secs(60),
        };
        let history = LocalHistory::new(16);
        let room = RoomName::new("r").unwrap();
        let mut last = None;
        for i in 0..5 {
            let message = Arc::new(PreparedMessage::new(Message::text(format!("m{i}"))));
            last = Some(history.room(&room, limits).lock().append(message, limits));
        }
        let epoch: Arc<str> = Arc::from(last.unwrap().epoch());
        let read = history.read("r", Some(&Position::new(2, epoch.clone())));
        assert!(read.contiguous);
        assert_eq!(read.current, Some(Position::new(5, epoch.clone())));
        let texts: Vec<_> = (read.items.iter())
            .map(|(p, m)| {
                (
                    p.offset(),
                    String::from_utf8_lossy(m.as_payload()).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            texts,
            [
                (3, "m2".to_owned()),
                (4, "m3".to_owned()),
                (5, "m4".to_owned())
            ]
        );
        assert!(
            !history
                .read("r", Some(&Position::new(1, epoch.clone())))
                .contiguous
        );
        let up_to_date = history.read("r", Some(&Position::new(5, epoch.clone())));
        assert!(up_to_date.contiguous && up_to_date.items.is_empty());
        assert!(!history.read("r", Some(&Position::new(9, epoch))).contiguous);
        let other_epoch = history.read("r", Some(&Position::new(2, "zz")));
        assert!(!other_epoch.contiguous && other_epoch.items.is_empty());
    }

    #[test]
    fn a_quiet_room_past_its_ttl_starts_a_new_epoch_and_rooms_are_bounded() {
        let limits = HistoryLimits {
            max_len: 3,
            ttl: Duration::from_millis(30),
        };
        let history = LocalHistory::new(2);
        let room = RoomName::new("r").unwrap();
        let message = || Arc::new(PreparedMessage::new(Message::text("m")));
        let first = history.room(&room, limits).lock().append(message(), limits);
        std::thread::sleep(Duration::from_millis(40));
        assert!(history.read("r", Some(&first)).current.is_none());
        let second = history.room(&room, limits).lock().append(message(), limits);
        assert_eq!(second.offset(), 1);
        assert_ne!(second.epoch(), first.epoch());
        for name in ["a", "b", "c"] {
            let room = RoomName::new(name).unwrap();
            history.room(&room, limits).lock().append(message(), limits);
        }
        assert!(history.rooms.len() <= 2);
    }
}
