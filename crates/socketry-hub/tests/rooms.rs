//! Rooms, publishing and presence over real sockets.

mod support;

use socketry::{CloseCode, Message};
use socketry_hub::{
    ClientInfo, Hub, HubConfig, HubError, MAX_ROOM_NAME_LEN, PresenceKind, RoomOptions,
};
use support::{bounded, client, eventually, hub_server, member_of, next_text};

#[tokio::test]
async fn a_publication_reaches_every_member_of_the_room_and_nobody_else() {
    let hub = Hub::default();
    let addr = hub_server(hub.clone()).await;
    let mut a = member_of(addr, "red").await;
    let mut b = member_of(addr, "red").await;
    let mut outsider = member_of(addr, "blue").await;
    eventually("joins", || {
        hub.room_size("red") == 2 && hub.room_size("blue") == 1
    })
    .await;

    a.send("pub red hello").await.unwrap();
    assert_eq!(next_text(&mut a).await, "hello");
    assert_eq!(next_text(&mut b).await, "hello");
    outsider.send("pub blue only-blue").await.unwrap();
    // The outsider's next message is its own room's, not red's.
    assert_eq!(next_text(&mut outsider).await, "only-blue");
}

#[tokio::test]
async fn publish_to_others_skips_the_sender() {
    let hub = Hub::default();
    let addr = hub_server(hub.clone()).await;
    let mut a = member_of(addr, "r").await;
    let mut b = member_of(addr, "r").await;
    eventually("joins", || hub.room_size("r") == 2).await;
    a.send("others r from-a").await.unwrap();
    assert_eq!(next_text(&mut b).await, "from-a");
    b.send("pub r from-b").await.unwrap();
    // a's first message is b's: its own never came back.
    assert_eq!(next_text(&mut a).await, "from-b");
}

#[tokio::test]
async fn send_to_reaches_one_connection_by_id() {
    let hub = Hub::default();
    let addr = hub_server(hub.clone()).await;
    let mut a = member_of(addr, "r").await;
    let mut b = member_of(addr, "r").await;
    eventually("joins", || hub.room_size("r") == 2).await;
    let members = hub.local_members("r");
    let target = members[1].conn;
    hub.send_to(target, "just you").unwrap();
    hub.publish("r", "everyone").unwrap();
    // Exactly one of the two got the private message first.
    let (first_a, first_b) = (next_text(&mut a).await, next_text(&mut b).await);
    let mut firsts = [first_a, first_b];
    firsts.sort();
    assert_eq!(firsts, ["everyone", "just you"]);
    let unknown = socketry_hub::ConnId::from_parts(hub.node(), u64::MAX);
    assert!(matches!(hub.send_to(unknown, "x"), Err(HubError::Gone(_))));
}

#[tokio::test]
async fn a_connection_that_ends_leaves_every_room() {
    let hub = Hub::default();
    let addr = hub_server(hub.clone()).await;
    let mut a = client(addr).await;
    for room in ["one", "two", "three"] {
        a.send(format!("join {room}")).await.unwrap();
    }
    let _b = member_of(addr, "two").await;
    eventually("joins", || {
        hub.room_size("three") == 1 && hub.room_size("two") == 2
    })
    .await;
    assert_eq!(hub.stats().rooms, 3);

    a.close(socketry::CloseCode::NORMAL, "bye").await.unwrap();
    bounded(async { while a.recv().await.is_some() {} }).await;
    eventually("the leave", || hub.stats().connections == 1).await;
    assert_eq!(hub.room_size("one"), 0);
    assert_eq!(hub.room_size("two"), 1);
    assert_eq!(hub.stats().rooms, 1, "empty rooms are gone");
}

#[tokio::test]
async fn presence_lists_members_with_their_info_and_rooms_can_announce_joins_and_leaves() {
    let hub = Hub::new(HubConfig::default().room_options(|room| {
        if room.starts_with("chat:") {
            RoomOptions::default().presence_events(|event| {
                let verb = match event.kind {
                    PresenceKind::Join => "join",
                    PresenceKind::Leave => "leave",
                };
                let (room, user, version) = (event.room, event.info.user(), event.version);
                Some(Message::text(format!("{verb} {room} {user} v{version}")))
            })
        } else {
            RoomOptions::default()
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_hub = hub.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            n += 1;
            let hub = server_hub.clone();
            tokio::spawn(async move {
                let ws = socketry::accept(tcp).await.unwrap();
                let (mut reader, writer) = ws.split();
                let info = ClientInfo::new(format!("user{n}")).with_data(format!("{{\"n\":{n}}}"));
                let member = hub.attach(writer, info);
                member.join("chat:main").unwrap();
                member.join("quiet").unwrap();
                while let Some(Ok(_)) = reader.recv().await {}
            });
        }
    });
    let mut first = client(addr).await;
    eventually("first join", || hub.room_size("chat:main") == 1).await;
    let mut second = client(addr).await;
    let join = next_text(&mut first).await;
    let join_version: u64 = join
        .strip_prefix("join chat:main user2 v")
        .unwrap()
        .parse()
        .unwrap();
    eventually("second join", || hub.room_size("quiet") == 2).await;

    let mut members = hub.presence("chat:main").await.unwrap();
    members.sort_by_key(|entry| entry.conn);
    let users: Vec<_> = members.iter().map(|e| e.info.user().to_owned()).collect();
    assert_eq!(users, ["user1", "user2"]);
    assert_eq!(&members[1].info.data()[..], b"{\"n\":2}");
    assert_eq!(hub.presence_count("chat:main").await.unwrap(), 2);
    let snapshot = hub.local_presence("chat:main");
    // The snapshot is current to the join it saw last.
    assert_eq!(
        (snapshot.version, snapshot.members.len()),
        (join_version, 2)
    );

    second.close(socketry::CloseCode::NORMAL, "").await.unwrap();
    bounded(async { while second.recv().await.is_some() {} }).await;
    let leave = next_text(&mut first).await;
    let leave_version: u64 = leave
        .strip_prefix("leave chat:main user2 v")
        .unwrap()
        .parse()
        .unwrap();
    assert!(leave_version > join_version);
    assert_eq!(hub.local_presence("chat:main").version, leave_version);
    eventually("the leave", || hub.room_size("quiet") == 1).await;
    // The quiet room asked for no events: the next message is a publication.
    hub.publish("quiet", "after").unwrap();
    assert_eq!(next_text(&mut first).await, "after");
}

#[tokio::test]
async fn room_names_and_room_counts_are_bounded() {
    let hub = Hub::new(HubConfig::default().max_rooms_per_member(2));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_hub = hub.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = socketry::accept(tcp).await.unwrap();
        let (mut reader, writer) = ws.split();
        let member = server_hub.attach(writer, ClientInfo::default());
        let results = (
            member.join(""),
            member.join(&"x".repeat(MAX_ROOM_NAME_LEN + 1)),
            member.join(&"y".repeat(MAX_ROOM_NAME_LEN)),
            member.join("two"),
            member.join("two"),
            member.join("three"),
        );
        tx.send(results).unwrap();
        while let Some(Ok(_)) = reader.recv().await {}
    });
    let _client = client(addr).await;
    let (empty, long, longest, two, again, three) = bounded(rx).await.unwrap();
    assert!(matches!(empty, Err(HubError::InvalidRoomName { .. })));
    assert!(matches!(long, Err(HubError::InvalidRoomName { .. })));
    assert!(longest.unwrap());
    assert!(two.unwrap());
    assert!(!again.unwrap(), "already a member");
    assert!(matches!(three, Err(HubError::TooManyRooms { limit: 2 })));
    assert!(hub.publish("bad\nname", "x").is_err());
}

#[tokio::test]
async fn control_messages_and_messages_larger_than_a_queue_are_refused_not_fanned_out() {
    let hub = Hub::new(HubConfig::default().max_queue_bytes(64 * 1024));
    let addr = hub_server(hub.clone()).await;
    let mut a = member_of(addr, "r").await;
    eventually("join", || hub.room_size("r") == 1).await;
    let close = Message::Close(Some(socketry::CloseFrame::new(
        CloseCode::GOING_AWAY,
        "bye",
    )));
    assert!(matches!(
        hub.publish("r", close),
        Err(HubError::ControlMessage)
    ));
    assert!(matches!(
        hub.publish("r", Message::Ping("x".into())),
        Err(HubError::ControlMessage)
    ));
    let huge = "x".repeat(64 * 1024);
    assert!(matches!(
        hub.publish("r", huge),
        Err(HubError::TooLarge { limit: 65536, .. })
    ));
    // The member was neither closed nor disconnected as slow: the next message arrives.
    hub.publish("r", "still here").unwrap();
    assert_eq!(next_text(&mut a).await, "still here");
    assert_eq!(hub.stats().slow_disconnects, 0);
}

#[tokio::test]
async fn disconnect_writes_what_was_queued_then_closes_with_the_code() {
    let hub = Hub::default();
    let addr = hub_server(hub.clone()).await;
    let mut a = member_of(addr, "r").await;
    eventually("join", || hub.room_size("r") == 1).await;
    let conn = hub.local_members("r")[0].conn;
    for i in 0..3 {
        hub.publish("r", format!("queued {i}")).unwrap();
    }
    hub.disconnect(conn, CloseCode::from(4003), "banned")
        .unwrap();
    assert_eq!(hub.room_size("r"), 0, "out of the hub at once");
    for i in 0..3 {
        assert_eq!(next_text(&mut a).await, format!("queued {i}"));
    }
    match bounded(a.recv()).await {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 4003);
            assert_eq!(frame.reason, "banned");
        }
        other => panic!("expected the close, got {other:?}"),
    }
    assert!(matches!(
        hub.disconnect(conn, CloseCode::NORMAL, ""),
        Err(HubError::Gone(_))
    ));
}

#[tokio::test]
async fn publish_batch_delivers_every_message_in_order_and_refuses_a_bad_batch_whole() {
    let hub = Hub::default();
    let addr = hub_server(hub.clone()).await;
    let mut a = member_of(addr, "r").await;
    let mut b = member_of(addr, "r").await;
    eventually("joins", || hub.room_size("r") == 2).await;
    let report = hub
        .publish_batch("r", (0..100).map(|i| format!("m{i}")))
        .unwrap();
    assert_eq!(report.delivered, 200);
    for ws in [&mut a, &mut b] {
        for i in 0..100 {
            assert_eq!(next_text(ws).await, format!("m{i}"));
        }
    }
    let bad = [Message::text("fine"), Message::Ping("no".into())];
    assert!(matches!(
        hub.publish_batch("r", bad),
        Err(HubError::ControlMessage)
    ));
    hub.publish("r", "after").unwrap();
    assert_eq!(
        next_text(&mut a).await,
        "after",
        "nothing of the bad batch went out"
    );
    assert_eq!(hub.stats().deliveries, 202);
}

#[tokio::test]
async fn presence_events_too_large_for_a_queue_are_not_sent_and_disconnect_nobody() {
    // A 200-byte queue and events of 300 bytes: an event that went out would overflow every
    // member, disconnect it as slow, and its own leave event would go on to the next one.
    let hub = Hub::new(HubConfig::default().max_queue_bytes(200).room_options(|_| {
        RoomOptions::default().presence_events(|_| Some(Message::text("e".repeat(300))))
    }));
    let addr = hub_server(hub.clone()).await;
    let mut a = member_of(addr, "r").await;
    let mut b = member_of(addr, "r").await;
    let c = member_of(addr, "r").await;
    eventually("joins", || hub.room_size("r") == 3).await;
    drop(c);
    eventually("the leave", || hub.room_size("r") == 2).await;
    hub.publish("r", "small").unwrap();
    assert_eq!(next_text(&mut a).await, "small");
    assert_eq!(next_text(&mut b).await, "small");
    assert_eq!(hub.stats().slow_disconnects, 0);
}

#[tokio::test]
async fn presence_versions_never_go_back_when_a_room_is_made_again() {
    let hub = Hub::default();
    let addr = hub_server(hub.clone()).await;
    let mut a = member_of(addr, "r").await;
    eventually("join", || hub.room_size("r") == 1).await;
    let first = hub.local_presence("r").version;
    a.send("leave r").await.unwrap();
    eventually("leave", || hub.room_size("r") == 0).await;
    assert_eq!(
        hub.stats().rooms,
        0,
        "the room is gone with its last member"
    );
    a.send("join r").await.unwrap();
    eventually("join again", || hub.room_size("r") == 1).await;
    // The same name, a new room: its versions continue from the old room's, so a client
    // holding events of the old room cannot take them for news of the new one.
    assert!(hub.local_presence("r").version > first + 1);
}
