//! The shared backend's part of [`crate::moderation`].

/// This area's PostgreSQL migrations: versions 200 to 299 (see
/// `history::schema::migrate`).
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[];
