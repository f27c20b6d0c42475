//! The embedded backend's part of [`crate::moderation`].

/// This area's SQLite migrations: versions 200 to 299, recorded in
/// `schema_migrations` (see `schema::migrate_areas`).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[(
    200,
    "spent one-time proofs",
    // A proof spent by an accepted placement, written in the placement's transaction, so
    // that a restart does not allow a replay; pruned once expired.
    "CREATE TABLE spent_once (
         token BLOB PRIMARY KEY,
         expires_at INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX spent_once_expires ON spent_once (expires_at);",
)];
