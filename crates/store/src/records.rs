//! Records moderators read: reports from users and the audit log of every admin action.
//!
//! The trait and the types that cross it; the backends' implementations are in
//! `embedded/records.rs` and `shared/records.rs`. Both keep the same two tables
//! (`reports`, `audit`), with times in unix ms and ids that grow, so that "newest first"
//! is "highest id first" and a page continues below the last id it showed.
//!
//! Reports are rate-limited in the store, under the same lock as the insert: a count of
//! the reporter's and the address's reports in the window, so that every instance of a
//! shared canvas agrees and no memory grows with the number of reporters.

use crate::StoreError;
use rplace_domain::{ColorIndex, Coord, Rect, Seq, UserId};
use std::future::Future;

/// A report as a user files it, with what the server saw of the pixel at that moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReport {
    /// Unix ms when it was filed.
    pub at_ms: i64,
    /// Who filed it; the per-identity limit counts under it.
    pub reporter: UserId,
    /// The reporter's per-address key (`AddrKey`'s text): the per-address limit counts
    /// under it, and a moderator may ban it.
    pub addr: String,
    /// The reported pixel.
    pub coord: Coord,
    /// The reported area, when the report is about more than one pixel.
    pub rect: Option<Rect>,
    /// What the reporter says is wrong (1 to 500 characters).
    pub reason: String,
    /// The pixel's color when it was reported, so a moderator sees what was reported
    /// even after it changed.
    pub color: ColorIndex,
    /// The pixel's last placement when it was reported (seq and who), if any.
    pub last: Option<(Seq, UserId)>,
}

/// How many reports one reporter (and one address) may file in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportLimit {
    /// At most this many reports per identity and per address within `window_ms`.
    pub max: u32,
    /// The window, in ms.
    pub window_ms: i64,
}

/// How a moderator closed a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Unix ms when it was resolved.
    pub at_ms: i64,
    /// The moderator's identity.
    pub by: UserId,
    /// The moderator's display name as it was then.
    pub by_name: String,
    /// What was done (e.g. "rolled back", "no action").
    pub resolution: String,
    /// Anything else the moderator wants to keep with it.
    pub note: Option<String>,
}

/// A stored report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Its id; ids grow with time.
    pub id: i64,
    /// What was filed.
    pub filed: NewReport,
    /// How it was closed; `None` while it is open.
    pub resolved: Option<Resolution>,
}

/// Which reports a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportStatus {
    Open,
    Resolved,
    All,
}

/// What `add_report` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filed {
    /// Stored under this id.
    Stored(i64),
    /// Over the limit: nothing stored; a report may be filed again in this many ms.
    Limited { retry_after_ms: i64 },
}

/// What `resolve_report` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Resolved now; the report as it is stored.
    Now(Report),
    /// It had been resolved before (by someone else, perhaps): nothing changed.
    Already(Report),
    /// No report has this id.
    Missing,
}

/// An action for the audit log, as its handler describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    /// Unix ms when it took effect.
    pub at_ms: i64,
    /// Who did it.
    pub actor: UserId,
    /// Their display name as it was then.
    pub actor_name: String,
    /// What kind of action (`ban`, `rollback`, `resolve_report`, ...).
    pub kind: String,
    /// The reason they gave, if any.
    pub reason: Option<String>,
    /// How many pixels it changed.
    pub pixels: u64,
    /// The action's parameters and results, as JSON text.
    pub detail: String,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its id; ids grow with time.
    pub id: i64,
    /// What was recorded.
    pub entry: NewAudit,
}

/// Which audit entries a listing shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditQuery {
    /// Only entries with an id below this (the next page of a listing).
    pub before: Option<i64>,
    /// At most this many.
    pub limit: usize,
    /// Only this kind of action.
    pub kind: Option<String>,
    /// Only this actor's actions.
    pub actor: Option<UserId>,
}

/// Reports and the audit log.
pub trait Records: Send + Sync {
    /// Stores `report` unless its reporter or its address already filed `limit.max`
    /// reports in the window; the check and the insert are one step.
    fn add_report(
        &self,
        report: NewReport,
        limit: ReportLimit,
    ) -> impl Future<Output = Result<Filed, StoreError>> + Send;

    /// Reports with `status`, newest first, only ids below `before`, at most `limit`.
    fn reports(
        &self,
        status: ReportStatus,
        before: Option<i64>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Report>, StoreError>> + Send;

    /// One report.
    fn report(&self, id: i64) -> impl Future<Output = Result<Option<Report>, StoreError>> + Send;

    /// Resolves an open report; one that is resolved already stays as it was.
    fn resolve_report(
        &self,
        id: i64,
        resolution: Resolution,
    ) -> impl Future<Output = Result<Resolved, StoreError>> + Send;

    /// Appends an entry to the audit log; its id.
    fn add_audit(&self, entry: NewAudit) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Audit entries matching `q`, newest first.
    fn audit(
        &self,
        q: AuditQuery,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;
}

/// Like `Store for Backend`: each call goes to the backend this deployment runs.
macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            crate::Backend::Embedded($s) => $e,
            crate::Backend::Shared($s) => $e,
        }
    };
}

impl Records for crate::Backend {
    async fn add_report(&self, report: NewReport, limit: ReportLimit) -> Result<Filed, StoreError> {
        delegate!(self, s => s.add_report(report, limit).await)
    }
    async fn reports(
        &self,
        status: ReportStatus,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Report>, StoreError> {
        delegate!(self, s => s.reports(status, before, limit).await)
    }
    async fn report(&self, id: i64) -> Result<Option<Report>, StoreError> {
        delegate!(self, s => s.report(id).await)
    }
    async fn resolve_report(&self, id: i64, r: Resolution) -> Result<Resolved, StoreError> {
        delegate!(self, s => s.resolve_report(id, r).await)
    }
    async fn add_audit(&self, entry: NewAudit) -> Result<i64, StoreError> {
        delegate!(self, s => s.add_audit(entry).await)
    }
    async fn audit(&self, q: AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        delegate!(self, s => s.audit(q).await)
    }
}

/// When the next report may be filed, given the times (unix ms) of the reports in the
/// window, newest first: once the `max`-th newest leaves the window. `None`: under the
/// limit.
pub(crate) fn retry_after(newest_first: &[i64], limit: ReportLimit, now_ms: i64) -> Option<i64> {
    let max = limit.max as usize;
    if max == 0 || newest_first.len() < max {
        return None;
    }
    let leaving = newest_first[max - 1];
    Some((leaving + limit.window_ms - now_ms).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_opens_when_the_oldest_counted_report_leaves_the_window() {
        let l = ReportLimit {
            max: 2,
            window_ms: 1000,
        };
        assert_eq!(retry_after(&[], l, 5000), None);
        assert_eq!(retry_after(&[4900], l, 5000), None);
        assert_eq!(retry_after(&[4900, 4500], l, 5000), Some(500));
        assert_eq!(retry_after(&[4900, 4500, 4200], l, 5000), Some(500));
        let zero = ReportLimit { max: 0, ..l };
        assert_eq!(retry_after(&[], zero, 5000), None);
    }
}
