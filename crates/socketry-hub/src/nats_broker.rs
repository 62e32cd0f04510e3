//! [`NatsBroker`]: publications between nodes over NATS (core pub/sub, no JetStream).
//!
//! One `async-nats` client per node (the NATS maintainers' own Rust client). It dials again
//! by itself when the connection drops, and subscribes every subject again; the broker adds
//! the bounded publish buffer in front of it, one subscription per room that has members on
//! this node, and counters for what the client reports (its slow-consumer events included).

use std::{
    borrow::Cow,
    collections::HashMap,
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::{Client, ConnectOptions, Event, Subscriber};
use futures_util::StreamExt;
use tokio::{runtime::Handle, task::JoinHandle};

use crate::{
    HubError, PublishBuffer, RoomName,
    cluster::{NodeLink, Queued, Stat, broker_over_link, jittered, shut_down},
};

/// Publications taken from the buffer at once.
const MAX_BATCH: usize = 512;
/// Commands the client's own channel holds (async-nats's default is 2048): what waits there
/// is beyond the publish buffer's bound.
const CLIENT_CAPACITY: usize = 128;
/// How often the client's connection state is looked at.
const POLL: Duration = Duration::from_millis(500);
/// How soon an unconfirmed subscription is confirmed again.
const RETRY: Duration = Duration::from_millis(100);

/// Builds a [`NatsBroker`].
#[derive(Debug, Clone)]
#[must_use = "call build() to make the broker"]
pub struct NatsBrokerBuilder {
    url: String,
    prefix: String,
    buffer: PublishBuffer,
    backoff: (Duration, Duration),
    subscription_capacity: usize,
    timeout: Duration,
}

impl NatsBrokerBuilder {
    /// How long a dial, or the confirmation of a subscription, may take, and how often the
    /// client pings a quiet server (5 s by default; async-nats finds a server gone silent
    /// after two unanswered pings).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.clamp(Duration::from_millis(10), Duration::from_secs(86_400));
        self
    }

    /// The first token of the subjects (`socketry` by default): a room's subject is
    /// `<prefix>.room.<room>`, the room as it is when it holds only ASCII letters, digits,
    /// `-` and `_`, else `~` and its bytes in hex. Nodes that share rooms use the same prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How many publications wait while NATS is slow or away ([`PublishBuffer`]).
    pub fn publish_buffer(mut self, buffer: PublishBuffer) -> Self {
        self.buffer = buffer;
        self
    }

    /// The wait before dialling NATS again: from `min` (100 ms by default), doubling up to
    /// `max` (5 s), with jitter.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        self.backoff = (min, max.max(min));
        self
    }

    /// How many messages of one room may wait between the client and this node's members
    /// (8192 by default; async-nats's own default is 65,536). Past it the client drops them
    /// and reports a slow consumer ([`BrokerStats::slow_consumer_events`](crate::BrokerStats::slow_consumer_events)).
    pub fn subscription_capacity(mut self, capacity: usize) -> Self {
        self.subscription_capacity = capacity.max(1);
        self
    }

    /// The broker, for [`HubBuilder::broker`](crate::HubBuilder::broker). It dials NATS once
    /// the hub is built, in the background; the hub works meanwhile, and its publications
    /// wait in the publish buffer.
    ///
    /// # Errors
    ///
    /// [`HubError::Broker`] for a URL the client refuses, a prefix that is not a run of
    /// valid subject tokens, or outside a tokio runtime (the broker's tasks run on the
    /// runtime it is built in).
    pub fn build(self) -> Result<NatsBroker, HubError> {
        let runtime = Handle::try_current().map_err(|e| HubError::Broker(Box::new(e)))?;
        for url in self.url.split(',') {
            url.trim()
                .parse::<async_nats::ServerAddr>()
                .map_err(|e| HubError::Broker(Box::new(e)))?;
        }
        let valid_token = |t: &str| {
            !t.is_empty() && !t.contains(|c: char| c.is_whitespace() || c == '*' || c == '>')
        };
        if !self.prefix.split('.').all(valid_token) {
            return Err(HubError::Broker(
                format!("{:?} is not a NATS subject prefix", self.prefix).into(),
            ));
        }
        Ok(NatsBroker {
            shared: Arc::new(Shared {
                link: NodeLink::new("nats", self.buffer, self.backoff),
                url: self.url,
                subject_prefix: format!("{}.room.", self.prefix),
                subscription_capacity: self.subscription_capacity,
                timeout: self.timeout,
                stopped: Arc::new(AtomicBool::new(false)),
            }),
            runtime,
        })
    }
}

/// A [`Broker`](crate::Broker) over NATS core pub/sub (`nats-server` 2.9 and later): a node subscribes to the
/// rooms it has members in, so a publication costs one NATS message per subscribed node.
///
/// Order, delivery and the publish buffer are as with the Redis broker (`docs/scale-out.md`):
/// one publisher's publications reach every member in order, never twice, at most once; while
/// NATS is away they wait in the bounded [`PublishBuffer`] (and in the client's own command
/// channel of 128), past which publishing fails with [`HubError::Broker`].
/// [`BrokerStats::published`](crate::BrokerStats::published) counts what was handed to the
/// client. When the client reconnects it subscribes every room again itself; what other
/// nodes published meanwhile does not reach this node.
///
/// # Examples
///
/// ```no_run
/// use socketry_hub::{Hub, NatsBroker};
///
/// # async fn run() -> Result<(), socketry_hub::HubError> {
/// let broker = NatsBroker::builder("nats://127.0.0.1:4222").prefix("chat").build()?;
/// let hub = Hub::builder().broker(broker).build();
/// hub.publish("lobby", "hello, every node")?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct NatsBroker {
    shared: Arc<Shared>,
    runtime: Handle,
}

#[derive(Debug)]
struct Shared {
    link: NodeLink,
    url: String,
    subject_prefix: String,
    subscription_capacity: usize,
    timeout: Duration,
    /// Set when the broker is dropped: the client's reconnection loop stops dialling.
    stopped: Arc<AtomicBool>,
}

impl NatsBroker {
    /// A builder for a broker on the NATS server at `url` (`nats://host:port`; several,
    /// comma-separated, for a cluster).
    pub fn builder(url: impl Into<String>) -> NatsBrokerBuilder {
        NatsBrokerBuilder {
            url: url.into(),
            prefix: "socketry".into(),
            buffer: PublishBuffer::default(),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            subscription_capacity: 8192,
            timeout: Duration::from_secs(5),
        }
    }
}

impl NatsBroker {
    fn link(&self) -> &NodeLink {
        &self.shared.link
    }

    fn start(&self) {
        self.runtime.spawn(run(self.shared.clone()));
    }
}

impl NatsBroker {
    /// NATS core keeps nothing: rooms that keep history are delivered unnumbered.
    fn numbers_history(&self) -> bool {
        false
    }

    fn read_history<'a>(
        &'a self,
        room: &'a RoomName,
        since: Option<&'a crate::Position>,
    ) -> crate::BoxFuture<'a, Result<crate::HistoryRead, HubError>> {
        let _ = (room, since);
        Box::pin(std::future::ready(Err(HubError::Broker(
            "NatsBroker keeps no history".into(),
        ))))
    }
}

broker_over_link!(NatsBroker);

impl Shared {
    fn subject(&self, room: &str) -> String {
        format!("{}{}", self.subject_prefix, subject_token(room))
    }

    /// What the client reports. Its events can be dropped (its channel is bounded), so the
    /// connection's state is read from the client itself; events only wake the loop.
    fn on_event(&self, event: Event) {
        match event {
            Event::Connected | Event::Disconnected => self.link.subs.changed.notify_one(),
            Event::SlowConsumer(sid) => {
                // One event per message the client dropped for a full subscription.
                self.link.stats.add(Stat::SlowConsumerEvents, 1);
                tracing::debug!(sid, "hub: nats dropped a message for a slow subscription");
            }
            Event::ServerError(err) => tracing::warn!(error = %err, "hub: nats server error"),
            Event::ClientError(err) => tracing::warn!(error = %err, "hub: nats client error"),
            other => tracing::debug!(event = %other, "hub: nats event"),
        }
    }
}

/// A room's name as one subject token: as it is when that is safe, else `~` and hex (NATS
/// subjects split on `.`, and `*`, `>` and whitespace are special).
fn subject_token(room: &str) -> Cow<'_, str> {
    if room
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Cow::Borrowed(room);
    }
    let mut token = String::with_capacity(1 + room.len() * 2);
    token.push('~');
    for b in room.bytes() {
        let _ = write!(token, "{b:02x}");
    }
    Cow::Owned(token)
}

async fn run(shared: Arc<Shared>) {
    let (min, max) = shared.link.backoff;
    let events = Arc::downgrade(&shared);
    let stopped = shared.stopped.clone();
    let node = shared.link.hub().map(|hub| hub.node().to_string());
    let options = ConnectOptions::new()
        // Operators see which node a connection is (`/connz`, `nats server report`).
        .name(format!("socketry-hub {}", node.unwrap_or_default()))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .no_echo()
        .subscription_capacity(shared.subscription_capacity)
        // Small: what waits here is outside the publish buffer's bound.
        .client_capacity(CLIENT_CAPACITY)
        .connection_timeout(shared.timeout)
        .ping_interval(shared.timeout)
        .reconnect_delay_callback(move |attempts| {
            if stopped.load(Ordering::Acquire) {
                // The broker is gone: the client's reconnection loop waits for good.
                return Duration::from_secs(86_400 * 365);
            }
            jittered(min, max, attempts.saturating_sub(1))
        })
        .event_callback(move |event| {
            let events = events.upgrade();
            async move {
                if let Some(shared) = events {
                    shared.on_event(event);
                }
            }
        });
    let client = match options.connect(shared.url.as_str()).await {
        Ok(client) => client,
        Err(err) => {
            // With retry_on_initial_connect only what retrying cannot mend (the URL was
            // checked when the broker was built).
            tracing::error!(error = %err, "hub: nats client cannot start");
            return;
        }
    };
    tokio::spawn(publisher(shared.clone(), client.clone()));
    manage_subscriptions(&shared, &client).await;
    shared.stopped.store(true, Ordering::Release);
    // Sends what the client holds and closes it, if NATS is there to take it.
    let _ = tokio::time::timeout(shared.timeout, client.drain()).await;
}

/// Hands what waits in the publish buffer to the client, in order.
async fn publisher(shared: Arc<Shared>, client: Client) {
    let mut batch = Vec::new();
    let mut shutdown = shared.link.shutdown_signal();
    while shared.link.outbound.take(MAX_BATCH, &mut batch).await {
        let mut items = batch.drain(..);
        while let Some(Queued { room, envelope, .. }) = items.next() {
            // The client's own channel is bounded: while NATS is away this waits, and the
            // publish buffer fills behind it.
            let sent = tokio::select! {
                sent = client.publish(shared.subject(&room), envelope) => sent,
                () = shut_down(&mut shutdown) => {
                    shared.link.stats.add(Stat::Lost, 1 + items.len() as u64);
                    return;
                }
            };
            match sent {
                Ok(()) => shared.link.stats.add(Stat::Published, 1),
                Err(err) => {
                    tracing::warn!(error = %err, "hub: nats publish failed");
                    shared.link.stats.add(Stat::Lost, 1);
                }
            }
        }
    }
}

/// Whether the client is connected now, and how many times it connected so far.
fn connection(client: &Client) -> (bool, u64) {
    (
        client.connection_state() == async_nats::connection::State::Connected,
        client.statistics().connects.load(Ordering::Relaxed),
    )
}

/// Holds one subscription per room with local members, each read by its own task (so each
/// room's messages stay in order), until the broker shuts down.
async fn manage_subscriptions(shared: &Arc<Shared>, client: &Client) {
    let subs = &shared.link.subs;
    subs.connected();
    if let Some(hub) = shared.link.hub() {
        for room in hub.local_rooms() {
            subs.mark_dirty(&room);
        }
    }
    let mut readers: HashMap<RoomName, JoinHandle<()>> = HashMap::new();
    // Subscribed, not yet confirmed by a round trip.
    let mut unconfirmed: Vec<RoomName> = Vec::new();
    let mut shutdown = shared.link.shutdown_signal();
    let (mut was_up, mut seen_connects) = (false, 0);
    let confirm_subject = format!("{}_confirm", shared.subject_prefix);
    loop {
        // The connection, from the client (its events can be lost): a new connection means
        // the client restored every subscription, to be confirmed again.
        let (up, connects) = connection(client);
        if connects > seen_connects {
            if seen_connects > 0 {
                shared
                    .link
                    .stats
                    .add(Stat::Reconnects, connects - seen_connects);
                tracing::info!("hub: nats connected again");
            }
            seen_connects = connects;
            unconfirmed = readers.keys().cloned().collect();
        }
        if up != was_up {
            shared.link.stats.set_connected(up);
            if !up {
                subs.unconfirm_all();
                tracing::warn!("hub: nats connection lost");
            }
            was_up = up;
        }
        // What to do, decided with the hub held; done without it (the awaits below can
        // wait for NATS, and the hub must stay free to go).
        let Some(hub) = shared.link.hub() else { break };
        let (mut join, mut left) = (Vec::new(), Vec::new());
        for room in subs.take_dirty() {
            let reading = readers.get(&room).is_some_and(|r| !r.is_finished());
            match (hub.room_size(&room) > 0, reading) {
                (true, false) => join.push(room),
                (false, _) if readers.contains_key(&room) => left.push(room),
                _ => {}
            }
        }
        drop(hub);
        for room in left.iter() {
            // Dropping the subscriber (with its task) unsubscribes.
            if let Some(reader) = readers.remove(room) {
                reader.abort();
            }
        }
        subs.confirm(&[], &left);
        for room in join {
            let subscribed = tokio::select! {
                subscribed = client.subscribe(shared.subject(&room)) => subscribed,
                () = shut_down(&mut shutdown) => break,
            };
            match subscribed {
                Ok(subscriber) => {
                    let reader = tokio::spawn(read(shared.clone(), room.clone(), subscriber));
                    if let Some(old) = readers.insert(room.clone(), reader) {
                        old.abort();
                    }
                    unconfirmed.push(room);
                }
                Err(err) => {
                    tracing::warn!(room = %room, error = %err, "hub: nats subscribe failed");
                    subs.mark_dirty(&room);
                }
            }
        }
        if shared.link.is_shut_down() {
            break;
        }
        unconfirmed.retain(|room| readers.contains_key(room));
        if up && !unconfirmed.is_empty() {
            // A request's answer (here: that nobody answers) comes after the server
            // processed every SUB sent before it on this connection; a flush only says they
            // left the socket.
            let round_trip = tokio::select! {
                answer = tokio::time::timeout(
                    shared.timeout,
                    client.request(confirm_subject.clone(), bytes::Bytes::new()),
                ) => answer,
                () = shut_down(&mut shutdown) => break,
            };
            let answered = matches!(&round_trip, Ok(Err(err))
                if err.kind() == async_nats::RequestErrorKind::NoResponders)
                || matches!(&round_trip, Ok(Ok(_)));
            // Confirmed only if the connection that carried the SUBs is still the one up.
            if answered && connection(client) == (true, seen_connects) {
                subs.confirm(&std::mem::take(&mut unconfirmed), &[]);
            }
        }
        let retry = !unconfirmed.is_empty();
        tokio::select! {
            () = subs.changed.notified() => {}
            () = shut_down(&mut shutdown) => break,
            // The client's state is polled too: its events may be lost.
            () = tokio::time::sleep(if retry { RETRY } else { POLL }) => {}
        }
    }
    for (_, reader) in readers {
        reader.abort();
    }
}

async fn read(shared: Arc<Shared>, room: RoomName, mut subscriber: Subscriber) {
    while let Some(message) = subscriber.next().await {
        shared.link.deliver(room.clone(), message.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_name_becomes_one_safe_subject_token() {
        assert_eq!(subject_token("lobby-1_a"), "lobby-1_a");
        assert_eq!(subject_token("a.b"), "~612e62");
        assert_eq!(subject_token("*"), "~2a");
        assert_eq!(subject_token("é"), "~c3a9");
        // An escaped name cannot be taken for a plain one: `~` is never left as it is.
        assert_eq!(subject_token("~61"), "~7e3631");
    }
}
