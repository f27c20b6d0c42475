//! The rplace domain: everything about a canvas that does not touch a socket,
//! a disk or a clock.
//!
//! # Layout
//! - [`board`]: the canvas size ([`Dimensions`]), a position on it ([`Coord`]) and the
//!   packed pixel buffer ([`Board`]) in the exact byte layout that `GET /api/board`
//!   serves and that a Redis `BITFIELD` holds.
//! - [`palette`]: the colors a pixel may take ([`Palette`]) and an index into it
//!   ([`ColorIndex`]).
//! - [`placement`]: who placed what, where and when ([`Placement`]), the global
//!   sequence number ([`Seq`]), anonymous identities ([`UserId`]) and the cooldown rule.
//! - [`policy`]: the rules that accept or refuse a placement (cooldown, per-address rate,
//!   IPv6 prefixes), one pure `decide` that both backends execute, and its test vectors.
//! - [`pow`]: the proof-of-work challenge format (signed by the server, solved by the
//!   page), and its checks.
//! - [`tile`]: how a canvas is cut into tiles ([`TileId`], [`Tile`]) and overview levels
//!   ([`OverviewId`]), and the downsampling that makes an overview.
//! - [`tile_sync`]: how a client keeps one tile exact from the tile, its frames and its
//!   catch-ups (the per-tile client rule), as a state machine without I/O.
//! - [`rect`]: a rectangle on the board ([`Rect`]), what moderators act on.
//! - [`template`]: an image to draw, mapped to the palette ([`template::TemplateImage`]),
//!   and the limits on templates.
//! - [`idempotency`]: the key that makes a resent placement answer the first outcome.
//! - [`once`]: the id of a one-time proof (a solved anti-bot challenge).
//! - [`wire`]: the binary update frame that websocket clients and `GET /api/updates`
//!   receive, and its decoder (used by tests and the load generator).
//! - [`sync`]: how a client keeps an exact board from a board, frames and catch-ups, as a
//!   state machine without I/O (used by tests and the load generator).
//!
//! Every type here parses instead of validating: once you hold a `Coord`, it is on the
//! board; once you hold a `ColorIndex`, it is in the palette.

pub mod board;
pub mod idempotency;
pub mod once;
pub mod palette;
pub mod placement;
pub mod policy;
pub mod pow;
pub mod rect;
pub mod sync;
pub mod template;
pub mod tile;
pub mod tile_sync;
pub mod wire;

pub use board::{Board, Coord, Dimensions, DimensionsError};
pub use idempotency::{IdempotencyKey, IdempotencyKeyError};
pub use once::OnceToken;
pub use palette::{ColorIndex, Palette, PaletteError, Rgb};
pub use placement::{Cooldown, Placement, Seq, UserId};
pub use policy::{AddrKey, Ipv6Prefix};
pub use rect::{Rect, RectError};
pub use tile::{OverviewId, Tile, TileError, TileId};
