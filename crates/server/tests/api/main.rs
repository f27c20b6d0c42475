//! Integration tests: the real server in-process on port 0 (or as a child process where a
//! test kills it), driven over real HTTP and websocket connections.

#[macro_use]
mod helpers;

mod accounts;
mod antibot;
mod audit;
mod bans;
mod board;
mod charges;
mod errors;
mod export;
mod fleet;
mod hardening;
mod history;
mod lifecycle;
mod live;
mod livepath;
mod ops;
mod overlays;
mod overview;
mod placing;
mod policy;
mod protect;
mod records;
mod rewrite;
mod roles;
mod stats;
mod store_errors;
mod strict;
mod templates;
mod tiles;
mod timelapse;
