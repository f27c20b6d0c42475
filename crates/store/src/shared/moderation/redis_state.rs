//! How bans and protected areas are laid out in Redis for the placement script (the
//! layout is described in `lua/place.lua`): what one ban or area adds and removes.

use super::{Inner, redis_failed};
use crate::moderation::{Ban, BanTarget, ModerationError, Protected};
use rplace_domain::Rect;
use std::collections::HashMap;

/// The Redis keys one ban is kept under, and its network length tag if it is one.
pub(super) fn ban_keys(inner: &Inner, ban: &Ban) -> (Vec<String>, Option<String>) {
    let k = &inner.live.keys;
    match &ban.target {
        BanTarget::User { identities, .. } => {
            (identities.iter().map(|u| k.user_ban(*u)).collect(), None)
        }
        BanTarget::Net(n) => (vec![k.net_ban(&n.key())], Some(n.length_tag())),
    }
}

/// Adds `ban` to `pipe`: its keys and its reason (its length: [`set_lengths`]).
pub(super) fn add_to(pipe: &mut redis::Pipeline, inner: &Inner, ban: &Ban) {
    let k = &inner.live.keys;
    let (keys, _) = ban_keys(inner, ban);
    let until = ban.until_ms.unwrap_or(0);
    for key in keys {
        pipe.hset(&key, ban.id, until).ignore();
        pipe.sadd(&k.ban_index, &key).ignore();
    }
    pipe.hset(&k.ban_reasons, ban.id, &ban.reason).ignore();
}

/// How many network bans in force have each length (`4/24`).
pub(super) fn count_lengths<'a>(nets: impl Iterator<Item = &'a BanTarget>) -> HashMap<String, i64> {
    let mut lens = HashMap::new();
    for t in nets {
        if let BanTarget::Net(n) = t {
            *lens.entry(n.length_tag()).or_default() += 1;
        }
    }
    lens
}

/// Replaces the lengths the script tries with `lens`: recounted from PostgreSQL at every
/// change, so lengths of lifted and expired bans drop out and cost no more lookups.
pub(super) fn set_lengths(pipe: &mut redis::Pipeline, inner: &Inner, lens: &HashMap<String, i64>) {
    let key = &inner.live.keys.ban_lens;
    pipe.del(key).ignore();
    for (tag, n) in lens {
        pipe.hset(key, tag, n).ignore();
    }
}

/// Removes `ban` from Redis (best effort): after its record failed to commit.
pub(super) async fn undo(inner: &Inner, ban: &Ban) {
    let mut pipe = redis::pipe();
    pipe.atomic();
    remove_from(&mut pipe, inner, ban);
    let res: redis::RedisResult<()> = pipe.query_async(&mut inner.live.conn()).await;
    if let Err(e) = res {
        tracing::error!(error = %e, ban = ban.id, "a ban that failed to commit is still in Redis");
    }
}

/// Removes `ban` from the hashes in `pipe` (its length: [`set_lengths`]).
pub(super) fn remove_from(pipe: &mut redis::Pipeline, inner: &Inner, ban: &Ban) {
    let k = &inner.live.keys;
    let (keys, _) = ban_keys(inner, ban);
    for key in &keys {
        pipe.hdel(key, ban.id).ignore();
    }
    pipe.hdel(&k.ban_reasons, ban.id).ignore();
}

/// Side of the square tiles protected areas are indexed by in Redis: a placement looks up
/// its tile's field only, so its cost does not grow with the number of areas; a 1000x1000
/// area takes 256 fields.
pub(crate) const TILE: u32 = 64;

/// The tile fields (`tx ty`) `r` overlaps.
pub(super) fn tiles_of(r: &Rect) -> Vec<String> {
    let (x0, x1) = (r.x() / TILE, (r.x() + (r.w() - 1)) / TILE);
    let (y0, y1) = (r.y() / TILE, (r.y() + (r.h() - 1)) / TILE);
    (y0..=y1)
        .flat_map(|ty| (x0..=x1).map(move |tx| format!("{tx} {ty}")))
        .collect()
}

/// One area in a tile's value.
pub(super) fn tile_entry(a: &Protected) -> String {
    let r = &a.rect;
    format!("{} {} {} {} {}", a.id, r.x(), r.y(), r.w(), r.h())
}

/// Adds `area` to (`add`) or removes it from the tiles it overlaps. The caller holds the
/// moderation lock, so reading the tiles and writing them back races no other writer.
pub(super) async fn update_tiles(
    inner: &Inner,
    area: &Protected,
    add: bool,
) -> Result<(), ModerationError> {
    let key = &inner.live.keys.protected_tiles;
    let fields = tiles_of(&area.rect);
    let mut conn = inner.live.conn();
    let old: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(key)
        .arg(&fields)
        .query_async(&mut conn)
        .await
        .map_err(redis_failed)?;
    let own = format!("{} ", area.id);
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (field, old) in fields.iter().zip(old) {
        let mut entries: Vec<String> = old
            .as_deref()
            .unwrap_or("")
            .split(';')
            .filter(|e| !e.is_empty() && !e.starts_with(&own))
            .map(str::to_string)
            .collect();
        if add {
            entries.push(tile_entry(area));
        }
        if entries.is_empty() {
            pipe.hdel(key, field).ignore();
        } else {
            pipe.hset(key, field, entries.join(";")).ignore();
        }
    }
    pipe.query_async::<()>(&mut conn)
        .await
        .map_err(redis_failed)
}
