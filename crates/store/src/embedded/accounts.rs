//! The embedded backend's part of [`crate::accounts`].

/// This area's SQLite migrations: versions 100 to 199, recorded in
/// `schema_migrations` (see `schema::migrate_areas`).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[];
