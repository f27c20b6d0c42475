//! The embedded backend's part of [`crate::moderation`].

/// This area's SQLite migrations: versions 200 to 299, recorded in
/// `schema_migrations` (see `schema::migrate_areas`).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[];
