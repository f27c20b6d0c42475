//! Login, logout, the account's own settings, and role management.

use crate::app::AppState;
use axum::routing::MethodRouter;

/// The public endpoints (full paths): login, callback, logout, the account.
pub fn public_table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![]
}

/// Role management, relative to `/api/admin` (admins only).
pub fn admin_table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![]
}
