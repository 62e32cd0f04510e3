//! [`Member`]: a connection's handle on the hub.

use std::{fmt, sync::Arc, sync::atomic::Ordering, time::Duration};

use socketry::CloseCode;

use crate::{
    ClientInfo, ConnId, Delivery, Hub, HubError, Outgoing, Position, Publication, PublishReport,
    Recovery, RoomName, hub::MemberState,
};

/// A connection in the hub: it joins and leaves rooms, publishes, and sends to its own
/// connection through the same bounded queue as everything the hub sends it.
///
/// Dropping it takes the connection out of the hub and out of every room (with leave
/// events where rooms ask for them); the writer then sends what is queued and stops. The
/// connection also leaves by itself when its writer fails or it is disconnected as slow.
///
/// # Examples
///
/// ```no_run
/// use socketry_hub::{ClientInfo, Hub};
///
/// # fn run(hub: &Hub, writer: socketry::WebSocketWriter<tokio::net::TcpStream>) -> Result<(), socketry_hub::HubError> {
/// let member = hub.attach(writer, ClientInfo::new("alice"));
/// member.join("room:1")?;
/// member.send("welcome")?; // to this connection only
/// member.publish_to_others("room:1", "alice joined")?;
/// assert_eq!(hub.room_size("room:1"), 1);
/// drop(member); // leaves room:1
/// # Ok(()) }
/// ```
pub struct Member {
    pub(crate) hub: Hub,
    pub(crate) state: Arc<MemberState>,
}

impl Member {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.state.id
    }

    /// What the application said about the connection.
    pub fn info(&self) -> &ClientInfo {
        &self.state.info
    }

    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Joins `room` (created if it has no members yet). `Ok(false)` if already in it.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidRoomName`]; [`HubError::TooManyRooms`]; [`HubError::Gone`] once the
    /// connection left the hub (it ended, or was disconnected as slow).
    pub fn join(&self, room: &str) -> Result<bool, HubError> {
        self.hub.join_member(&self.state, room)
    }

    /// Joins `room`; if it keeps history ([`RoomOptions::history`](crate::RoomOptions::history))
    /// and `since` is the last position this client saw there (sent back by a client that
    /// reconnects), first sends what it missed since, in order, before anything newer,
    /// nothing twice. [`Recovery`] says whether that was possible; if not (the history was
    /// trimmed or started again), the member is in the room all the same and the client
    /// should load the room's state afresh.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join). A history that cannot be read is no error:
    /// [`Recovery::Lost`] with [`LostReason::Unavailable`](crate::LostReason::Unavailable).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use socketry_hub::{Member, Position, Recovery};
    ///
    /// # async fn run(member: Member, since: Option<&str>) -> Result<(), socketry_hub::HubError> {
    /// let since: Option<Position> = since.and_then(|s| s.parse().ok());
    /// match member.join_since("chat:lobby", since).await? {
    ///     Recovery::Recovered { missed } => println!("sent {missed} missed messages"),
    ///     Recovery::Lost { .. } => { member.send(r#"{"type":"resync"}"#)?; }
    ///     _ => {}
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn join_since(
        &self,
        room: &str,
        since: Option<Position>,
    ) -> Result<Recovery, HubError> {
        self.hub.join_since(&self.state, room, since).await
    }

    /// Leaves `room`. `Ok(false)` if it was not in it.
    ///
    /// # Errors
    ///
    /// None yet; the `Result` leaves room for brokers that can fail.
    pub fn leave(&self, room: &str) -> Result<bool, HubError> {
        self.hub.leave_member(&self.state, room)
    }

    /// The rooms it is in.
    pub fn rooms(&self) -> Vec<RoomName> {
        self.state.rooms()
    }

    /// Publishes to every member of `room`, this one included (it need not be a member).
    ///
    /// # Errors
    ///
    /// As [`Hub::publish`].
    pub fn publish(
        &self,
        room: &str,
        message: impl Into<Outgoing>,
    ) -> Result<PublishReport, HubError> {
        self.hub.publish(room, message)
    }

    /// Publishes to every member of `room` but this one.
    ///
    /// # Errors
    ///
    /// As [`Hub::publish`].
    pub fn publish_to_others(
        &self,
        room: &str,
        message: impl Into<Outgoing>,
    ) -> Result<PublishReport, HubError> {
        self.hub.publish_with(
            Publication::new(RoomName::new(room)?, message.into().0).except(self.state.id),
        )
    }

    /// Sends `message` to this connection, behind what is queued for it, under the hub's
    /// overflow policy.
    ///
    /// # Errors
    ///
    /// [`HubError::Gone`] once the connection left the hub; [`HubError::ControlMessage`],
    /// [`HubError::TooLarge`].
    pub fn send(&self, message: impl Into<Outgoing>) -> Result<Delivery, HubError> {
        let policy = self.hub.config().overflow;
        self.hub
            .send_to_member(&self.state, &message.into().0, policy)
    }

    /// Bytes queued for this connection and not yet written to its socket (the browser's
    /// `bufferedAmount`, on the server's side).
    pub fn buffered_amount(&self) -> usize {
        self.state.outbox.buffered_amount()
    }

    /// Messages this connection did not get because its queue was full
    /// ([`Overflow::Drop`](crate::Overflow::Drop)).
    pub fn dropped(&self) -> u64 {
        self.state.dropped.load(Ordering::Relaxed)
    }

    /// Whether it was disconnected as slow.
    pub fn is_slow(&self) -> bool {
        self.state.outbox.is_slow()
    }

    /// Whether the connection left the hub (disconnected as slow, its writer failed, or
    /// [`disconnect`](Self::disconnect)): joins and sends fail with [`HubError::Gone`] then.
    pub fn is_gone(&self) -> bool {
        self.state.joined.lock().left
    }

    /// Takes the connection out of the hub and closes it with `code` and `reason`, after
    /// what was queued for it.
    ///
    /// # Errors
    ///
    /// [`HubError::Connection`] for a code that may not be sent; [`HubError::Gone`] if the
    /// connection left the hub already (someone else is closing it).
    pub fn disconnect(&self, code: CloseCode, reason: &str) -> Result<(), HubError> {
        if self.is_gone() {
            return Err(HubError::Gone(self.state.id));
        }
        self.hub.disconnect_member(&self.state, code, reason)
    }

    /// A handle on this connection's writer task, to wait for it after the member is gone.
    pub fn writer(&self) -> WriterHandle {
        WriterHandle {
            hub: self.hub.clone(),
            state: self.state.clone(),
        }
    }
}

/// The writer task of an attached connection, seen from outside: lets whoever closes the
/// connection (socketry-axum's `Conn`) first let it write what was queued.
pub struct WriterHandle {
    hub: Hub,
    state: Arc<MemberState>,
}

impl WriterHandle {
    /// Takes the connection out of the hub (as dropping its [`Member`] does) and waits, at
    /// most `timeout`, until its writer task ended: it wrote what was queued, or gave up on a
    /// peer that did not take it within [`HubConfig::slow_close_timeout`](crate::HubConfig::slow_close_timeout).
    pub async fn finish(&self, timeout: Duration) {
        self.hub.remove_and_settle(&self.state);
        let done = async {
            loop {
                let notified = self.state.writer_done_notify.notified();
                tokio::pin!(notified);
                // Registered before the check, so that the end cannot slip between them.
                notified.as_mut().enable();
                if self.state.writer_done.load(Ordering::Acquire) {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(timeout, done).await;
    }

    /// Whether the writer task ended.
    pub fn is_finished(&self) -> bool {
        self.state.writer_done.load(Ordering::Acquire)
    }
}

impl fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterHandle")
            .field("conn", &self.state.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.hub.remove_and_settle(&self.state);
    }
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.state.id)
            .field("user", &self.state.info.user())
            .field("buffered_amount", &self.buffered_amount())
            .finish()
    }
}
