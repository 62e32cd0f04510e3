//! Helpers shared by the socketry-axum integration tests: a real axum server on a loopback
//! port, bounded waits.
#![allow(dead_code, unreachable_pub)] // each test file uses a different subset

use std::{net::SocketAddr, time::Duration};

use axum::Router;
use tokio::net::TcpListener;

/// Every wait in a test is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `f`, failing the test if it takes longer than [`TIMEOUT`].
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .expect("test step timed out")
}

/// Serves `app` (with connect info) on a loopback port; returns the address.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}
