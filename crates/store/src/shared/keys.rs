//! The names of everything the shared backend keeps in Redis, under one configurable
//! prefix so that several deployments (or parallel tests) can share a server.
//!
//! Each painted tile has two keys, its pixels and its version, named with one hash tag per
//! tile (`<prefix>tile:{<tx>,<ty>}` and `<prefix>tile:{<tx>,<ty>}:v`), so that a Redis
//! Cluster would hash both to one slot and spread the tiles over all slots. Nothing is
//! board-sized: an unpainted tile has no key.
//!
//! On one redis-server every name starts with the prefix as configured. On a Redis Cluster
//! ([`Keys::new`] with `cluster`) every key but the tiles' starts with the prefix inside a
//! hash tag (`{rplace:}seq`), so they share one slot (the *core* slot) and a script may
//! touch them together; the tiles' keys start with the prefix without braces
//! (`rplace:tile:{3,4}`), so each tile hashes by its own tag. See `shared/mod.rs`,
//! "Redis Cluster".

use rplace_domain::{AddrKey, IdempotencyKey, OnceToken, TileId, UserId};

/// Every key name, built once from the prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// The prefix of every key but the tiles', for the per-user and per-address keys
    /// built on demand: as configured, or on a cluster inside a hash tag.
    prefix: String,
    /// The prefix of the tiles' keys: as configured, or on a cluster without braces.
    tile_prefix: String,
    /// On a cluster, each painted tile's last seq as the core slot knows it: a hash
    /// `"<tx>,<ty>"` -> seq, written by the placement script, so that the tile writes
    /// (in the tiles' slots) apply in seq order per tile and a lagging tile is noticed.
    pub tiles_last: String,
    /// The canvas's size, `"<width> <height>"`; it only grows (`grow.lua`).
    pub dims: String,
    /// The whole board of the layout before tiles, deleted by a rebuild (upgrades).
    pub legacy_board: String,
    /// The seq of the newest placement (an integer string).
    pub seq: String,
    /// Which generation of the Redis state this is. Bumped (in PostgreSQL first) by every
    /// rebuild, so that a placement made on a state that has since been replaced can never
    /// be written to the history, and so that feeds notice the replacement.
    pub epoch: String,
    /// The newest placement time handed out (unix ms), so that times never go backwards
    /// along the seq even if the Redis clock does.
    pub clock: String,
    /// Recent placements, one entry per seq with the stream ID `<seq>-0`, trimmed by the
    /// reconciler, never past `durable`.
    pub stream: String,
    /// A copy of the history's watermark (`durable_seq`), written by the reconciler, so
    /// that instances know the backlog (and how far the stream may be trimmed) while
    /// PostgreSQL is away.
    pub durable: String,
    /// Held (SET NX PX) by the one instance that rebuilds the state from PostgreSQL.
    pub rebuild_lock: String,
    /// The Pub/Sub channel that carries every placement and every rebuild.
    pub channel: String,
    /// Network ban lengths in use: a hash `4/24` -> how many bans of that length, so that
    /// the script looks an address up once per length in use.
    pub ban_lens: String,
    /// What network ban keys start with (then the domain's `net_key`).
    pub ban_net_prefix: String,
    /// The reason of every ban in Redis: a hash id -> reason, read after a refusal.
    pub ban_reasons: String,
    /// Protected rectangles by tile, what the script reads: `tx ty` -> `id x y w h;...`
    /// for every rectangle overlapping the tile (see `moderation::TILE`).
    pub protected_tiles: String,
    /// Every user and network ban key ever written (a set), so that a reload can clear
    /// what an older copy of the state holds.
    pub ban_index: String,
    /// Each instance's websocket clients, a hash `instance -> "<n> <expires ms>"`
    /// (`shared/stats.rs`).
    pub presence: String,
}

impl Keys {
    /// The names under `prefix`; with `cluster`, laid out for a Redis Cluster (above).
    pub fn new(configured: &str, cluster: bool) -> Self {
        let (core, tile_prefix) = if cluster {
            let bare: String = configured
                .chars()
                .filter(|c| !matches!(c, '{' | '}'))
                .collect();
            (format!("{{{bare}}}"), bare)
        } else {
            (configured.to_string(), configured.to_string())
        };
        let prefix = core.as_str();
        Self {
            prefix: prefix.to_string(),
            tile_prefix,
            tiles_last: format!("{prefix}tiles:last"),
            dims: format!("{prefix}dims"),
            legacy_board: format!("{prefix}board"),
            seq: format!("{prefix}seq"),
            epoch: format!("{prefix}epoch"),
            clock: format!("{prefix}clock"),
            stream: format!("{prefix}updates"),
            durable: format!("{prefix}durable"),
            rebuild_lock: format!("{prefix}rebuild-lock"),
            channel: format!("{prefix}feed"),
            ban_lens: format!("{prefix}ban:lens"),
            ban_net_prefix: format!("{prefix}ban:n:"),
            ban_reasons: format!("{prefix}ban:reasons"),
            protected_tiles: format!("{prefix}protected:tiles"),
            ban_index: format!("{prefix}ban:keys"),
            presence: format!("{prefix}presence"),
        }
    }

    /// The pixels of one tile, in the [`rplace_domain::Tile`] layout (`BITFIELD u4 #i` at
    /// the tile-local index). `BITFIELD` grows a string only as far as it writes, so the
    /// key may be shorter than a tile: the rest is color 0.
    pub fn tile(&self, id: TileId) -> String {
        format!("{}tile:{{{},{}}}", self.tile_prefix, id.tx(), id.ty())
    }

    /// The version of one tile: the seq of the last placement on it (an integer string),
    /// written by the same script call as its pixels. Same hash tag as [`Keys::tile`].
    pub fn tile_version(&self, id: TileId) -> String {
        format!("{}tile:{{{},{}}}:v", self.tile_prefix, id.tx(), id.ty())
    }

    /// On a cluster, a tile's writes that arrived before the one they follow: a hash
    /// predecessor's seq -> `"<seq> <index> <color>"`, applied once it is
    /// (`lua/tile_apply.lua`). Same hash tag as [`Keys::tile`].
    pub fn tile_pending(&self, id: TileId) -> String {
        format!("{}tile:{{{},{}}}:p", self.tile_prefix, id.tx(), id.ty())
    }

    /// A tile's field in [`Keys::tiles_last`].
    pub fn tile_field(id: TileId) -> String {
        format!("{},{}", id.tx(), id.ty())
    }

    /// A `SCAN MATCH` pattern for every tile key (pixels and versions) of this prefix.
    pub fn tile_pattern(&self) -> String {
        let mut escaped = String::with_capacity(self.tile_prefix.len() + 8);
        for ch in self.tile_prefix.chars() {
            if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
                escaped.push('\\');
            }
            escaped.push(ch);
        }
        escaped.push_str("tile:{*");
        escaped
    }

    /// The bans of one user: a hash ban id -> end (unix ms, 0: never).
    pub fn user_ban(&self, user: UserId) -> String {
        format!("{}ban:u:{user}", self.prefix)
    }

    /// The bans of one network, by the domain's `net_key`: a hash like [`Keys::user_ban`].
    pub fn net_ban(&self, net_key: &str) -> String {
        format!("{}{net_key}", self.ban_net_prefix)
    }

    /// The key that marks a one-time proof as spent (its value: until when, unix ms);
    /// without a proof, a name that is never written.
    pub fn once(&self, token: Option<&OnceToken>) -> String {
        match token {
            Some(t) => format!("{}once:{}", self.prefix, t.to_hex()),
            None => format!("{}once", self.prefix),
        }
    }

    /// The key holding `user`'s last placement time (unix ms), which expires with the
    /// cooldown.
    pub fn cooldown(&self, user: UserId) -> String {
        format!("{}cd:{user}", self.prefix)
    }

    /// The key holding `user`'s charges pool (its GCRA arrival time, unix ms), which
    /// expires when the pool is full again (the charges model).
    pub fn charges(&self, user: UserId) -> String {
        format!("{}ch:{user}", self.prefix)
    }

    /// The key holding the address key's rate-limit state (a GCRA arrival time in µs).
    pub fn ip(&self, addr: AddrKey) -> String {
        format!("{}ip:{addr}", self.prefix)
    }

    /// The key holding the first outcome of `user`'s idempotency key (`seq at next_at`),
    /// which expires with the idempotency window. Without a key, a name that is never
    /// written (the script still needs one per placement).
    pub fn idempotency(&self, user: UserId, key: Option<&IdempotencyKey>) -> String {
        match key {
            Some(k) => format!("{}idem:{user}:{k}", self.prefix),
            None => format!("{}idem:{user}", self.prefix),
        }
    }
}
