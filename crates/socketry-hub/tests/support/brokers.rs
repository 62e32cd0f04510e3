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

/// A Redis Cluster of this test's own: `masters` servers with `--cluster-enabled yes`, joined
/// by `redis-cli --cluster create` (no replicas), each slot served once the call returns.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                let bus = free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "5000",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
        let status = Command::new(program("redis-cli"))
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = Self { nodes };
        wait_until("every node sees the cluster ok", || {
            cluster.nodes.iter().all(|node| {
                redis_command(node.addr(), &["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            })
        });
        cluster
    }

    /// The seeds' URLs, one per master.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    pub fn node(&self, i: usize) -> &RedisServer {
        &self.nodes[i]
    }

    /// Kills node `i` (SIGKILL) and starts it again on its port with its cluster config;
    /// returns once every node sees the cluster ok again.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
        wait_until("the cluster is ok again", || {
            self.nodes.iter().all(|node| {
                redis_command(node.addr(), &["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            })
        });
    }

    /// Kills node `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The slot of a key or channel, as the cluster computes it.
    pub fn slot(&self, name: &str) -> u16 {
        let reply = self.nodes[0].command(&["CLUSTER", "KEYSLOT", name]);
        reply
            .trim()
            .trim_start_matches(':')
            .parse()
            .expect("a slot")
    }

    /// The node that serves `slot` now.
    pub fn owner(&self, slot: u16) -> usize {
        let owner = self.slot_owner_id(slot);
        (0..self.nodes.len())
            .find(|&i| self.id(i) == owner)
            .expect("an owner")
    }

    /// The id of the node that serves `slot`, from `CLUSTER NODES`.
    fn slot_owner_id(&self, slot: u16) -> String {
        let text = self.nodes[0].command(&["CLUSTER", "NODES"]);
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 9 || !fields[2].contains("master") {
                continue;
            }
            for range in &fields[8..] {
                let (from, to) = match range.split_once('-') {
                    Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
                    None => (range.parse::<u16>(), range.parse::<u16>()),
                };
                if let (Ok(from), Ok(to)) = (from, to)
                    && (from..=to).contains(&slot)
                {
                    return fields[0].to_owned();
                }
            }
        }
        panic!("no master serves slot {slot}")
    }

    /// The id of node `i`.
    pub fn id(&self, i: usize) -> String {
        let reply = self.nodes[i].command(&["CLUSTER", "MYID"]);
        reply.lines().nth(1).unwrap_or_default().to_owned()
    }

    /// Moves an empty `slot` to node `to` (what resharding does once the keys are copied).
    pub fn move_slot(&self, slot: u16, to: usize) {
        let from = self.owner(slot);
        let slot = slot.to_string();
        let (from_id, to_id) = (self.id(from), self.id(to));
        self.nodes[to].command(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
        self.nodes[from].command(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
        for node in &self.nodes {
            node.command(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
        }
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
