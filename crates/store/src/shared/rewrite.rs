//! The shared backend's part of [`crate::rewrite`].

/// This area's PostgreSQL migrations: versions 300 to 399 (see
/// `history::schema::migrate`).
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[];
