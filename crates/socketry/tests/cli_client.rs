//! The command-line client example, run as a process against a real server.

mod support;

use std::{path::PathBuf, process::Stdio, time::Duration};

use support::*;
use tokio::{io::AsyncWriteExt, process::Command};

/// `target/<profile>/examples/client`, built by `cargo test` beside this test binary.
fn client_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    profile_dir.join("examples").join("client")
}

async fn run_client(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(client_binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the client example is built by cargo test");
    let mut input = child.stdin.take().unwrap();
    // A client that fails at once (the failure test) may exit before reading its input.
    let _ = input.write_all(stdin).await;
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("client finished in time")
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn lines_go_out_as_text_and_replies_are_printed() {
    let addr = socketry_echo_server().await;
    let url = format!("ws://{addr}/");
    let (code, stdout, stderr) =
        run_client(&[&url, "--wait", "300"], b"hello\nw\xc3\xb6rld\n").await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "hello\nwörld\n");
}

#[tokio::test]
async fn a_binary_file_is_sent_as_one_message() {
    let addr = socketry_echo_server().await;
    let path = std::env::temp_dir().join(format!("socketry-cli-{}.bin", std::process::id()));
    std::fs::write(&path, (0u8..40).collect::<Vec<_>>()).unwrap();
    let url = format!("ws://{addr}/");
    let (code, stdout, stderr) = run_client(
        &[&url, "--binary", path.to_str().unwrap(), "--wait", "300"],
        b"",
    )
    .await;
    std::fs::remove_file(&path).unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "binary 40 bytes: 000102030405060708090a0b0c0d0e0f…\n"
    );
}

#[tokio::test]
async fn a_failure_exits_non_zero_with_a_message() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // nothing listens there now
    let (code, _, stderr) = run_client(&[&format!("ws://{addr}/")], b"x\n").await;
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot connect"), "{stderr}");

    let (code, _, stderr) = run_client(&["ws://127.0.0.1:1/", "--bogus"], b"").await;
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown flag"), "{stderr}");
}

#[tokio::test]
async fn subprotocols_and_headers_reach_the_server() {
    let (addr, mut rx) = serve_reporting(|stream| async move {
        let acceptor = socketry::Acceptor::new().protocols(["chat"]);
        let (ws, request) = acceptor.accept_with_request(stream).await.unwrap();
        let protocol = ws.protocol().map(str::to_owned);
        echo(ws).await;
        (protocol, request.headers().get("x-token").cloned())
    })
    .await;
    let url = format!("ws://{addr}/");
    let (code, stdout, stderr) = run_client(
        &[
            &url,
            "--protocol",
            "chat",
            "--header",
            "X-Token: t1",
            "--wait",
            "200",
        ],
        b"ok\n",
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "ok\n");
    let (protocol, token) = bounded(rx.recv()).await.unwrap();
    assert_eq!(protocol.as_deref(), Some("chat"));
    assert_eq!(token.unwrap(), "t1");
}
