//! A command-line WebSocket client in the spirit of websocat.
//!
//! ```sh
//! cargo run --example echo_server -- --addr 127.0.0.1:9001 &
//! echo hello | cargo run --example client -- ws://127.0.0.1:9001
//! cargo run --example client -- ws://127.0.0.1:9001 --binary Cargo.toml < /dev/null
//! ```
//!
//! Each line of standard input is sent as a text message; each text message received is
//! printed as a line, a binary one as its length and first bytes. `--binary FILE` sends the
//! file as one binary message first. At the end of input the client waits for outstanding
//! replies (until the server is quiet for `--wait` milliseconds, default 500, or 10 s in all),
//! closes with 1000 and exits 0. Any failure exits 1 with a message on standard error.
//!
//! Flags: `--protocol P` (repeatable), `--header 'Name: value'` (repeatable),
//! `--binary FILE`, `--wait MS`, `--compression` (offer permessage-deflate).

use std::{process::ExitCode, time::Duration};

use socketry::{
    CloseCode, Connector, Message, WebSocketConfig,
    http::{HeaderName, HeaderValue},
    proto::extensions::deflate::DeflateConfig,
};
use tokio::io::{AsyncBufReadExt, BufReader};

struct Args {
    url: String,
    protocols: Vec<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    binary: Option<String>,
    quiet: Duration,
    compression: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut url = None;
    let mut parsed = Args {
        url: String::new(),
        protocols: Vec::new(),
        headers: Vec::new(),
        binary: None,
        quiet: Duration::from_millis(500),
        compression: false,
    };
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--protocol" => parsed.protocols.push(value("--protocol")?),
            "--header" => {
                let header = value("--header")?;
                let (name, val) = header
                    .split_once(':')
                    .ok_or_else(|| format!("--header {header:?}: expected 'Name: value'"))?;
                let name =
                    HeaderName::try_from(name.trim()).map_err(|e| format!("--header: {e}"))?;
                let val =
                    HeaderValue::try_from(val.trim()).map_err(|e| format!("--header: {e}"))?;
                parsed.headers.push((name, val));
            }
            "--binary" => parsed.binary = Some(value("--binary")?),
            "--wait" => {
                let ms = value("--wait")?
                    .parse()
                    .map_err(|e| format!("--wait: {e}"))?;
                parsed.quiet = Duration::from_millis(ms);
            }
            "--compression" => parsed.compression = true,
            "--url" => url = Some(value("--url")?),
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
            _ if url.is_none() => url = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    parsed.url = url.ok_or("usage: client URL [--protocol P] [--header 'N: v'] [--binary FILE]")?;
    Ok(parsed)
}

fn describe(message: &Message) -> Option<String> {
    match message {
        Message::Text(text) => Some(text.to_string()),
        Message::Binary(data) => {
            let head: String = data.iter().take(16).map(|b| format!("{b:02x}")).collect();
            let more = if data.len() > 16 { "…" } else { "" };
            Some(format!("binary {} bytes: {head}{more}", data.len()))
        }
        _ => None,
    }
}

async fn run(args: Args) -> Result<(), String> {
    let compression = args.compression.then(DeflateConfig::default);
    let mut connector = Connector::new()
        .protocols(args.protocols)
        .proxy_from_env(true)
        .config(WebSocketConfig::default().compression(compression));
    for (name, value) in args.headers {
        connector = connector.header(name, value);
    }
    let (ws, _) = connector
        .connect(&args.url)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.url))?;
    let (mut reader, mut writer) = ws.split();

    let quiet = args.quiet;
    let (input_done_tx, mut input_done) = tokio::sync::watch::channel(false);
    let printing = tokio::spawn(async move {
        loop {
            let waiting_for_quiet = *input_done.borrow();
            let next = if waiting_for_quiet {
                match tokio::time::timeout(quiet, reader.recv()).await {
                    Ok(next) => next,
                    Err(_) => return Ok(Some(reader)), // quiet: all replies are in
                }
            } else {
                tokio::select! {
                    next = reader.recv() => next,
                    _ = input_done.changed() => continue,
                }
            };
            match next {
                Some(Ok(message)) => {
                    if let Some(line) = describe(&message) {
                        println!("{line}");
                    }
                }
                Some(Err(err)) => return Err(format!("connection failed: {err}")),
                None => return Ok(None),
            }
        }
    });

    if let Some(path) = &args.binary {
        let data = tokio::fs::read(path)
            .await
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        writer
            .send(Message::binary(data))
            .await
            .map_err(|e| format!("send failed: {e}"))?;
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.map_err(|e| format!("stdin: {e}"))? {
        writer
            .send(line)
            .await
            .map_err(|e| format!("send failed: {e}"))?;
    }
    let _ = input_done_tx.send(true);
    let printed = tokio::time::timeout(Duration::from_secs(10), printing)
        .await
        .map_err(|_| "replies still arriving after 10 s".to_owned())?
        .map_err(|e| format!("reader task failed: {e}"))?;
    let Some(reader) = printed? else {
        return Ok(()); // the server closed first
    };
    // The whole closing handshake: send 1000, wait for the server's close, end TCP.
    let mut ws = reader
        .reunite(writer)
        .map_err(|_| "cannot reunite the halves".to_owned())?;
    ws.close(CloseCode::NORMAL, "")
        .await
        .map_err(|e| format!("close failed: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("client: {err}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("client: {err}");
            ExitCode::FAILURE
        }
    }
}
