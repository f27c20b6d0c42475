//! The embedded backend's part of [`crate::rewrite`].

/// This area's SQLite migrations: versions 300 to 399, recorded in
/// `schema_migrations` (see `schema::migrate_areas`).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[];
