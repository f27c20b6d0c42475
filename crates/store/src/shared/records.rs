//! The shared backend's part of [`crate::records`]: both tables in PostgreSQL, which
//! every instance shares, so the report limit holds across the fleet.

use super::SharedStore;
use crate::StoreError;
use crate::records::{
    AuditEntry, AuditQuery, Filed, NewAudit, NewReport, Records, Report, ReportLimit, ReportStatus,
    Resolution, Resolved, retry_after,
};
use rplace_domain::{ColorIndex, Coord, Rect, Seq, UserId};

/// This area's PostgreSQL migrations: versions 400 to 499 (see
/// `history::schema::migrate`).
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[(
    400,
    "reports and audit",
    "CREATE TABLE reports (
         id BIGSERIAL PRIMARY KEY,
         at BIGINT NOT NULL,
         reporter BIGINT NOT NULL,
         addr TEXT NOT NULL,
         x INTEGER NOT NULL,
         y INTEGER NOT NULL,
         rect_x INTEGER, rect_y INTEGER, rect_w INTEGER, rect_h INTEGER,
         reason TEXT NOT NULL,
         color SMALLINT NOT NULL,
         last_seq BIGINT,
         last_user BIGINT,
         resolved_at BIGINT,
         resolved_by BIGINT,
         resolved_by_name TEXT,
         resolution TEXT,
         note TEXT
     );
     CREATE INDEX reports_reporter ON reports (reporter, at);
     CREATE INDEX reports_addr ON reports (addr, at);
     CREATE INDEX reports_open ON reports (id) WHERE resolved_at IS NULL;
     CREATE TABLE audit (
         id BIGSERIAL PRIMARY KEY,
         at BIGINT NOT NULL,
         actor BIGINT NOT NULL,
         actor_name TEXT NOT NULL,
         kind TEXT NOT NULL,
         reason TEXT,
         pixels BIGINT NOT NULL,
         detail TEXT NOT NULL
     );
     CREATE INDEX audit_kind ON audit (kind, id);
     CREATE INDEX audit_actor ON audit (actor, id);",
)];

/// Transaction-scoped advisory lock that serializes report inserts across instances, so
/// that the limit's count and the insert are one step (`rplace` + 0x400).
const REPORT_LOCK: i64 = 0x72_70_6c_61_63_65_04_00;

const REPORT_COLUMNS: &str = "id, at, reporter, addr, x, y, rect_x, rect_y, rect_w, rect_h, \
     reason, color, last_seq, last_user, resolved_at, resolved_by, resolved_by_name, \
     resolution, note";

fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::from(e)
}

fn row_to_report(r: &tokio_postgres::Row) -> Report {
    let rect = match (
        r.get::<_, Option<i32>>(6),
        r.get::<_, Option<i32>>(7),
        r.get::<_, Option<i32>>(8),
        r.get::<_, Option<i32>>(9),
    ) {
        (Some(x), Some(y), Some(w), Some(h)) => {
            Some(Rect::new_unchecked(x as u32, y as u32, w as u32, h as u32))
        }
        _ => None,
    };
    let last = match (r.get::<_, Option<i64>>(12), r.get::<_, Option<i64>>(13)) {
        (Some(seq), Some(user)) => Some((Seq(seq as u64), UserId(user as u64))),
        _ => None,
    };
    let resolved = r.get::<_, Option<i64>>(14).map(|at_ms| Resolution {
        at_ms,
        by: UserId(r.get::<_, Option<i64>>(15).unwrap_or(0) as u64),
        by_name: r.get::<_, Option<String>>(16).unwrap_or_default(),
        resolution: r.get::<_, Option<String>>(17).unwrap_or_default(),
        note: r.get(18),
    });
    Report {
        id: r.get(0),
        filed: NewReport {
            at_ms: r.get(1),
            reporter: UserId(r.get::<_, i64>(2) as u64),
            addr: r.get(3),
            // Read back from rows whose coordinates were checked when filed.
            coord: Coord::new_unchecked(r.get::<_, i32>(4) as u32, r.get::<_, i32>(5) as u32),
            rect,
            reason: r.get(10),
            color: ColorIndex::new_unchecked(r.get::<_, i16>(11) as u8),
            last,
        },
        resolved,
    }
}

fn row_to_audit(r: &tokio_postgres::Row) -> AuditEntry {
    AuditEntry {
        id: r.get(0),
        entry: NewAudit {
            at_ms: r.get(1),
            actor: UserId(r.get::<_, i64>(2) as u64),
            actor_name: r.get(3),
            kind: r.get(4),
            reason: r.get(5),
            pixels: r.get::<_, i64>(6) as u64,
            detail: r.get(7),
        },
    }
}

async fn read_report(
    c: &impl deadpool_postgres::GenericClient,
    id: i64,
) -> Result<Option<Report>, StoreError> {
    let row = c
        .query_opt(
            &format!("SELECT {REPORT_COLUMNS} FROM reports WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(pg)?;
    Ok(row.as_ref().map(row_to_report))
}

/// Times of the reports in the window under one key column, newest first.
async fn recent(
    c: &impl deadpool_postgres::GenericClient,
    column: &str,
    key: &(dyn tokio_postgres::types::ToSql + Sync),
    since: i64,
    max: u32,
) -> Result<Vec<i64>, StoreError> {
    let rows = c
        .query(
            &format!(
                "SELECT at FROM reports WHERE {column} = $1 AND at > $2 ORDER BY at DESC LIMIT $3"
            ),
            &[key, &since, &i64::from(max)],
        )
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

impl Records for SharedStore {
    async fn add_report(&self, r: NewReport, limit: ReportLimit) -> Result<Filed, StoreError> {
        let history = &self.inner.history;
        history
            .bounded(async {
                let mut client = history.client().await?;
                let tx = client.transaction().await.map_err(pg)?;
                if limit.max > 0 {
                    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REPORT_LOCK])
                        .await
                        .map_err(pg)?;
                    let since = r.at_ms - limit.window_ms;
                    let reporter = r.reporter.0 as i64;
                    let by_user = recent(&tx, "reporter", &reporter, since, limit.max).await?;
                    let by_addr = recent(&tx, "addr", &r.addr, since, limit.max).await?;
                    let wait = [by_user, by_addr]
                        .iter()
                        .filter_map(|t| retry_after(t, limit, r.at_ms))
                        .max();
                    if let Some(retry_after_ms) = wait {
                        tx.rollback().await.map_err(pg)?;
                        return Ok(Filed::Limited { retry_after_ms });
                    }
                }
                let rect = |f: fn(&Rect) -> u32| r.rect.as_ref().map(|q| f(q) as i32);
                let row = tx
                    .query_one(
                        "INSERT INTO reports (at, reporter, addr, x, y, rect_x, rect_y, rect_w,
                                              rect_h, reason, color, last_seq, last_user)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                         RETURNING id",
                        &[
                            &r.at_ms,
                            &(r.reporter.0 as i64),
                            &r.addr,
                            &(r.coord.x() as i32),
                            &(r.coord.y() as i32),
                            &rect(Rect::x),
                            &rect(Rect::y),
                            &rect(Rect::w),
                            &rect(Rect::h),
                            &r.reason,
                            &i16::from(r.color.get()),
                            &r.last.map(|(s, _)| s.0 as i64),
                            &r.last.map(|(_, u)| u.0 as i64),
                        ],
                    )
                    .await
                    .map_err(pg)?;
                tx.commit().await.map_err(pg)?;
                Ok(Filed::Stored(row.get(0)))
            })
            .await
    }

    async fn reports(
        &self,
        status: ReportStatus,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Report>, StoreError> {
        let filter = match status {
            ReportStatus::Open => "AND resolved_at IS NULL",
            ReportStatus::Resolved => "AND resolved_at IS NOT NULL",
            ReportStatus::All => "",
        };
        let history = &self.inner.history;
        history
            .bounded(async {
                let client = history.client().await?;
                let rows = client
                    .query(
                        &format!(
                            "SELECT {REPORT_COLUMNS} FROM reports WHERE id < $1 {filter}
                             ORDER BY id DESC LIMIT $2"
                        ),
                        &[&before.unwrap_or(i64::MAX), &(limit as i64)],
                    )
                    .await
                    .map_err(pg)?;
                Ok(rows.iter().map(row_to_report).collect())
            })
            .await
    }

    async fn report(&self, id: i64) -> Result<Option<Report>, StoreError> {
        let history = &self.inner.history;
        history
            .bounded(async {
                let client = history.client().await?;
                read_report(&client, id).await
            })
            .await
    }

    async fn resolve_report(&self, id: i64, res: Resolution) -> Result<Resolved, StoreError> {
        let history = &self.inner.history;
        history
            .bounded(async {
                let client = history.client().await?;
                let changed = client
                    .execute(
                        "UPDATE reports SET resolved_at = $2, resolved_by = $3,
                                resolved_by_name = $4, resolution = $5, note = $6
                         WHERE id = $1 AND resolved_at IS NULL",
                        &[
                            &id,
                            &res.at_ms,
                            &(res.by.0 as i64),
                            &res.by_name,
                            &res.resolution,
                            &res.note,
                        ],
                    )
                    .await
                    .map_err(pg)?;
                Ok(match read_report(&client, id).await? {
                    None => Resolved::Missing,
                    Some(r) if changed == 1 => Resolved::Now(r),
                    Some(r) => Resolved::Already(r),
                })
            })
            .await
    }

    async fn add_audit(&self, e: NewAudit) -> Result<i64, StoreError> {
        let history = &self.inner.history;
        history
            .bounded(async {
                let client = history.client().await?;
                let row = client
                    .query_one(
                        "INSERT INTO audit (at, actor, actor_name, kind, reason, pixels, detail)
                         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                        &[
                            &e.at_ms,
                            &(e.actor.0 as i64),
                            &e.actor_name,
                            &e.kind,
                            &e.reason,
                            &(e.pixels as i64),
                            &e.detail,
                        ],
                    )
                    .await
                    .map_err(pg)?;
                Ok(row.get(0))
            })
            .await
    }

    async fn audit(&self, q: AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let history = &self.inner.history;
        history
            .bounded(async {
                let client = history.client().await?;
                let rows = client
                    .query(
                        "SELECT id, at, actor, actor_name, kind, reason, pixels, detail FROM audit
                         WHERE id < $1 AND ($2::text IS NULL OR kind = $2)
                           AND ($3::bigint IS NULL OR actor = $3)
                         ORDER BY id DESC LIMIT $4",
                        &[
                            &q.before.unwrap_or(i64::MAX),
                            &q.kind,
                            &q.actor.map(|u| u.0 as i64),
                            &(q.limit as i64),
                        ],
                    )
                    .await
                    .map_err(pg)?;
                Ok(rows.iter().map(row_to_audit).collect())
            })
            .await
    }
}
