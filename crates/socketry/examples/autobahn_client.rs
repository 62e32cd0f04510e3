//! Drives the Autobahn|Testsuite fuzzingserver: runs every case, echoing every message, then
//! asks the server to write its report.
//!
//! ```sh
//! cargo run --release --example autobahn_client -- --url ws://127.0.0.1:9001
//! ```

use socketry::proto::extensions::deflate::DeflateConfig;
use socketry::{Connector, Error, Message, WebSocketConfig};

const AGENT: &str = "socketry";

/// permessage-deflate is on unless `--no-compression` is given.
fn compression() -> Option<DeflateConfig> {
    (!std::env::args().any(|a| a == "--no-compression")).then(DeflateConfig::default)
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

fn connector() -> Connector {
    Connector::new().config(
        WebSocketConfig::default()
            .max_frame_size(Some(64 << 20))
            .max_message_size(Some(64 << 20))
            .compression(compression()),
    )
}

async fn case_count(base: &str) -> Result<u32, Error> {
    let (mut ws, _) = connector().connect(&format!("{base}/getCaseCount")).await?;
    let mut count = 0;
    while let Some(message) = ws.recv().await {
        if let Message::Text(text) = message? {
            count = text.parse().unwrap_or(0);
        }
    }
    Ok(count)
}

async fn run_case(base: &str, case: u32) -> Result<(), Error> {
    let url = format!("{base}/runCase?case={case}&agent={AGENT}");
    let (mut ws, _) = connector().connect(&url).await?;
    while let Some(message) = ws.recv().await {
        if let message @ (Message::Text(_) | Message::Binary(_)) = message? {
            ws.send(message).await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let base = arg("--url", "ws://127.0.0.1:9001");
    let base = base.trim_end_matches('/');
    let count = case_count(base).await?;
    println!("running {count} cases against {base}");
    for case in 1..=count {
        if let Err(err) = run_case(base, case).await {
            // Many cases end in a protocol error on purpose; the suite judges the outcome.
            eprintln!("case {case}: {err}");
        }
    }
    let (mut ws, _) = connector()
        .connect(&format!("{base}/updateReports?agent={AGENT}"))
        .await?;
    while ws.recv().await.is_some() {}
    println!("report updated");
    Ok(())
}
