//! The challenge endpoints.

use crate::app::AppState;
use axum::routing::MethodRouter;

/// The public endpoints (full paths).
pub fn public_table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![]
}
