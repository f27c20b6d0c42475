//! The shared backend's part of [`crate::accounts`].

/// This area's PostgreSQL migrations: versions 100 to 199 (see
/// `history::schema::migrate`).
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[];
