//! rplace: a shared pixel canvas, r/place style, as a library with a thin binary.
//!
//! # Layout
//! - [`config`]: flags and environment variables, parsed once into [`config::Settings`].
//! - [`app`]: [`run`], which wires a store, the hub and the routes together and serves
//!   until the shutdown future resolves, then drains.
//! - [`hub`]: consumes the store's ordered feed; keeps the tile cache, the recent log and
//!   the canvas's current size; batches each tick's placements into one frame for every
//!   whole-canvas websocket client and one frame per watched tile for its subscribers.
//! - [`tile_cache`]: the hub's bounded cache of tiles, each exact at the hub's seq.
//! - [`overview`]: the pyramid of zoomed-out tiles, re-rendered from changed tiles.
//! - [`supervise`]: watches the hub (and so the feed); its death fails readiness and ends
//!   [`run`] with an error.
//! - [`ws_runtime`]: the threads websocket tasks run on, apart from request handling.
//! - [`board_cache`]: board versions served by `GET /api/board` (composed from tiles)
//!   and tile bodies, each encoding made once.
//! - [`routes`]: the HTTP API, the websocket, operations endpoints and the embedded page.
//! - [`stats`]: presence across instances, placement counts, the leaderboard.
//! - [`timelapse`]: animated PNGs of a region over time, rendered in the background.
//! - [`identity`]: anonymous identities in a signed cookie.
//! - [`templates`]: template images: upload (mapped to the palette), metadata, PNG,
//!   deletion.
//! - [`error`]: the JSON error every handler returns.
//! - [`access`], [`origin`], [`secret`]: public origin, websocket origins, bearer tokens.
//! - [`json`]: JSON that refuses duplicate keys.
//! - [`telemetry`]: tracing and the Prometheus recorder.
//! - [`serve`]: the accept loop and hyper connections: timeouts, per-address caps,
//!   PROXY protocol, graceful end.
//! - [`client_addr`]: the client's address behind trusted proxies.
//! - [`zerocopy`]: the socket that sends the board bodies with `sendfile` (`--sendfile`).
//!
//! Storage lives in the `rplace-store` crate behind one trait; this crate never knows
//! which backend runs. The canvas rules and wire formats live in `rplace-domain`.

pub mod access;
pub mod activity;
pub mod antibot;
pub mod app;
pub mod audit;
pub mod auth;
pub mod board_cache;
pub mod client_addr;
pub mod config;
pub mod error;
pub mod export;
pub mod hub;
pub mod identity;
pub mod json;
pub mod origin;
pub mod overview;
pub mod past;
pub mod routes;
pub mod secret;
pub mod serve;
pub mod stats;
pub mod supervise;
pub mod telemetry;
pub mod templates;
pub mod tile_cache;
pub mod timelapse;
pub mod ws_runtime;
pub mod zerocopy;

pub use app::{AppState, RunError, run};
pub use config::Config;
