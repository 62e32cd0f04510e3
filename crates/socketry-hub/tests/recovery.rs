//! History and recovery in one process (the history `LocalBroker` keeps): a client that comes
//! back with its last position gets what it missed, in order, before anything newer, nothing
//! twice, or is told why it cannot.

mod support;

use socketry::Message;
use socketry_hub::{History, Hub, HubConfig, RoomOptions};
use support::{Client, eventually, hub_server, member_of, next_text};

/// A hub whose rooms keep the last `max_len` publications; members get `<position> <text>`.
fn hub(max_len: usize) -> Hub {
    hub_with(HubConfig::default(), max_len)
}

fn hub_with(config: HubConfig, max_len: usize) -> Hub {
    Hub::new(config.room_options(move |_| {
        RoomOptions::default().history(
            History::new(|position, message| {
                Message::text(format!(
                    "{position} {}",
                    String::from_utf8_lossy(message.as_payload())
                ))
            })
            .max_len(max_len),
        )
    }))
}

/// A numbered publication as a client got it: `(offset, epoch, text)`.
async fn next_numbered(ws: &mut Client) -> (u64, String, String) {
    let text = next_text(ws).await;
    let (position, body) = text.split_once(' ').expect("<position> <text>");
    let (offset, epoch) = position.split_once(':').expect("<offset>:<epoch>");
    (
        offset.parse().expect("an offset"),
        epoch.to_owned(),
        body.to_owned(),
    )
}

/// Joins `room` through a client that then reads 10 publications, and leaves: the last
/// position it saw.
async fn saw_ten_and_left(hub: &Hub, addr: std::net::SocketAddr, room: &str) -> String {
    let mut first = member_of(addr, room).await;
    eventually("the first client's join", || hub.room_size(room) == 1).await;
    for i in 0..10 {
        hub.publish(room, format!("m{i}")).unwrap();
    }
    let mut last = None;
    for i in 0..10u64 {
        let (offset, epoch, text) = next_numbered(&mut first).await;
        assert_eq!((offset, text), (i + 1, format!("m{i}")));
        last = Some(format!("{offset}:{epoch}"));
    }
    drop(first);
    eventually("the first client left", || hub.room_size(room) == 0).await;
    last.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_back_after_missing_500_gets_them_in_order_then_the_live_ones_without_gap_or_twice()
 {
    let hub = hub(1_000);
    let addr = hub_server(hub.clone()).await;
    let last = saw_ten_and_left(&hub, addr, "r").await;
    for i in 10..510 {
        hub.publish("r", format!("m{i}")).unwrap();
    }
    // Back, while more is published: those come after the missed ones, once each.
    let mut back = support::client(addr).await;
    back.send(format!("recover r {last}")).await.unwrap();
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 510..610 {
                hub.publish("r", format!("m{i}")).unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut expected = 11;
    let mut reply = None;
    while expected <= 610 {
        let text = next_text(&mut back).await;
        if let Some(rest) = text.strip_prefix("recovery ") {
            assert!(reply.is_none(), "one reply");
            reply = Some(rest.to_owned());
            continue;
        }
        let (position, body) = text.split_once(' ').unwrap();
        let offset: u64 = position.split_once(':').unwrap().0.parse().unwrap();
        assert_eq!(offset, expected, "{text}");
        assert_eq!(body, format!("m{}", expected - 1));
        expected += 1;
    }
    publisher.await.unwrap();
    let reply = match reply {
        Some(reply) => reply,
        None => next_text(&mut back)
            .await
            .strip_prefix("recovery ")
            .unwrap()
            .to_owned(),
    };
    // The 500 missed, and those of the live ones published before the history was read.
    let missed: usize = reply
        .strip_prefix("recovered ")
        .expect(&reply)
        .parse()
        .unwrap();
    assert!((500..=600).contains(&missed), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_position_was_trimmed_or_of_another_epoch_is_told_so_and_gets_what_is_new() {
    let hub = hub(100);
    let addr = hub_server(hub.clone()).await;
    let last = saw_ten_and_left(&hub, addr, "r").await;
    for i in 10..510 {
        hub.publish("r", format!("m{i}")).unwrap();
    }
    let epoch = last.split_once(':').unwrap().1.to_owned();
    let mut back = support::client(addr).await;
    back.send(format!("recover r {last}")).await.unwrap();
    assert_eq!(
        next_text(&mut back).await,
        format!("recovery lost Trimmed 510:{epoch}")
    );
    hub.publish("r", "new").unwrap();
    assert_eq!(
        next_numbered(&mut back).await,
        (511, epoch.clone(), "new".to_owned())
    );

    let mut other = support::client(addr).await;
    other.send("recover r 5:abc".to_owned()).await.unwrap();
    assert_eq!(
        next_text(&mut other).await,
        format!("recovery lost EpochChanged 511:{epoch}")
    );
    // Up to date: nothing missed.
    let mut current = support::client(addr).await;
    current
        .send(format!("recover r 511:{epoch}"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut current).await, "recovery recovered 0");
    // No position: a plain join, told where the room is.
    let mut fresh = support::client(addr).await;
    fresh.send("recover r -".to_owned()).await.unwrap();
    assert_eq!(
        next_text(&mut fresh).await,
        format!("recovery fresh 511:{epoch}")
    );
}

#[tokio::test]
async fn a_room_without_history_joins_plainly_and_its_messages_carry_no_position() {
    let hub = Hub::default();
    let addr = hub_server(hub.clone()).await;
    let mut ws = support::client(addr).await;
    ws.send("recover plain 3:abc".to_owned()).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "recovery fresh -");
    hub.publish("plain", "as is").unwrap();
    assert_eq!(next_text(&mut ws).await, "as is");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_missed_more_than_its_queue_holds_is_told_too_much_and_stays_connected() {
    // A 64 KiB queue; 200 missed publications of 1 KiB do not fit in it.
    let hub = hub_with(HubConfig::default().max_queue_bytes(64 * 1024), 1_000);
    let addr = hub_server(hub.clone()).await;
    let last = saw_ten_and_left(&hub, addr, "r").await;
    let big = "x".repeat(1024);
    for _ in 0..200 {
        hub.publish("r", big.clone()).unwrap();
    }
    let mut back = support::client(addr).await;
    back.send(format!("recover r {last}")).await.unwrap();
    let reply = next_text(&mut back).await;
    assert!(reply.starts_with("recovery lost TooMuch 210:"), "{reply}");
    // Not disconnected as slow, and live publications come as usual.
    hub.publish("r", "after").unwrap();
    let (offset, _, text) = next_numbered(&mut back).await;
    assert_eq!((offset, text.as_str()), (211, "after"));
}
