//! A connection users can own: split halves and writer tasks, graceful shutdown through every
//! way of reading and through `select!` loops, log levels of endings the peer caused,
//! backtraces at the panic, the filter's fallback, production defaults.

mod support;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::Router;
use futures_util::StreamExt;
use socketry::{CloseCode, Message};
use socketry_axum::{Conn, Controller, Request, ServeError, Settings, Shutdown, Upgrader};
use support::{bounded, serve};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
};

type Client = socketry::WebSocket<socketry::MaybeTlsStream>;

async fn client(addr: SocketAddr, path: &str) -> Client {
    socketry::connect(&format!("ws://{addr}{path}"))
        .await
        .unwrap()
        .0
}

/// Reads until the server's close; returns its code once the transport ended cleanly (no
/// reset, no error).
async fn close_code_then_clean_end(ws: &mut Client) -> Result<u16, String> {
    let mut code = None;
    while let Some(next) = bounded(ws.recv()).await {
        match next {
            Ok(Message::Close(frame)) => code = Some(frame.map_or(1005, |f| u16::from(f.code))),
            Ok(_) => {}
            Err(err) => return Err(format!("{err:?}")),
        }
    }
    code.ok_or_else(|| "no close frame".to_owned())
}

/// A client whose connection, served by `controller` under `shutdown`, is live (counted by
/// the shutdown).
async fn live_client<C: Controller>(shutdown: &Shutdown, controller: C, path: &str) -> Client {
    let router = Upgrader::new(controller)
        .settings(Settings::default().shutdown(shutdown.clone()))
        .route(Router::new(), path);
    let ws = client(serve(router).await, path).await;
    bounded(async {
        while shutdown.live() < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    ws
}

/// Counts `on_error` calls.
#[derive(Default)]
struct Failures(AtomicUsize);

/// The dashboard of the bug report: ticks pushed from a `select!` loop that also reads
/// commands.
struct Dashboard(Arc<Failures>);

impl Controller for Dashboard {
    type Error = socketry::Error;

    async fn serve(&self, conn: &mut Conn, _: &Request) -> Result<(), Self::Error> {
        let mut ticks = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                _ = ticks.tick() => conn.send("tick").await?,
                command = conn.recv() => match command {
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Err(err),
                    None => return Ok(()),
                },
            }
        }
    }

    fn on_error(&self, _: &Request, _: &ServeError) {
        self.0.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_of_200_select_loop_dashboards_ends_every_one_cleanly_with_1001() {
    let failures = Arc::new(Failures::default());
    let shutdown = Shutdown::new();
    let app = Upgrader::new(Dashboard(failures.clone()))
        .settings(Settings::default().shutdown(shutdown.clone()))
        .route(Router::new(), "/dash");
    let addr = serve(app).await;
    let mut clients = Vec::new();
    for _ in 0..200 {
        let mut ws = client(addr, "/dash").await;
        clients.push(tokio::spawn(async move {
            close_code_then_clean_end(&mut ws).await
        }));
    }
    bounded(async {
        while shutdown.live() < 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await; // ticks flow
    let still_live = shutdown.shutdown(Duration::from_secs(10)).await;
    assert_eq!(still_live, 0);
    for client in clients {
        assert_eq!(bounded(client).await.unwrap(), Ok(1001));
    }
    assert_eq!(failures.0.load(Ordering::SeqCst), 0, "no handler errors");
}

/// Reads with one of the ways a controller can read, until the end.
struct Reads(&'static str);

impl Controller for Reads {
    type Error = socketry::Error;

    async fn serve(&self, conn: &mut Conn, _: &Request) -> Result<(), Self::Error> {
        match self.0 {
            "recv" => while conn.recv().await.is_some() {},
            "stream" => while conn.next().await.is_some() {},
            "next_reader" => {
                while let Some(reader) = conn.next_reader().await {
                    let mut reader = reader?;
                    let mut sink = Vec::new();
                    let _ = reader.read_to_end(&mut sink).await;
                }
            }
            "join_messages" => {
                let mut joined = conn.join_messages("\n").expect("not split");
                let mut sink = Vec::new();
                let _ = joined.read_to_end(&mut sink).await;
            }
            #[cfg(feature = "json")]
            "recv_json" => while conn.recv_json::<serde_json::Value>().await.is_some() {},
            "split" => {
                let (mut reader, _writer) = conn.split().expect("first split");
                while reader.recv().await.is_some() {}
            }
            // A handle splits the connection inside the `Conn`; shutdown still reaches it.
            "handle" => {
                let _handle = conn.handle();
                while conn.recv().await.is_some() {}
            }
            // Never reads: only the next send sees the shutdown (it fails, `serve` ends, and
            // the automatic close reads the peer's answer).
            "send_only" => loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                conn.send("tick").await?;
            },
            other => unreachable!("{other}"),
        }
        Ok(())
    }
}

#[tokio::test]
async fn shutdown_reaches_every_way_of_reading() {
    let shutdown = Shutdown::new();
    let mut modes = vec![
        "recv",
        "stream",
        "next_reader",
        "join_messages",
        "split",
        "handle",
        "send_only",
    ];
    if cfg!(feature = "json") {
        modes.push("recv_json");
    }
    let mut router = Router::new();
    for mode in &modes {
        router = Upgrader::new(Reads(mode))
            .settings(Settings::default().shutdown(shutdown.clone()))
            .route(router, &format!("/{mode}"));
    }
    let addr = serve(router).await;
    let mut clients = Vec::new();
    for mode in &modes {
        let mut ws = client(addr, &format!("/{mode}")).await;
        clients.push((
            *mode,
            tokio::spawn(async move { close_code_then_clean_end(&mut ws).await }),
        ));
    }
    bounded(async {
        while shutdown.live() < modes.len() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(shutdown.shutdown(Duration::from_secs(5)).await, 0);
    for (mode, client) in clients {
        assert_eq!(bounded(client).await.unwrap(), Ok(1001), "{mode}");
    }
}

/// Splits, writes from a task fed by a channel, reads commands; returns on "bye" while the
/// writer task still holds its half.
struct WithWriterTask;

impl Controller for WithWriterTask {
    type Error = socketry::Error;

    async fn serve(&self, conn: &mut Conn, _: &Request) -> Result<(), Self::Error> {
        let (mut reader, mut writer) = conn.split().expect("first split");
        let (tx, mut rx) = mpsc::channel::<String>(16);
        tokio::spawn(async move {
            while let Some(text) = rx.recv().await {
                if writer.send(text).await.is_err() {
                    return;
                }
            }
            // Keeps the writer alive well past `serve`.
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        while let Some(message) = reader.recv().await {
            match message? {
                Message::Text(text) if &*text == "bye" => return Ok(()),
                Message::Text(text) => {
                    let _ = tx.send(format!("echo {text}")).await;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_split_connection_with_a_writer_task_is_closed_when_serve_returns() {
    let addr = serve(Upgrader::new(WithWriterTask).route(Router::new(), "/w")).await;
    let mut ws = client(addr, "/w").await;
    ws.send("one").await.unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("echo one")
    );
    ws.send("bye").await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(close_code_then_clean_end(&mut ws).await, Ok(1000));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed when serve returned, not when the writer task ended"
    );
}

/// Events as a subscriber sees them: level and message.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<(tracing::Level, String)>>>);

impl Captured {
    fn at(&self, level: tracing::Level) -> Vec<String> {
        let events = self.0.lock().unwrap();
        events
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

struct Message_(String);

impl tracing::field::Visit for Message_ {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Captured {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = Message_(String::new());
        event.record(&mut message);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), message.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Echoes until the connection fails, returning the error as its own (the `?` shape).
struct Propagates;

impl Controller for Propagates {
    type Error = socketry::Error;

    async fn serve(&self, conn: &mut Conn, request: &Request) -> Result<(), Self::Error> {
        if request.query_or("fail", "") == "handler" {
            return Err(socketry::Error::InvalidMessage("a real handler failure"));
        }
        while let Some(message) = conn.recv().await {
            let message = message?;
            if request.query_or("late", "") == "send" {
                // Sending after the peer's close: AlreadyClosed, propagated.
                if let Message::Close(_) = message {
                    conn.send("too late").await?;
                }
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn endings_the_peer_caused_are_logged_at_debug_and_handler_errors_at_error() {
    let captured = Captured::default();
    let _subscriber = tracing::subscriber::set_default(captured.clone());
    let addr = serve(Upgrader::new(Propagates).route(Router::new(), "/p")).await;

    // A peer that vanishes without a close frame: `recv` fails with an abnormal closure.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /p HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 256];
    let _ = bounded(stream.read(&mut head)).await;
    drop(stream);
    // A send after the peer's close: `AlreadyClosed`.
    let mut ws = client(addr, "/p?late=send").await;
    ws.close(CloseCode::NORMAL, "bye").await.unwrap();
    // A real failure of the handler.
    let mut failing = client(addr, "/p?fail=handler").await;
    assert_eq!(close_code_then_clean_end(&mut failing).await, Ok(1011));

    bounded(async {
        while captured.at(tracing::Level::DEBUG).len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let errors = captured.at(tracing::Level::ERROR);
    assert_eq!(errors.len(), 1, "only the handler's failure: {errors:?}");
    assert!(errors[0].contains("a real handler failure"), "{errors:?}");
    let debug = captured.at(tracing::Level::DEBUG).join("\n");
    assert!(debug.contains("without a close frame"), "{debug}");
    assert!(debug.contains("already closed"), "{debug}");
}

#[inline(never)]
fn explode_in_the_controller() -> ! {
    panic!("boom")
}

struct Panics;

impl Controller for Panics {
    type Error = socketry::Error;

    async fn serve(&self, _: &mut Conn, _: &Request) -> Result<(), Self::Error> {
        explode_in_the_controller()
    }
}

#[tokio::test]
async fn a_debug_mode_panic_backtrace_names_the_function_that_panicked() {
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    let record = seen.clone();
    let settings = Settings::default()
        .debug(true)
        .recover(move |_, panic| *record.lock().unwrap() = panic.backtrace.clone());
    let addr = serve(
        Upgrader::new(Panics)
            .settings(settings)
            .route(Router::new(), "/x"),
    )
    .await;
    let mut ws = client(addr, "/x").await;
    assert_eq!(close_code_then_clean_end(&mut ws).await, Ok(1011));
    let backtrace = bounded(async {
        loop {
            if let Some(backtrace) = seen.lock().unwrap().clone() {
                return backtrace;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        backtrace.contains("explode_in_the_controller"),
        "the backtrace is the panic's, not the recovery's: {backtrace}"
    );
}

struct Reports;

impl Controller for Reports {
    type Error = socketry::Error;

    async fn serve(&self, conn: &mut Conn, _: &Request) -> Result<(), Self::Error> {
        let keepalive = format!("{:?}", conn.config().get_keepalive());
        conn.send(keepalive).await?;
        while conn.recv().await.is_some() {}
        Ok(())
    }
}

#[tokio::test]
async fn the_filter_skips_requests_to_the_fallback_on_the_same_path() {
    let app = Upgrader::new(Reports)
        .settings(Settings::default().filter(|request| request.headers().contains_key("x-allow")))
        .fallback(|| async { "the page" })
        .route(Router::new(), "/chat");
    let addr = serve(app).await;
    let get = |extra: &'static str| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET /chat HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = bounded(stream.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let page = get("").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.ends_with("the page"), "{page}");
    let skipped = get(
        "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n",
    )
    .await;
    assert!(
        skipped.ends_with("the page"),
        "the filter skipped it: {skipped}"
    );
    let ws = socketry::Connector::new()
        .header(
            http::HeaderName::from_static("x-allow"),
            http::HeaderValue::from_static("1"),
        )
        .connect(&format!("ws://{addr}/chat"))
        .await;
    assert!(ws.is_ok(), "the filter lets it through: {:?}", ws.err());
}

#[tokio::test]
async fn connections_get_production_keepalive_by_default() {
    let addr = serve(Upgrader::new(Reports).route(Router::new(), "/r")).await;
    let mut ws = client(addr, "/r").await;
    let reported = bounded(ws.recv()).await.unwrap().unwrap();
    assert_eq!(
        reported,
        Message::text(format!("{:?}", Some(socketry::PRODUCTION_KEEPALIVE)))
    );
}

/// Reports `is_closed` once its peer vanished.
struct NoticesTheEnd(mpsc::UnboundedSender<bool>);

impl Controller for NoticesTheEnd {
    type Error = socketry::Error;

    async fn serve(&self, conn: &mut Conn, _: &Request) -> Result<(), Self::Error> {
        while let Some(Ok(_)) = conn.recv().await {}
        let _ = self.0.send(conn.is_closed());
        Ok(())
    }
}

#[tokio::test]
async fn is_closed_is_true_once_the_peer_vanished() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = serve(Upgrader::new(NoticesTheEnd(tx)).route(Router::new(), "/n")).await;
    let ws = client(addr, "/n").await;
    drop(ws); // no close frame: the transport just ends
    assert_eq!(bounded(rx.recv()).await, Some(true));
}

/// Returns at once, leaving the close to the upgrader; `split` first when asked to (the halves
/// go to a task that keeps them without reading).
struct ReturnsAtOnce;

impl Controller for ReturnsAtOnce {
    type Error = socketry::Error;

    async fn serve(&self, conn: &mut Conn, request: &Request) -> Result<(), Self::Error> {
        if request.query_or("split", "") == "held" {
            let halves = conn.split().expect("first split");
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(halves);
            });
        }
        Ok(())
    }
}

#[tokio::test]
async fn the_close_after_serve_gives_up_on_a_silent_peer_within_the_close_timeout() {
    let config = socketry::WebSocketConfig::default().close_timeout(Duration::from_millis(300));
    let app = Upgrader::new(ReturnsAtOnce)
        .settings(Settings::default().config(config))
        .route(Router::new(), "/q");
    let addr = serve(app).await;
    for query in ["", "?split=held"] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /q{query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        // Never answer the close frame: the server must give up and end TCP by itself.
        let started = std::time::Instant::now();
        let mut all = Vec::new();
        bounded(stream.read_to_end(&mut all)).await.unwrap();
        let elapsed = started.elapsed();
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.contains("Server closed connection"),
            "{query}: {text:?}"
        );
        assert!(
            elapsed >= Duration::from_millis(250),
            "{query}: {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(3), "{query}: {elapsed:?}");
    }
}

/// Takes a handle (which splits the connection inside the `Conn`), pings through it from
/// another task, and echoes with the `Conn`'s own methods.
struct PingsThroughAHandle;

impl Controller for PingsThroughAHandle {
    type Error = socketry::Error;

    async fn serve(&self, conn: &mut Conn, _: &Request) -> Result<(), Self::Error> {
        conn.send("whole").await?;
        let handle = conn.handle();
        tokio::spawn(async move {
            let _ = handle.ping("from a task").await;
        });
        while let Some(message) = conn.recv().await {
            let message = message?;
            if message.is_text() {
                // `feed` and `flush`, then `send`, through the halves the handle left in place.
                conn.feed(message).await?;
                conn.flush().await?;
                conn.send("sent too").await?;
            }
        }
        Ok(())
    }
}

/// Takes the halves, then calls the `Conn`'s own methods, which have no side left to use, and
/// reports through the writer what they answered.
struct CallsTheConnAfterSplit;

impl Controller for CallsTheConnAfterSplit {
    type Error = socketry::Error;

    async fn serve(&self, conn: &mut Conn, _: &Request) -> Result<(), Self::Error> {
        let (mut reader, mut writer) = conn.split().expect("first split");
        let recv = match conn.recv().await {
            None => "none".to_owned(),
            Some(other) => format!("{other:?}"),
        };
        let feed = match conn.feed("lost").await {
            Err(socketry::Error::AlreadyClosed) => "already closed".to_owned(),
            other => format!("{other:?}"),
        };
        writer.send(format!("recv: {recv}, feed: {feed}")).await?;
        while reader.recv().await.is_some() {}
        Ok(())
    }
}

#[tokio::test]
async fn after_split_the_conn_receives_nothing_and_refuses_to_feed() {
    let addr = serve(Upgrader::new(CallsTheConnAfterSplit).route(Router::new(), "/s")).await;
    let mut ws = client(addr, "/s").await;
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("recv: none, feed: already closed")
    );
    bounded(ws.close(socketry::CloseCode::NORMAL, ""))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_handle_splits_the_conn_in_place_and_its_methods_keep_working() {
    let addr = serve(Upgrader::new(PingsThroughAHandle).route(Router::new(), "/h")).await;
    let mut ws = client(addr, "/h").await;
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("whole")
    );
    let (mut pinged, mut echoed, mut sent) = (false, false, false);
    ws.send("after the split").await.unwrap();
    while !(pinged && echoed && sent) {
        match bounded(ws.recv()).await.unwrap().unwrap() {
            Message::Ping(payload) => pinged = &payload[..] == b"from a task",
            Message::Text(text) if !echoed => echoed = &*text == "after the split",
            Message::Text(text) => sent = &*text == "sent too",
            other => panic!("{other:?}"),
        }
    }
    bounded(ws.close(socketry::CloseCode::NORMAL, ""))
        .await
        .unwrap();
}

/// Echoes through `Conn::recv_with`, twice the payload for text: whole for the first three
/// messages, then split in place by a handle (the replies go through the writer half).
struct LendsWholeThenSplit;

impl Controller for LendsWholeThenSplit {
    type Error = socketry::Error;

    async fn serve(&self, conn: &mut Conn, _: &Request) -> Result<(), Self::Error> {
        let mut handle = None;
        let mut count = 0;
        while let Some(lent) = conn
            .recv_with(|message, replies| {
                if let socketry::MessageRef::Text(text) = message {
                    replies.feed(message)?;
                    replies.feed(text)?;
                }
                Ok::<_, socketry::Error>(message.is_text())
            })
            .await
        {
            if lent?? {
                count += 1;
                if count == 3 {
                    handle = Some(conn.handle());
                }
            }
        }
        drop(handle);
        Ok(())
    }
}

#[tokio::test]
async fn recv_with_lends_and_answers_whole_and_split_in_place() {
    let addr = serve(Upgrader::new(LendsWholeThenSplit).route(Router::new(), "/l")).await;
    let mut ws = client(addr, "/l").await;
    let big = "b".repeat(70_000);
    for text in ["one", "two", big.as_str(), "after the split", big.as_str()] {
        ws.send(text).await.unwrap();
        for _ in 0..2 {
            assert_eq!(
                bounded(ws.recv()).await.unwrap().unwrap(),
                Message::text(text)
            );
        }
    }
    bounded(ws.close(socketry::CloseCode::NORMAL, ""))
        .await
        .unwrap();
}

/// Never touches the connection: waits on the shutdown signal and returns.
struct ReturnsOnSignal(Shutdown);

impl Controller for ReturnsOnSignal {
    type Error = socketry::Error;

    async fn serve(&self, _conn: &mut Conn, _: &Request) -> Result<(), Self::Error> {
        self.0.signalled().await;
        Ok(())
    }
}

#[tokio::test]
async fn a_controller_that_returns_on_the_shutdown_signal_closes_with_1001() {
    // The automatic close after `serve` would send 1000; the shutdown's request came first.
    let shutdown = Shutdown::new();
    let mut ws = live_client(&shutdown, ReturnsOnSignal(shutdown.clone()), "/quiet").await;
    let reading = tokio::spawn(async move { close_code_then_clean_end(&mut ws).await });
    assert_eq!(shutdown.shutdown(Duration::from_secs(5)).await, 0);
    assert_eq!(bounded(reading).await.unwrap(), Ok(1001));
}

/// Waits forever on something that is not its connection, and never looks at the shutdown.
struct ParkedElsewhere;

impl Controller for ParkedElsewhere {
    type Error = socketry::Error;

    async fn serve(&self, _conn: &mut Conn, _: &Request) -> Result<(), Self::Error> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_controller_parked_elsewhere_is_cancelled_after_the_grace_and_closes_with_1001() {
    let shutdown = Shutdown::new();
    let mut ws = live_client(&shutdown, ParkedElsewhere, "/parked").await;
    let reading = tokio::spawn(async move { close_code_then_clean_end(&mut ws).await });
    // Half of the deadline is the grace: the controller is dropped after 1 s, and the
    // automatic close has the other second for the handshake.
    assert_eq!(shutdown.shutdown(Duration::from_secs(2)).await, 0);
    assert_eq!(bounded(reading).await.unwrap(), Ok(1001));
}

/// Closes on the shutdown signal itself and notes when its close finished.
struct ClosesOnSignal(Shutdown, Arc<AtomicUsize>);

impl Controller for ClosesOnSignal {
    type Error = socketry::Error;

    async fn serve(&self, conn: &mut Conn, _: &Request) -> Result<(), Self::Error> {
        self.0.signalled().await;
        conn.close(CloseCode::GOING_AWAY, "bye").await?;
        self.1.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_controller_closing_past_the_grace_is_not_cancelled() {
    // The peer answers the close after 1.2 s, past the 1 s grace of a 2 s shutdown: the
    // controller is using its connection, so it finishes its close (before the 1.5 s at
    // which it would be cancelled all the same).
    let shutdown = Shutdown::new();
    let finished = Arc::new(AtomicUsize::new(0));
    let mut ws = live_client(
        &shutdown,
        ClosesOnSignal(shutdown.clone(), finished.clone()),
        "/closes",
    )
    .await;
    let reading = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        close_code_then_clean_end(&mut ws).await
    });
    assert_eq!(shutdown.shutdown(Duration::from_secs(2)).await, 0);
    assert_eq!(bounded(reading).await.unwrap(), Ok(1001));
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the controller's close finished"
    );
}

/// Reads until its connection ends, then waits on something that never comes.
struct ReadsThenParks;

impl Controller for ReadsThenParks {
    type Error = socketry::Error;

    async fn serve(&self, conn: &mut Conn, _: &Request) -> Result<(), Self::Error> {
        while conn.recv().await.is_some() {}
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_controller_that_used_its_connection_and_then_parked_is_still_cancelled() {
    // It took the shutdown's request up (its `recv` saw it) and then stopped using the
    // connection: cancelled within the deadline all the same.
    let shutdown = Shutdown::new();
    let mut ws = live_client(&shutdown, ReadsThenParks, "/reads").await;
    let reading = tokio::spawn(async move { close_code_then_clean_end(&mut ws).await });
    assert_eq!(shutdown.shutdown(Duration::from_secs(2)).await, 0);
    assert_eq!(bounded(reading).await.unwrap(), Ok(1001));
}

/// With read and write timeouts set: a silent peer times the read out (and the connection
/// stays usable), then one echo through `feed` + `flush`.
struct WithTimeouts;

impl Controller for WithTimeouts {
    type Error = socketry::Error;

    async fn serve(&self, conn: &mut Conn, _: &Request) -> Result<(), Self::Error> {
        match conn.recv().await {
            Some(Err(socketry::Error::Timeout(socketry::Timeout::Read))) => {}
            other => {
                return Err(socketry::Error::Io(std::io::Error::other(format!(
                    "{other:?}"
                ))));
            }
        }
        conn.feed("timed out").await?;
        conn.flush().await?;
        if let Some(message) = conn.recv().await {
            conn.feed(message?).await?;
            conn.flush().await?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn reads_time_out_and_feeds_go_out_with_timeouts_set() {
    let config = socketry::WebSocketConfig::default()
        .read_timeout(Some(Duration::from_millis(50)))
        .write_timeout(Some(Duration::from_secs(5)));
    let router = Upgrader::new(WithTimeouts)
        .settings(Settings::default().config(config))
        .route(Router::new(), "/t");
    let addr = serve(router).await;
    let mut ws = client(addr, "/t").await;
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("timed out"),
        "the read timed out and the connection stayed usable"
    );
    ws.send("again").await.unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("again")
    );
    assert_eq!(close_code_then_clean_end(&mut ws).await, Ok(1000));
}
