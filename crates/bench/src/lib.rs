//! rplace-bench: a load generator for rplace.
//!
//! # Layout
//! - [`clock`]: one nanosecond clock that acks and arrivals in different processes share.
//! - [`client`]: websocket clients that sync like the page and time every frame.
//! - [`placer`]: open-loop `PUT /api/pixel` through the bench path, over keep-alive
//!   connections.
//! - [`live`]: the `live` scenario, and worker processes for more clients than one
//!   process may hold files for.
//! - [`scenarios`]: `max-rate`, `admission`, `idle-memory`, `cold-start`, `board` (wrk
//!   beside nginx), `history` (the canvas at past moments) and `make-history` (a large
//!   log for recovery).
//! - [`procstat`]: CPU and memory of the server and of the bench, from `/proc`.
//! - [`report`]: what every scenario prints and writes as JSON.

pub mod client;
pub mod clock;
pub mod live;
pub mod placer;
pub mod procstat;
pub mod report;
pub mod scenarios;

pub use live::{LiveArgs, live};
