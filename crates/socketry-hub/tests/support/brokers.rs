//! Real broker servers for the cross-node tests: Debian's `redis-server` and `nats-server`
//! (installed by `scripts/brokers.sh`), started on free loopback ports in a temporary
//! directory and stopped by PID when the handle drops.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A port nobody listens on now, for a server to bind. Taken below the kernel's ephemeral
/// range (32768 and up on Linux), so that no outgoing connection takes it before the server
/// binds it, and never twice in one process.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    for _ in 0..1000 {
        let port = 20_000 + (rand_u16() % 12_000);
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in 20000-31999");
}

fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() as u16
}

fn program(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("{name} is not installed: run scripts/brokers.sh (the README's test command does)");
}

/// A child process killed (SIGKILL) and reaped when it is replaced or dropped.
#[derive(Default)]
struct Process(Option<Child>);

impl Process {
    /// Sends `signal` (`STOP`, `CONT`) with kill(1).
    fn signal(&self, signal: &str) {
        let pid = self.0.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `redis-server` of this test's own.
pub struct RedisServer {
    child: Process,
    port: u16,
    dir: tempdir::Dir,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a standalone server (no persistence) on a free port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts one with extra `redis-server` arguments (`--cluster-enabled yes`, say).
    pub fn start_with(extra: &[&str]) -> Self {
        let mut server = Self {
            child: Process::default(),
            port: free_port(),
            dir: tempdir::Dir::new("redis"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new(program("redis-server"))
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Process(Some(child));
        wait_until("redis-server answers PING", || {
            redis_command(self.addr(), &["PING"]).is_ok_and(|r| r.starts_with("+PONG"))
        });
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its URL, for `RedisBroker::builder`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL) and waits for it: every connection to it drops.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Starts it again, on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Freezes it (SIGSTOP): connections stay open, nothing is answered.
    pub fn freeze(&self) {
        self.child.signal("STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.child.signal("CONT");
    }

    /// Sends one command, returns the raw reply (RESP2).
    pub fn command(&self, args: &[&str]) -> String {
        redis_command(self.addr(), args).expect("redis command")
    }
}

/// One RESP2 command on a new connection; the reply's raw text, read until it looks whole.
pub fn redis_command(addr: SocketAddr, args: &[&str]) -> std::io::Result<String> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    tcp.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    tcp.write_all(request.as_bytes())?;
    let mut reply = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let n = tcp.read(&mut buf)?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.ends_with(b"\r\n") && looks_whole(&reply) {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Whether a reply is complete enough for these tests: simple replies, integers, and the
/// arrays of `PUBSUB NUMSUB` (counted by lines).
fn looks_whole(reply: &[u8]) -> bool {
    match reply.first() {
        Some(b'*') => {
            let text = String::from_utf8_lossy(reply);
            let count: usize = text[1..text.find('\r').unwrap_or(1)].parse().unwrap_or(0);
            // Each element of these arrays is a bulk string (two lines) or an integer (one).
            let lines = text.matches("\r\n").count() - 1;
            let bulks = text.matches('$').count();
            lines >= count + bulks
        }
        Some(b'$') => String::from_utf8_lossy(reply).matches("\r\n").count() >= 2,
        _ => true,
    }
}

/// A `nats-server` of this test's own.
pub struct NatsServer {
    child: Process,
    port: u16,
    monitor: u16,
}

impl NatsServer {
    /// Starts one on a free port.
    pub fn start() -> Self {
        let mut server = Self {
            child: Process::default(),
            port: free_port(),
            monitor: free_port(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new(program("nats-server"))
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Process(Some(child));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_until("nats-server greets", || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok_and(|mut tcp| {
                let mut buf = [0; 4];
                tcp.set_read_timeout(Some(Duration::from_secs(1))).is_ok()
                    && tcp.read_exact(&mut buf).is_ok()
                    && &buf == b"INFO"
            })
        });
    }

    /// How many subscriptions to subjects that start with `prefix` the server holds, from
    /// its monitoring endpoint (`/subsz`; the server has subscriptions of its own).
    pub fn subscriptions(&self, prefix: &str) -> usize {
        let reply = self.monitor("/subsz?subs=1&limit=100000");
        assert!(reply.contains("subscriptions_list"), "{reply}");
        reply.matches(&format!("\"{prefix}")).count()
    }

    /// How many connected clients have `name` in their name (`/connz`).
    pub fn connections_named(&self, name: &str) -> usize {
        let reply = self.monitor("/connz?limit=100000");
        assert!(reply.contains("num_connections"), "{reply}");
        reply.matches(name).count()
    }

    fn monitor(&self, path: &str) -> String {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.monitor));
        let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).expect("monitor");
        tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .unwrap();
        let mut reply = String::new();
        tcp.read_to_string(&mut reply).unwrap();
        reply
    }

    /// Its URL, for `NatsBroker::builder`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Starts it again, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

mod tempdir {
    use std::path::{Path, PathBuf};

    /// A directory of its own under the system's temporary directory, removed on drop.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(label: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "socketry-{label}-{}-{}",
                std::process::id(),
                super::free_port()
            ));
            std::fs::create_dir_all(&path).expect("temporary directory");
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
