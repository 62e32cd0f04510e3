//! socketry-axum: WebSocket endpoints for axum 0.8, in the manner of Goyave's websocket
//! package and gofiber's contrib websocket middleware, on [socketry].
//!
//! A [`Controller`] serves each connection; the [`Upgrader`] does the rest: the upgrade with
//! its checks (filter, origin, protocol), the request snapshot ([`Request`]), and the close
//! when `serve` returns — 1000 "Server closed connection" on success, 1011 "Internal server
//! error" on an error or a caught panic (the error's text in debug mode).
//!
//! ```no_run
//! use socketry_axum::{Upgrader, handler_fn};
//!
//! # async fn run() -> std::io::Result<()> {
//! let chat = Upgrader::new(handler_fn(|conn, request| {
//!     Box::pin(async move {
//!         let name = request.query_or("name", "guest").to_owned();
//!         conn.send(format!("hello {name}")).await?;
//!         while let Some(message) = conn.recv().await {
//!             conn.send(message?).await?;
//!         }
//!         Ok::<(), socketry::Error>(())
//!     })
//! }));
//! let app = chat.route(axum::Router::new(), "/ws");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! # let _ = run;
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod conn;
mod context;
mod controller;
mod error;
#[cfg(feature = "http2")]
mod server;
mod shutdown;
mod upgrader;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// socketry itself, so that one dependency gives `Error`, `Message`, `PreparedMessage`,
/// `WebSocketConfig` and the rest.
pub use socketry;

/// socketry-hub (feature `hub`, on by default): rooms, presence and broadcast, bounded per
/// connection; [`Conn::attach`] puts a connection in a [`Hub`](socketry_hub::Hub).
#[cfg(feature = "hub")]
#[cfg_attr(docsrs, doc(cfg(feature = "hub")))]
pub use socketry_hub as hub;

pub use conn::{Conn, ConnReader, ConnWriter, INTERNAL_ERROR_MESSAGE, NORMAL_CLOSURE_MESSAGE};
pub use context::Request;
pub use controller::{BoxServe, Controller, FnController, handler_fn};
pub use error::{HandlerError, PanicError, ServeError, UpgradeError};
#[cfg(feature = "http2")]
#[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
pub use server::{Serve, serve};
pub use shutdown::Shutdown;
pub use upgrader::{Fallback, Filter, RecoverHandler, Settings, Upgrader, default_upgrade_error};
