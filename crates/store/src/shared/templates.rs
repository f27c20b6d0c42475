//! The shared backend's part of [`crate::templates`]: one table in PostgreSQL, which every
//! instance shares, so the limits hold across the fleet and every instance serves every
//! template.

use super::SharedStore;
use crate::StoreError;
use crate::templates::{
    Added, LIST_LIMIT, NewTemplate, RATE_WINDOW_MS, TemplateLimits, TemplateMeta, Templates,
    retry_after,
};
use rplace_domain::UserId;

/// This area's PostgreSQL migrations: versions 800 to 899 (see
/// `history::schema::migrate`).
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[(
    800,
    "templates",
    "CREATE TABLE templates (
         id TEXT PRIMARY KEY,
         name TEXT NOT NULL,
         x INTEGER NOT NULL,
         y INTEGER NOT NULL,
         width INTEGER NOT NULL,
         height INTEGER NOT NULL,
         owner BIGINT NOT NULL,
         created_ms BIGINT NOT NULL,
         deleted_ms BIGINT,
         png BYTEA
     );
     CREATE INDEX templates_owner ON templates (owner, created_ms);
     CREATE INDEX templates_live ON templates (created_ms) WHERE deleted_ms IS NULL;",
)];

/// Transaction-scoped advisory lock that serializes template uploads across instances, so
/// that the limits' counts and the insert are one step (`rplace` + 0x800).
const UPLOAD_LOCK: i64 = 0x72_70_6c_61_63_65_08_00;

const COLUMNS: &str = "id, name, x, y, width, height, owner, created_ms";

fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::from(e)
}

fn row_to_meta(r: &tokio_postgres::Row) -> TemplateMeta {
    TemplateMeta {
        id: r.get(0),
        name: r.get(1),
        x: r.get::<_, i32>(2) as u32,
        y: r.get::<_, i32>(3) as u32,
        width: r.get::<_, i32>(4) as u32,
        height: r.get::<_, i32>(5) as u32,
        owner: UserId(r.get::<_, i64>(6) as u64),
        created_ms: r.get(7),
    }
}

async fn count(
    c: &impl deadpool_postgres::GenericClient,
    sql: &str,
    p: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u32, StoreError> {
    let n: i64 = c.query_one(sql, p).await.map_err(pg)?.get(0);
    Ok(n as u32)
}

/// The limit `t` would break, if any.
async fn refusal(
    c: &impl deadpool_postgres::GenericClient,
    t: &TemplateMeta,
    l: TemplateLimits,
) -> Result<Option<Added>, StoreError> {
    let owner = t.owner.0 as i64;
    let exists = count(c, "SELECT COUNT(*) FROM templates WHERE id = $1", &[&t.id]).await?;
    if exists > 0 {
        return Ok(Some(Added::IdTaken));
    }
    let mine = count(
        c,
        "SELECT COUNT(*) FROM templates WHERE owner = $1 AND deleted_ms IS NULL",
        &[&owner],
    )
    .await?;
    if mine >= l.per_user {
        return Ok(Some(Added::TooManyOfUser));
    }
    let times: Vec<i64> = c
        .query(
            "SELECT created_ms FROM templates WHERE owner = $1 AND created_ms > $2
             ORDER BY created_ms DESC LIMIT $3",
            &[
                &owner,
                &(t.created_ms - RATE_WINDOW_MS),
                &i64::from(l.per_hour),
            ],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(retry_after_ms) = retry_after(&times, l.per_hour, t.created_ms) {
        return Ok(Some(Added::RateLimited { retry_after_ms }));
    }
    let all = count(
        c,
        "SELECT COUNT(*) FROM templates WHERE deleted_ms IS NULL",
        &[],
    )
    .await?;
    Ok((all >= l.total).then_some(Added::Full))
}

impl Templates for SharedStore {
    async fn add_template(&self, t: NewTemplate, l: TemplateLimits) -> Result<Added, StoreError> {
        let history = &self.inner.history;
        history
            .bounded(async {
                let mut client = history.client().await?;
                let tx = client.transaction().await.map_err(pg)?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&UPLOAD_LOCK])
                    .await
                    .map_err(pg)?;
                let m = &t.meta;
                if let Some(no) = refusal(&tx, m, l).await? {
                    tx.rollback().await.map_err(pg)?;
                    return Ok(no);
                }
                tx.execute(
                    "INSERT INTO templates (id, name, x, y, width, height, owner, created_ms, png)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        &m.id,
                        &m.name,
                        &(m.x as i32),
                        &(m.y as i32),
                        &(m.width as i32),
                        &(m.height as i32),
                        &(m.owner.0 as i64),
                        &m.created_ms,
                        &t.png,
                    ],
                )
                .await
                .map_err(pg)?;
                tx.commit().await.map_err(pg)?;
                Ok(Added::Added)
            })
            .await
    }

    async fn template(&self, id: &str) -> Result<Option<TemplateMeta>, StoreError> {
        let history = &self.inner.history;
        history
            .bounded(async {
                let row = history
                    .client()
                    .await?
                    .query_opt(
                        &format!(
                            "SELECT {COLUMNS} FROM templates WHERE id = $1 AND deleted_ms IS NULL"
                        ),
                        &[&id],
                    )
                    .await
                    .map_err(pg)?;
                Ok(row.as_ref().map(row_to_meta))
            })
            .await
    }

    async fn template_png(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let history = &self.inner.history;
        history
            .bounded(async {
                let row = history
                    .client()
                    .await?
                    .query_opt(
                        "SELECT png FROM templates WHERE id = $1 AND deleted_ms IS NULL",
                        &[&id],
                    )
                    .await
                    .map_err(pg)?;
                Ok(row.map(|r| r.get(0)))
            })
            .await
    }

    async fn delete_template(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let history = &self.inner.history;
        history
            .bounded(async {
                let n = history
                    .client()
                    .await?
                    .execute(
                        "UPDATE templates SET deleted_ms = $2, png = NULL
                         WHERE id = $1 AND deleted_ms IS NULL",
                        &[&id, &now_ms],
                    )
                    .await
                    .map_err(pg)?;
                Ok(n > 0)
            })
            .await
    }

    async fn templates_of(&self, owner: UserId) -> Result<Vec<TemplateMeta>, StoreError> {
        let history = &self.inner.history;
        history
            .bounded(async {
                let rows = history
                    .client()
                    .await?
                    .query(
                        &format!(
                            "SELECT {COLUMNS} FROM templates WHERE owner = $1 AND deleted_ms IS NULL
                             ORDER BY created_ms DESC, id LIMIT $2"
                        ),
                        &[&(owner.0 as i64), &(LIST_LIMIT as i64)],
                    )
                    .await
                    .map_err(pg)?;
                Ok(rows.iter().map(row_to_meta).collect())
            })
            .await
    }
}
