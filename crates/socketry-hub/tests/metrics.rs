//! The hub's gauges and counters reach a `metrics` recorder (here a small one of the test's
//! own, installed for the hub as it is built).

mod support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use socketry_hub::{Hub, HubConfig, Overflow, metric_names as names};
use support::{eventually, hub_server, member_of, next_text, raw_send_text, stalled_peer};

#[derive(Default)]
struct Value(Mutex<f64>);

impl CounterFn for Value {
    fn increment(&self, value: u64) {
        *self.0.lock().unwrap() += value as f64;
    }
    fn absolute(&self, value: u64) {
        *self.0.lock().unwrap() = value as f64;
    }
}

impl GaugeFn for Value {
    fn increment(&self, value: f64) {
        *self.0.lock().unwrap() += value;
    }
    fn decrement(&self, value: f64) {
        *self.0.lock().unwrap() -= value;
    }
    fn set(&self, value: f64) {
        *self.0.lock().unwrap() = value;
    }
}

#[derive(Default, Clone)]
struct TestRecorder(Arc<Mutex<HashMap<String, Arc<Value>>>>);

impl TestRecorder {
    fn value(&self, name: &str) -> Arc<Value> {
        self.0
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .clone()
    }
    fn get(&self, name: &str) -> f64 {
        *self.value(name).0.lock().unwrap()
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.value(key.name()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.value(key.name()))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[tokio::test]
async fn gauges_and_counters_follow_connections_rooms_deliveries_and_drops() {
    let recorder = TestRecorder::default();
    let hub = metrics::with_local_recorder(&recorder, || {
        Hub::new(HubConfig::default().max_queue_messages(1))
    });
    let addr = hub_server(hub.clone()).await;
    let mut a = member_of(addr, "r").await;
    let mut b = member_of(addr, "r").await;
    eventually("joins", || hub.room_size("r") == 2).await;
    assert_eq!(recorder.get(names::CONNECTIONS), 2.0);
    assert_eq!(recorder.get(names::ROOMS), 1.0);
    assert_eq!(recorder.get(names::MEMBERS), 2.0);

    for text in ["one", "two"] {
        hub.publish("r", text).unwrap();
        assert_eq!(next_text(&mut a).await, text);
        assert_eq!(next_text(&mut b).await, text);
    }
    assert_eq!(recorder.get(names::PUBLICATIONS), 2.0);
    assert_eq!(recorder.get(names::DELIVERIES), 4.0);

    // A stalled member with a one-message queue, and volatile publications: drops counted.
    let mut stalled = stalled_peer(addr).await;
    raw_send_text(&mut stalled, "join r").await;
    eventually("the stalled join", || hub.room_size("r") == 3).await;
    let room = socketry_hub::RoomName::new("r").unwrap();
    let mut dropped = 0;
    for _ in 0..2000 {
        let volatile = socketry_hub::Publication::new(
            room.clone(),
            socketry::PreparedMessage::new(socketry::Message::text("x".repeat(4096))),
        )
        .overflow(Overflow::Drop);
        dropped += hub.publish_with(volatile).unwrap().dropped;
    }
    assert!(dropped > 0);
    assert_eq!(recorder.get(names::DROPS), dropped as f64);
    assert_eq!(recorder.get(names::DROPS), hub.stats().drops as f64);

    // Everyone leaves: the gauges return to zero.
    drop((a, b, stalled));
    // A connection leaves the hub's table before its rooms: wait for all of it.
    eventually("every leave", || {
        let stats = hub.stats();
        stats.connections == 0
            && stats.rooms == 0
            && recorder.get(names::ROOMS) == 0.0
            && recorder.get(names::MEMBERS) == 0.0
    })
    .await;
    assert_eq!(recorder.get(names::CONNECTIONS), 0.0);
    assert_eq!(recorder.get(names::ROOMS), 0.0);
    assert_eq!(recorder.get(names::MEMBERS), 0.0);
    assert_eq!(
        recorder.get(names::DELIVERIES),
        hub.stats().deliveries as f64
    );
}
