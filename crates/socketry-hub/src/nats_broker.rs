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
    cluster::{NodeLink, Stat, broker_over_link, jittered, shut_down},
};

/// Publications taken from the buffer at once.
const MAX_BATCH: usize = 512;

/// Builds a [`NatsBroker`].
#[derive(Debug, Clone)]
#[must_use = "call build() to make the broker"]
pub struct NatsBrokerBuilder {
    url: String,
    prefix: String,
    buffer: PublishBuffer,
    backoff: (Duration, Duration),
    subscription_capacity: usize,
}

impl NatsBrokerBuilder {
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
    /// [`HubError::Broker`] outside a tokio runtime (the broker's tasks run on the runtime
    /// it is built in).
    pub fn build(self) -> Result<NatsBroker, HubError> {
        let runtime = Handle::try_current().map_err(|e| HubError::Broker(Box::new(e)))?;
        Ok(NatsBroker {
            shared: Arc::new(Shared {
                link: NodeLink::new("nats", self.buffer, self.backoff),
                url: self.url,
                subject_prefix: format!("{}.room.", self.prefix),
                subscription_capacity: self.subscription_capacity,
                connected_once: AtomicBool::new(false),
                reconfirm: AtomicBool::new(false),
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
/// channel), past which publishing fails with [`HubError::Broker`]. [`BrokerStats::published`](crate::BrokerStats::published)
/// counts what was handed to the client, which sends it once connected. When the client
/// reconnects it subscribes every room again itself; what other nodes published meanwhile
/// does not reach this node.
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
    connected_once: AtomicBool,
    /// The client connected again: the subscriptions it restored are to be confirmed.
    reconfirm: AtomicBool,
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

broker_over_link!(NatsBroker);

impl Shared {
    fn subject(&self, room: &str) -> String {
        format!("{}{}", self.subject_prefix, subject_token(room))
    }

    fn on_event(&self, event: Event) {
        match event {
            Event::Connected => {
                self.link.stats.set_connected(true);
                if self.connected_once.swap(true, Ordering::AcqRel) {
                    self.link.stats.add(Stat::Reconnects, 1);
                    tracing::info!("hub: nats connected again");
                    self.reconfirm.store(true, Ordering::Release);
                    self.link.subs.changed.notify_one();
                }
            }
            Event::Disconnected => {
                self.link.subs.unconfirm_all();
                self.link.stats.set_connected(false);
                tracing::warn!("hub: nats connection lost");
            }
            Event::SlowConsumer(sid) => {
                self.link.stats.add(Stat::SlowConsumerEvents, 1);
                tracing::warn!(sid, "hub: nats dropped messages for a slow subscription");
            }
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
    let events = shared.clone();
    let options = ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .subscription_capacity(shared.subscription_capacity)
        .reconnect_delay_callback(move |attempts| jittered(min, max, attempts.saturating_sub(1)))
        .event_callback(move |event| {
            let events = events.clone();
            async move { events.on_event(event) }
        });
    let client = loop {
        match options.clone().connect(shared.url.as_str()).await {
            Ok(client) => break client,
            Err(err) => {
                // With retry_on_initial_connect, only what retrying cannot mend (a bad URL).
                tracing::error!(error = %err, "hub: nats client cannot start");
                if !shared.link.pause(Duration::from_secs(5)).await {
                    return;
                }
            }
        }
    };
    tokio::spawn(publisher(shared.clone(), client.clone()));
    manage_subscriptions(&shared, &client).await;
}

/// Hands what waits in the publish buffer to the client, in order.
async fn publisher(shared: Arc<Shared>, client: Client) {
    let mut batch = Vec::new();
    let mut shutdown = shared.link.shutdown_signal();
    while shared.link.outbound.take(MAX_BATCH, &mut batch).await {
        for (room, envelope) in batch.drain(..) {
            // The client's own channel is bounded: while NATS is away this waits, and the
            // publish buffer fills behind it.
            let sent = tokio::select! {
                sent = client.publish(shared.subject(&room), envelope) => sent,
                () = shut_down(&mut shutdown) => return,
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
    // Subscribed, not yet confirmed by a flush (one that failed is tried again).
    let mut unconfirmed: Vec<RoomName> = Vec::new();
    let mut shutdown = shared.link.shutdown_signal();
    loop {
        let Some(hub) = shared.link.hub() else { break };
        let (mut joined, mut left) = (Vec::new(), Vec::new());
        for room in subs.take_dirty() {
            match (hub.room_size(&room) > 0, readers.contains_key(&room)) {
                (true, false) => match client.subscribe(shared.subject(&room)).await {
                    Ok(subscriber) => {
                        let reader = tokio::spawn(read(shared.clone(), room.clone(), subscriber));
                        readers.insert(room.clone(), reader);
                        joined.push(room);
                    }
                    Err(err) => {
                        // Only a client that is closing refuses: nothing to retry.
                        tracing::warn!(error = %err, "hub: nats subscribe failed");
                    }
                },
                (false, true) => {
                    // Dropping the subscriber (with its task) unsubscribes.
                    if let Some(reader) = readers.remove(&room) {
                        reader.abort();
                    }
                    left.push(room);
                }
                _ => {}
            }
        }
        drop(hub);
        subs.confirm(&[], &left);
        unconfirmed.retain(|room| readers.contains_key(room));
        unconfirmed.extend(joined);
        if shared.reconfirm.swap(false, Ordering::AcqRel) {
            unconfirmed = readers.keys().cloned().collect();
        }
        if !unconfirmed.is_empty() {
            // A flush's answer comes after the server processed every SUB before it.
            match client.flush().await {
                Ok(()) => subs.confirm(&std::mem::take(&mut unconfirmed), &[]),
                Err(err) => tracing::debug!(error = %err, "hub: nats flush failed, retrying"),
            }
        }
        let retry = !unconfirmed.is_empty();
        tokio::select! {
            () = subs.changed.notified() => {}
            () = shut_down(&mut shutdown) => break,
            () = tokio::time::sleep(Duration::from_millis(100)), if retry => {}
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
