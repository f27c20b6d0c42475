//! The page people see: the files under `static/`, embedded into the binary at compile
//! time so that running rplace needs nothing but the binary. There is no bundler: the
//! page is plain HTML, CSS and JavaScript modules that browsers load as they are.

use rust_embed::RustEmbed;

/// Files under `crates/web/static`, served at `/` by the server.
#[derive(RustEmbed)]
#[folder = "static/"]
pub struct Assets;
