//! The names of everything the shared backend keeps in Redis, under one configurable
//! prefix so that several deployments (or parallel tests) can share a server.
//!
//! Each painted tile has two keys, its pixels and its version, named with one hash tag per
//! tile (`<prefix>tile:{<tx>,<ty>}` and `<prefix>tile:{<tx>,<ty>}:v`), so that a Redis
//! Cluster would hash both to one slot and spread the tiles over all slots. Nothing is
//! board-sized: an unpainted tile has no key. (This round runs on one Redis, where the
//! placement script touches the global keys, the user's keys and the tiles at once; on a
//! cluster those are in different slots, see `shared/mod.rs`, "Redis Cluster".) A prefix
//! that holds a hash tag itself (`{rplace}:`) puts every key, tiles included, in its slot.

use rplace_domain::{AddrKey, IdempotencyKey, OnceToken, TileId, UserId};

/// Every key name, built once from the prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// The prefix itself, for the per-user and per-address keys built on demand.
    prefix: String,
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
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
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
        format!("{}tile:{{{},{}}}", self.prefix, id.tx(), id.ty())
    }

    /// The version of one tile: the seq of the last placement on it (an integer string),
    /// written by the same script call as its pixels. Same hash tag as [`Keys::tile`].
    pub fn tile_version(&self, id: TileId) -> String {
        format!("{}tile:{{{},{}}}:v", self.prefix, id.tx(), id.ty())
    }

    /// A `SCAN MATCH` pattern for every tile key (pixels and versions) of this prefix.
    pub fn tile_pattern(&self) -> String {
        let mut escaped = String::with_capacity(self.prefix.len() + 8);
        for ch in self.prefix.chars() {
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
