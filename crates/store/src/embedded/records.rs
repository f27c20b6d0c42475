//! The embedded backend's part of [`crate::records`].
//!
//! Reports and audit entries are few (a report per user every few minutes at most, one
//! entry per moderator action), so they do not go through the placement writer: each
//! write opens its own connection and takes SQLite's write lock for one short
//! `BEGIN IMMEDIATE` transaction (the writer waits for it like for any other writer, at
//! most a moment). Reads use the pooled read connections.

use super::{EmbeddedStore, backend};
use crate::StoreError;
use crate::records::{
    AuditEntry, AuditQuery, Filed, NewAudit, NewReport, Records, Report, ReportLimit, ReportStatus,
    Resolution, Resolved, retry_after,
};
use rplace_domain::{ColorIndex, Coord, Rect, Seq, UserId};
use rusqlite::{Connection, OptionalExtension, params};

/// This area's SQLite migrations: versions 400 to 499, recorded in
/// `schema_migrations` (see `schema::migrate_areas`).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[(
    400,
    "reports and audit",
    "CREATE TABLE reports (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         at INTEGER NOT NULL,
         reporter INTEGER NOT NULL,
         addr TEXT NOT NULL,
         x INTEGER NOT NULL,
         y INTEGER NOT NULL,
         rect_x INTEGER, rect_y INTEGER, rect_w INTEGER, rect_h INTEGER,
         reason TEXT NOT NULL,
         color INTEGER NOT NULL,
         last_seq INTEGER,
         last_user INTEGER,
         resolved_at INTEGER,
         resolved_by INTEGER,
         resolved_by_name TEXT,
         resolution TEXT,
         note TEXT
     );
     CREATE INDEX reports_reporter ON reports (reporter, at);
     CREATE INDEX reports_addr ON reports (addr, at);
     CREATE INDEX reports_open ON reports (id) WHERE resolved_at IS NULL;
     CREATE TABLE audit (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         at INTEGER NOT NULL,
         actor INTEGER NOT NULL,
         actor_name TEXT NOT NULL,
         kind TEXT NOT NULL,
         reason TEXT,
         pixels INTEGER NOT NULL,
         detail TEXT NOT NULL
     );
     CREATE INDEX audit_kind ON audit (kind, id);
     CREATE INDEX audit_actor ON audit (actor, id);",
)];

const REPORT_COLUMNS: &str = "id, at, reporter, addr, x, y, rect_x, rect_y, rect_w, rect_h, \
     reason, color, last_seq, last_user, resolved_at, resolved_by, resolved_by_name, \
     resolution, note";

fn row_to_report(r: &rusqlite::Row<'_>) -> rusqlite::Result<Report> {
    let rect = match (
        r.get::<_, Option<i64>>(6)?,
        r.get::<_, Option<i64>>(7)?,
        r.get::<_, Option<i64>>(8)?,
        r.get::<_, Option<i64>>(9)?,
    ) {
        (Some(x), Some(y), Some(w), Some(h)) => {
            Some(Rect::new_unchecked(x as u32, y as u32, w as u32, h as u32))
        }
        _ => None,
    };
    let last = match (r.get::<_, Option<i64>>(12)?, r.get::<_, Option<i64>>(13)?) {
        (Some(seq), Some(user)) => Some((Seq(seq as u64), UserId(user as u64))),
        _ => None,
    };
    let resolved = match r.get::<_, Option<i64>>(14)? {
        Some(at_ms) => Some(Resolution {
            at_ms,
            by: UserId(r.get::<_, i64>(15)? as u64),
            by_name: r.get(16)?,
            resolution: r.get(17)?,
            note: r.get(18)?,
        }),
        None => None,
    };
    Ok(Report {
        id: r.get(0)?,
        filed: NewReport {
            at_ms: r.get(1)?,
            reporter: UserId(r.get::<_, i64>(2)? as u64),
            addr: r.get(3)?,
            // Read back from rows whose coordinates were checked when filed.
            coord: Coord::new_unchecked(r.get::<_, i64>(4)? as u32, r.get::<_, i64>(5)? as u32),
            rect,
            reason: r.get(10)?,
            color: ColorIndex::new_unchecked(r.get::<_, i64>(11)? as u8),
            last,
        },
        resolved,
    })
}

fn row_to_audit(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.get(0)?,
        entry: NewAudit {
            at_ms: r.get(1)?,
            actor: UserId(r.get::<_, i64>(2)? as u64),
            actor_name: r.get(3)?,
            kind: r.get(4)?,
            reason: r.get(5)?,
            pixels: r.get::<_, i64>(6)? as u64,
            detail: r.get(7)?,
        },
    })
}

fn read_report(c: &Connection, id: i64) -> Result<Option<Report>, StoreError> {
    c.query_row(
        &format!("SELECT {REPORT_COLUMNS} FROM reports WHERE id = ?1"),
        [id],
        row_to_report,
    )
    .optional()
    .map_err(backend)
}

/// Times of the reports in the window under one key column, newest first (at most
/// `max`: all the limit needs).
fn recent(
    c: &Connection,
    column: &str,
    key: &dyn rusqlite::ToSql,
    since: i64,
    max: u32,
) -> Result<Vec<i64>, StoreError> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT at FROM reports WHERE {column} = ?1 AND at > ?2 ORDER BY at DESC LIMIT ?3"
        ))
        .map_err(backend)?;
    stmt.query_map(params![key, since, max], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(backend)
}

impl Records for EmbeddedStore {
    async fn add_report(&self, r: NewReport, limit: ReportLimit) -> Result<Filed, StoreError> {
        self.side_write(move |tx| {
            let since = r.at_ms - limit.window_ms;
            if limit.max > 0 {
                let by_user = recent(tx, "reporter", &(r.reporter.0 as i64), since, limit.max)?;
                let by_addr = recent(tx, "addr", &r.addr, since, limit.max)?;
                let wait = [by_user, by_addr]
                    .iter()
                    .filter_map(|t| retry_after(t, limit, r.at_ms))
                    .max();
                if let Some(retry_after_ms) = wait {
                    return Ok(Filed::Limited { retry_after_ms });
                }
            }
            tx.execute(
                "INSERT INTO reports (at, reporter, addr, x, y, rect_x, rect_y, rect_w, rect_h,
                                      reason, color, last_seq, last_user)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    r.at_ms,
                    r.reporter.0 as i64,
                    r.addr,
                    r.coord.x(),
                    r.coord.y(),
                    r.rect.map(|q| q.x()),
                    r.rect.map(|q| q.y()),
                    r.rect.map(|q| q.w()),
                    r.rect.map(|q| q.h()),
                    r.reason,
                    r.color.get(),
                    r.last.map(|(s, _)| s.0 as i64),
                    r.last.map(|(_, u)| u.0 as i64),
                ],
            )
            .map_err(backend)?;
            Ok(Filed::Stored(tx.last_insert_rowid()))
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
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {REPORT_COLUMNS} FROM reports WHERE id < ?1 {filter}
                     ORDER BY id DESC LIMIT ?2"
                ))
                .map_err(backend)?;
            stmt.query_map(
                params![before.unwrap_or(i64::MAX), limit as i64],
                row_to_report,
            )
            .and_then(|rows| rows.collect())
            .map_err(backend)
        })
        .await
    }

    async fn report(&self, id: i64) -> Result<Option<Report>, StoreError> {
        self.read(move |c| read_report(c, id)).await
    }

    async fn resolve_report(&self, id: i64, res: Resolution) -> Result<Resolved, StoreError> {
        self.side_write(move |tx| {
            let changed = tx
                .execute(
                    "UPDATE reports SET resolved_at = ?2, resolved_by = ?3, resolved_by_name = ?4,
                                        resolution = ?5, note = ?6
                     WHERE id = ?1 AND resolved_at IS NULL",
                    params![
                        id,
                        res.at_ms,
                        res.by.0 as i64,
                        res.by_name,
                        res.resolution,
                        res.note
                    ],
                )
                .map_err(backend)?;
            Ok(match read_report(tx, id)? {
                None => Resolved::Missing,
                Some(r) if changed == 1 => Resolved::Now(r),
                Some(r) => Resolved::Already(r),
            })
        })
        .await
    }

    async fn add_audit(&self, e: NewAudit) -> Result<i64, StoreError> {
        self.side_write(move |tx| {
            tx.execute(
                "INSERT INTO audit (at, actor, actor_name, kind, reason, pixels, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    e.at_ms,
                    e.actor.0 as i64,
                    e.actor_name,
                    e.kind,
                    e.reason,
                    e.pixels as i64,
                    e.detail
                ],
            )
            .map_err(backend)?;
            Ok(tx.last_insert_rowid())
        })
        .await
    }

    async fn audit(&self, q: AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, at, actor, actor_name, kind, reason, pixels, detail FROM audit
                     WHERE id < ?1 AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR actor = ?3)
                     ORDER BY id DESC LIMIT ?4",
                )
                .map_err(backend)?;
            stmt.query_map(
                params![
                    q.before.unwrap_or(i64::MAX),
                    q.kind,
                    q.actor.map(|u| u.0 as i64),
                    q.limit as i64
                ],
                row_to_audit,
            )
            .and_then(|rows| rows.collect())
            .map_err(backend)
        })
        .await
    }
}
