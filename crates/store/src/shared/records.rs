//! The shared backend's part of [`crate::records`].

/// This area's PostgreSQL migrations: versions 400 to 499 (see
/// `history::schema::migrate`).
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[];
