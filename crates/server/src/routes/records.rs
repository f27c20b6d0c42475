//! Reports and the audit log: `POST /api/reports` for everyone, `/api/admin/reports` and
//! `/api/admin/audit` for moderators.

use crate::app::AppState;
use axum::routing::MethodRouter;

/// The public endpoints (full paths).
pub fn public_table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![]
}

/// The moderators' endpoints, relative to `/api/admin`.
pub fn admin_table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![]
}
