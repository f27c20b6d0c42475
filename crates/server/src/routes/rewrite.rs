//! Moderation changes made of many placements: `/api/admin/rollback`, `/api/admin/restore`, `/api/admin/fill`, `/api/admin/stamp`.

use crate::app::AppState;
use axum::routing::MethodRouter;

/// This area's endpoints, relative to `/api/admin`.
pub fn table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![]
}
