//! The embedded backend's part of [`crate::records`].

/// This area's SQLite migrations: versions 400 to 499, recorded in
/// `schema_migrations` (see `schema::migrate_areas`).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[];
