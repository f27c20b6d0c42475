//! The embedded backend's part of [`crate::templates`].
//!
//! Uploads are rare (a few per user per hour), so like reports they do not go through the
//! placement writer: each write opens its own connection for one short `BEGIN IMMEDIATE`
//! transaction, which also makes the limits' counts and the insert one step. Reads use the
//! pooled read connections.

use super::{EmbeddedStore, backend};
use crate::StoreError;
use crate::templates::{
    Added, LIST_LIMIT, NewTemplate, RATE_WINDOW_MS, TemplateLimits, TemplateMeta, Templates,
    retry_after,
};
use rplace_domain::UserId;
use rusqlite::{Connection, OptionalExtension, params};

/// This area's SQLite migrations: versions 800 to 899, recorded in
/// `schema_migrations` (see `schema::migrate_areas`).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[(
    800,
    "templates",
    "CREATE TABLE templates (
         id TEXT PRIMARY KEY,
         name TEXT NOT NULL,
         x INTEGER NOT NULL,
         y INTEGER NOT NULL,
         width INTEGER NOT NULL,
         height INTEGER NOT NULL,
         owner INTEGER NOT NULL,
         created_ms INTEGER NOT NULL,
         deleted_ms INTEGER,
         png BLOB
     );
     CREATE INDEX templates_owner ON templates (owner, created_ms);
     CREATE INDEX templates_live ON templates (created_ms) WHERE deleted_ms IS NULL",
)];

const COLUMNS: &str = "id, name, x, y, width, height, owner, created_ms";

fn row_to_meta(r: &rusqlite::Row<'_>) -> rusqlite::Result<TemplateMeta> {
    Ok(TemplateMeta {
        id: r.get(0)?,
        name: r.get(1)?,
        x: r.get(2)?,
        y: r.get(3)?,
        width: r.get(4)?,
        height: r.get(5)?,
        owner: UserId(r.get::<_, i64>(6)? as u64),
        created_ms: r.get(7)?,
    })
}

fn count(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<u32, StoreError> {
    c.query_row(sql, p, |r| r.get::<_, i64>(0))
        .map(|n| n as u32)
        .map_err(backend)
}

/// The limit `t` would break, if any.
fn refusal(
    c: &Connection,
    t: &TemplateMeta,
    l: TemplateLimits,
) -> Result<Option<Added>, StoreError> {
    let owner = t.owner.0 as i64;
    let exists: bool = c
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM templates WHERE id = ?1)",
            [&t.id],
            |r| r.get(0),
        )
        .map_err(backend)?;
    if exists {
        return Ok(Some(Added::IdTaken));
    }
    let mine = count(
        c,
        "SELECT COUNT(*) FROM templates WHERE owner = ?1 AND deleted_ms IS NULL",
        [owner],
    )?;
    if mine >= l.per_user {
        return Ok(Some(Added::TooManyOfUser));
    }
    let mut stmt = c
        .prepare_cached(
            "SELECT created_ms FROM templates WHERE owner = ?1 AND created_ms > ?2
             ORDER BY created_ms DESC LIMIT ?3",
        )
        .map_err(backend)?;
    let times: Vec<i64> = stmt
        .query_map(
            params![owner, t.created_ms - RATE_WINDOW_MS, l.per_hour],
            |r| r.get(0),
        )
        .and_then(|rows| rows.collect())
        .map_err(backend)?;
    if let Some(retry_after_ms) = retry_after(&times, l.per_hour, t.created_ms) {
        return Ok(Some(Added::RateLimited { retry_after_ms }));
    }
    let all = count(
        c,
        "SELECT COUNT(*) FROM templates WHERE deleted_ms IS NULL",
        params![],
    )?;
    Ok((all >= l.total).then_some(Added::Full))
}

impl Templates for EmbeddedStore {
    async fn add_template(&self, t: NewTemplate, l: TemplateLimits) -> Result<Added, StoreError> {
        self.side_write(move |tx| {
            let m = &t.meta;
            if let Some(no) = refusal(tx, m, l)? {
                return Ok(no);
            }
            tx.execute(
                "INSERT INTO templates (id, name, x, y, width, height, owner, created_ms, png)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    m.id,
                    m.name,
                    m.x,
                    m.y,
                    m.width,
                    m.height,
                    m.owner.0 as i64,
                    m.created_ms,
                    t.png
                ],
            )
            .map_err(backend)?;
            Ok(Added::Added)
        })
        .await
    }

    async fn template(&self, id: &str) -> Result<Option<TemplateMeta>, StoreError> {
        let id = id.to_string();
        self.read(move |c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM templates WHERE id = ?1 AND deleted_ms IS NULL"),
                [id],
                row_to_meta,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn template_png(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let id = id.to_string();
        self.read(move |c| {
            c.query_row(
                "SELECT png FROM templates WHERE id = ?1 AND deleted_ms IS NULL",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn delete_template(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.side_write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE templates SET deleted_ms = ?2, png = NULL
                     WHERE id = ?1 AND deleted_ms IS NULL",
                    params![id, now_ms],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn templates_of(&self, owner: UserId) -> Result<Vec<TemplateMeta>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM templates WHERE owner = ?1 AND deleted_ms IS NULL
                     ORDER BY created_ms DESC, id LIMIT ?2"
                ))
                .map_err(backend)?;
            stmt.query_map(params![owner.0 as i64, LIST_LIMIT as i64], row_to_meta)
                .and_then(|rows| rows.collect())
                .map_err(backend)
        })
        .await
    }
}
