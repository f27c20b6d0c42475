//! Bans and protected areas: `/api/admin/bans`, `/api/admin/protect`.

use crate::app::AppState;
use axum::routing::MethodRouter;

/// This area's endpoints, relative to `/api/admin`.
pub fn table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![]
}
