//! The shared backend's part of [`crate::moderation`].
//!
//! PostgreSQL holds the durable record of every ban and protected area; Redis holds the
//! ones in force where the placement script reads them (the layout is in
//! `lua/place.lua`). Every change runs in one PostgreSQL transaction that holds an
//! advisory lock, and writes Redis (one `MULTI`) before it commits: so a change answers
//! only once every instance's placements see it, a Redis failure leaves nothing in
//! PostgreSQL, and changes and the rebuild's [`reload`] never interleave.
//!
//! After a loss of Redis, the rebuild calls [`reload`] before it installs the seq:
//! until then the script refuses every placement (the state is missing), so none is
//! decided without the bans.

use super::{Inner, SharedStore};
use crate::moderation::{
    Ban, BanTarget, Banned, MAX_ACTIVE_BANS, MAX_PROTECTED, Moderation, ModerationError, NewBan,
    NewProtected, Protected, target_columns, target_from_columns,
};
use crate::{BackendError, StoreError, now_ms};
use redis::AsyncCommands;
use rplace_domain::{Rect, UserId};
use std::collections::HashMap;

/// This area's PostgreSQL migrations: versions 200 to 299 (see
/// `history::schema::migrate`).
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[(
    200,
    "bans and protected areas",
    "CREATE TABLE moderation_bans (
         id bigserial PRIMARY KEY,
         kind text NOT NULL,
         user_id bigint,
         covers text NOT NULL,
         reason text NOT NULL,
         until_ms bigint,
         by_user bigint NOT NULL,
         at_ms bigint NOT NULL,
         lifted_at_ms bigint,
         lifted_by bigint
     );
     CREATE INDEX moderation_bans_unlifted ON moderation_bans (id) WHERE lifted_at_ms IS NULL;
     CREATE TABLE moderation_protected (
         id bigserial PRIMARY KEY,
         x int NOT NULL,
         y int NOT NULL,
         w int NOT NULL,
         h int NOT NULL,
         reason text,
         by_user bigint NOT NULL,
         at_ms bigint NOT NULL
     );",
)];

/// Advisory lock held by every moderation change and by [`reload`] (`rplace` + 0x200).
const MODERATION_LOCK: i64 = 0x72_70_6c_61_63_65_02_00;

const BAN_COLUMNS: &str =
    "id, kind, user_id, covers, reason, until_ms, by_user, at_ms, lifted_at_ms, lifted_by";

fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::from(e)
}

mod redis_state;

pub(crate) use redis_state::TILE;
use redis_state::*;

fn redis_err(e: redis::RedisError) -> StoreError {
    StoreError::from(e)
}

fn row_to_ban(r: &tokio_postgres::Row) -> Option<Ban> {
    let kind: String = r.get(1);
    let covers: String = r.get(3);
    Some(Ban {
        id: r.get::<_, i64>(0) as u64,
        target: target_from_columns(&kind, r.get(2), &covers)?,
        reason: r.get(4),
        until_ms: r.get(5),
        by: UserId(r.get::<_, i64>(6) as u64),
        at_ms: r.get(7),
        lifted_at_ms: r.get(8),
        lifted_by: r.get::<_, Option<i64>>(9).map(|u| UserId(u as u64)),
    })
}

/// The network lengths of the bans in force, as `tx` sees them (its own change included).
async fn lengths_in_force(
    tx: &deadpool_postgres::Transaction<'_>,
) -> Result<HashMap<String, i64>, StoreError> {
    let rows = tx
        .query(
            "SELECT covers FROM moderation_bans WHERE kind = 'net' AND lifted_at_ms IS NULL \
             AND (until_ms IS NULL OR until_ms > $1)",
            &[&now_ms()],
        )
        .await
        .map_err(pg)?;
    let nets: Vec<BanTarget> = rows
        .iter()
        .filter_map(|r| target_from_columns("net", None, r.get(0)))
        .collect();
    Ok(count_lengths(nets.iter()))
}

fn row_to_protected(r: &tokio_postgres::Row) -> Protected {
    let c = |i| r.get::<_, i32>(i) as u32;
    Protected {
        id: r.get::<_, i64>(0) as u64,
        rect: Rect::new_unchecked(c(1), c(2), c(3), c(4)),
        reason: r.get(5),
        by: UserId(r.get::<_, i64>(6) as u64),
        at_ms: r.get(7),
    }
}

/// Replaces the moderation state in Redis with PostgreSQL's: every ban in force and
/// every protected area. Called by the rebuild before it installs the seq.
pub(crate) async fn reload(inner: &Inner) -> Result<(usize, usize), StoreError> {
    let history = &inner.history;
    history
        .bounded(async {
            let mut client = history.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MODERATION_LOCK])
                .await
                .map_err(pg)?;
            let now = now_ms();
            let bans: Vec<Ban> = tx
                .query(
                    &format!(
                        "SELECT {BAN_COLUMNS} FROM moderation_bans WHERE lifted_at_ms IS NULL \
                         AND (until_ms IS NULL OR until_ms > $1) ORDER BY id"
                    ),
                    &[&now],
                )
                .await
                .map_err(pg)?
                .iter()
                .filter_map(row_to_ban)
                .collect();
            let areas: Vec<Protected> = tx
                .query(
                    "SELECT id, x, y, w, h, reason, by_user, at_ms FROM moderation_protected ORDER BY id",
                    &[],
                )
                .await
                .map_err(pg)?
                .iter()
                .map(row_to_protected)
                .collect();
            let k = &inner.live.keys;
            let mut conn = inner.live.conn();
            // What an older copy of the state may still hold goes first.
            let old: Vec<String> = conn.smembers(&k.ban_index).await.map_err(redis_err)?;
            let mut pipe = redis::pipe();
            pipe.atomic();
            for key in old.iter().map(String::as_str).chain([
                k.ban_index.as_str(),
                k.ban_lens.as_str(),
                k.ban_reasons.as_str(),
                k.protected_tiles.as_str(),
            ]) {
                pipe.del(key).ignore();
            }
            for ban in &bans {
                add_to(&mut pipe, inner, ban);
            }
            set_lengths(&mut pipe, inner, &count_lengths(bans.iter().map(|b| &b.target)));
            let mut tiles: HashMap<String, Vec<String>> = HashMap::new();
            for a in &areas {
                for field in tiles_of(&a.rect) {
                    tiles.entry(field).or_default().push(tile_entry(a));
                }
            }
            for (field, entries) in tiles {
                pipe.hset(&k.protected_tiles, field, entries.join(";"))
                    .ignore();
            }
            let () = pipe.query_async(&mut conn).await.map_err(redis_err)?;
            tx.commit().await.map_err(pg)?;
            Ok((bans.len(), areas.len()))
        })
        .await
}

/// Starts a transaction holding the moderation lock.
async fn begin(
    client: &mut deadpool_postgres::Client,
) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MODERATION_LOCK])
        .await
        .map_err(pg)?;
    Ok(tx)
}

impl SharedStore {
    /// `f`, failed with a timeout if it takes longer than the database timeout.
    async fn bounded_change<T>(
        &self,
        f: impl Future<Output = Result<T, ModerationError>>,
    ) -> Result<T, ModerationError> {
        tokio::time::timeout(self.inner.cfg.database_timeout, f)
            .await
            .unwrap_or(Err(BackendError::Timeout(crate::Service::Postgres).into()))
    }
}

fn redis_failed(e: redis::RedisError) -> ModerationError {
    ModerationError::from(BackendError::from(e))
}

impl Moderation for SharedStore {
    async fn ban(&self, b: NewBan) -> Result<Banned, ModerationError> {
        let inner = &self.inner;
        self.bounded_change(async {
            let mut client = inner.history.client().await?;
            let tx = begin(&mut client).await?;
            let now = now_ms();
            let active: i64 = tx
                .query_one(
                    "SELECT count(*) FROM moderation_bans WHERE lifted_at_ms IS NULL \
                     AND (until_ms IS NULL OR until_ms > $1)",
                    &[&now],
                )
                .await
                .map_err(pg)?
                .get(0);
            if active as usize >= MAX_ACTIVE_BANS {
                return Err(ModerationError::TooManyBans {
                    limit: MAX_ACTIVE_BANS,
                });
            }
            let (kind, user, covers) = target_columns(&b.target);
            let by = b.by.0 as i64;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO moderation_bans (kind, user_id, covers, reason, until_ms, by_user, at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    &[&kind, &user, &covers, &b.reason, &b.until_ms, &by, &now],
                )
                .await
                .map_err(pg)?
                .get(0);
            let ban = Ban {
                id: id as u64,
                target: b.target,
                reason: b.reason,
                until_ms: b.until_ms,
                by: b.by,
                at_ms: now,
                lifted_at_ms: None,
                lifted_by: None,
            };
            let lens = lengths_in_force(&tx).await?;
            let mut pipe = redis::pipe();
            pipe.atomic();
            add_to(&mut pipe, inner, &ban);
            set_lengths(&mut pipe, inner, &lens);
            // Read in the same transaction: the script runs wholly before or after it.
            pipe.get(&inner.live.keys.seq);
            let (seq,): (Option<u64>,) = pipe
                .query_async(&mut inner.live.conn())
                .await
                .map_err(redis_failed)?;
            if let Err(e) = tx.commit().await {
                // In force in Redis but not recorded: take it back out.
                undo(inner, &ban).await;
                return Err(pg(e).into());
            }
            Ok(Banned {
                ban,
                after_seq: rplace_domain::Seq(seq.unwrap_or(0)),
            })
        })
        .await
    }

    async fn unban(&self, id: u64, by: UserId) -> Result<Option<Ban>, ModerationError> {
        let inner = &self.inner;
        self.bounded_change(async {
            let mut client = inner.history.client().await?;
            let tx = begin(&mut client).await?;
            let row = tx
                .query_opt(
                    &format!(
                        "UPDATE moderation_bans SET lifted_at_ms = $2, lifted_by = $3 \
                         WHERE id = $1 AND lifted_at_ms IS NULL RETURNING {BAN_COLUMNS}"
                    ),
                    &[&(id as i64), &now_ms(), &(by.0 as i64)],
                )
                .await
                .map_err(pg)?;
            let Some(ban) = row.as_ref().and_then(row_to_ban) else {
                return Ok(None);
            };
            let lens = lengths_in_force(&tx).await?;
            let mut pipe = redis::pipe();
            pipe.atomic();
            remove_from(&mut pipe, inner, &ban);
            set_lengths(&mut pipe, inner, &lens);
            let () = pipe
                .query_async(&mut inner.live.conn())
                .await
                .map_err(redis_failed)?;
            tx.commit().await.map_err(pg)?;
            Ok(Some(ban))
        })
        .await
    }

    async fn bans(&self, all: bool, now_ms: i64, limit: usize) -> Result<Vec<Ban>, StoreError> {
        let history = &self.inner.history;
        history
            .bounded(async {
                let client = history.client().await?;
                let filter = if all {
                    "WHERE $1::bigint IS NOT NULL"
                } else {
                    "WHERE lifted_at_ms IS NULL AND (until_ms IS NULL OR until_ms > $1)"
                };
                let rows = client
                    .query(
                        &format!(
                            "SELECT {BAN_COLUMNS} FROM moderation_bans {filter} ORDER BY id DESC LIMIT $2"
                        ),
                        &[&now_ms, &(limit as i64)],
                    )
                    .await
                    .map_err(pg)?;
                Ok(rows.iter().filter_map(row_to_ban).collect())
            })
            .await
    }

    async fn ban_by_id(&self, id: u64) -> Result<Option<Ban>, StoreError> {
        let history = &self.inner.history;
        history
            .bounded(async {
                let client = history.client().await?;
                let row = client
                    .query_opt(
                        &format!("SELECT {BAN_COLUMNS} FROM moderation_bans WHERE id = $1"),
                        &[&(id as i64)],
                    )
                    .await
                    .map_err(pg)?;
                Ok(row.as_ref().and_then(row_to_ban))
            })
            .await
    }

    async fn protect(&self, p: NewProtected) -> Result<Protected, ModerationError> {
        let inner = &self.inner;
        self.bounded_change(async {
            let mut client = inner.history.client().await?;
            let tx = begin(&mut client).await?;
            let count: i64 = tx
                .query_one("SELECT count(*) FROM moderation_protected", &[])
                .await
                .map_err(pg)?
                .get(0);
            if count as usize >= MAX_PROTECTED {
                return Err(ModerationError::TooManyProtected {
                    limit: MAX_PROTECTED,
                });
            }
            let now = now_ms();
            let r = p.rect;
            let c = |v: u32| v as i32;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO moderation_protected (x, y, w, h, reason, by_user, at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    &[
                        &c(r.x()),
                        &c(r.y()),
                        &c(r.w()),
                        &c(r.h()),
                        &p.reason,
                        &(p.by.0 as i64),
                        &now,
                    ],
                )
                .await
                .map_err(pg)?
                .get(0);
            let area = Protected {
                id: id as u64,
                rect: r,
                reason: p.reason,
                by: p.by,
                at_ms: now,
            };
            update_tiles(inner, &area, true).await?;
            if let Err(e) = tx.commit().await {
                // In force in Redis but not recorded: take it back out.
                if let Err(undo) = update_tiles(inner, &area, false).await {
                    tracing::error!(error = %undo, area = area.id, "a protected area that failed to commit is still in Redis");
                }
                return Err(pg(e).into());
            }
            Ok(area)
        })
        .await
    }

    async fn unprotect(&self, id: u64) -> Result<Option<Protected>, ModerationError> {
        let inner = &self.inner;
        self.bounded_change(async {
            let mut client = inner.history.client().await?;
            let tx = begin(&mut client).await?;
            let row = tx
                .query_opt(
                    "DELETE FROM moderation_protected WHERE id = $1 \
                     RETURNING id, x, y, w, h, reason, by_user, at_ms",
                    &[&(id as i64)],
                )
                .await
                .map_err(pg)?;
            let Some(area) = row.as_ref().map(row_to_protected) else {
                return Ok(None);
            };
            update_tiles(inner, &area, false).await?;
            tx.commit().await.map_err(pg)?;
            Ok(Some(area))
        })
        .await
    }

    async fn protected_areas(&self) -> Result<Vec<Protected>, StoreError> {
        let history = &self.inner.history;
        history
            .bounded(async {
                let client = history.client().await?;
                let rows = client
                    .query(
                        "SELECT id, x, y, w, h, reason, by_user, at_ms FROM moderation_protected \
                         ORDER BY id LIMIT $1",
                        &[&(MAX_PROTECTED as i64)],
                    )
                    .await
                    .map_err(pg)?;
                Ok(rows.iter().map(row_to_protected).collect())
            })
            .await
    }
}
