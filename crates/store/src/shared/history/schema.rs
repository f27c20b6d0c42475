//! The history's schema: its migrations, applied once under an advisory lock, and the
//! check that the database was made for this board's shape.

use super::*;

/// Schema versions, applied in order, each in its own transaction.
pub(super) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "placements, snapshots, state",
        "CREATE TABLE rplace_meta (
         key text PRIMARY KEY,
         value bigint NOT NULL
     );
     CREATE TABLE rplace_state (
         id int PRIMARY KEY CHECK (id = 1),
         epoch bigint NOT NULL,
         durable_seq bigint NOT NULL
     );
     INSERT INTO rplace_state (id, epoch, durable_seq) VALUES (1, 0, 0);
     CREATE TABLE placements (
         seq bigint PRIMARY KEY,
         x smallint NOT NULL,
         y smallint NOT NULL,
         color smallint NOT NULL,
         user_id bigint NOT NULL,
         ts timestamptz NOT NULL
     );
     CREATE INDEX placements_pixel ON placements (x, y, seq DESC);
     CREATE INDEX placements_ts ON placements USING brin (ts);
     CREATE TABLE board_snapshots (
         seq bigint PRIMARY KEY,
         board bytea NOT NULL,
         taken_at timestamptz NOT NULL DEFAULT now()
     );
     -- The board compresses well but is rewritten whole; skip pglz on every snapshot.
     ALTER TABLE board_snapshots ALTER COLUMN board SET STORAGE EXTERNAL;",
    ),
    (
        2,
        "u32 coordinates, tile snapshots",
        // Coordinates up to 2^22 do not fit a smallint. Rewrites the table and its pixel
        // index once (minutes for hundreds of millions of rows; instances wait on the
        // migration lock meanwhile). Whole-board snapshots give way to one row per painted
        // tile; the old ones are dropped (the next rebuild replays the log, and the next
        // snapshot writes tiles), since cutting them into tiles needs the old width.
        "ALTER TABLE placements ALTER COLUMN x TYPE integer, ALTER COLUMN y TYPE integer;
         DROP TABLE board_snapshots;
         CREATE TABLE tile_snapshots (
             tx integer NOT NULL,
             ty integer NOT NULL,
             seq bigint NOT NULL,
             version bigint NOT NULL,
             pixels bytea NOT NULL,
             taken_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (tx, ty)
         );
         ALTER TABLE rplace_state ADD COLUMN snapshot_seq bigint NOT NULL DEFAULT 0;",
    ),
];

/// The history's own migrations, then every area's, each version in its area's range
/// (accounts 100s, moderation 200s, rewrite 300s, records 400s, past 500s, templates
/// 800s, stats 900s, activity 1000s), so that areas evolve independently; a version is applied once,
/// whatever order they were added in.
const AREAS: &[&[(i32, &str, &str)]] = &[
    MIGRATIONS,
    crate::shared::accounts::MIGRATIONS,
    crate::shared::moderation::MIGRATIONS,
    crate::shared::rewrite::MIGRATIONS,
    crate::shared::records::MIGRATIONS,
    crate::shared::templates::MIGRATIONS,
    crate::shared::stats::MIGRATIONS,
    past::MIGRATIONS,
    crate::shared::activity::MIGRATIONS,
];

pub(super) async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    let res = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version int PRIMARY KEY,
                     name text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 )",
            )
            .await
            .map_err(pg)?;
        let applied: Vec<i32> = client
            .query("SELECT version FROM schema_migrations", &[])
            .await
            .map_err(pg)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for (version, name, sql) in AREAS
            .iter()
            .flat_map(|a| a.iter())
            .filter(|m| !applied.contains(&m.0))
        {
            let tx = client.transaction().await.map_err(pg)?;
            tx.batch_execute(sql).await.map_err(|e| {
                tracing::error!(version, name, error = %crate::Chain(&e), "migration failed");
                pg(e)
            })?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            tracing::info!(version, name, "applied PostgreSQL migration");
        }
        Ok(())
    }
    .await;
    // The lock is also released when the session ends, which follows right after.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    res
}

/// Records the canvas's shape on first use and refuses a database made for another bit
/// depth. The size only grows: a larger one than recorded is recorded, a smaller one
/// keeps the recorded size (read it with [`History::dims`]).
pub(super) async fn check_shape(
    client: &tokio_postgres::Client,
    dims: Dimensions,
    depth: Depth,
    shown: &str,
) -> Result<(), StoreError> {
    let want = [
        ("width", dims.width() as i64),
        ("height", dims.height() as i64),
        ("bits_per_pixel", depth.bits() as i64),
    ];
    for (key, value) in want {
        client
            .execute(
                "INSERT INTO rplace_meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = GREATEST(rplace_meta.value, excluded.value)
                 WHERE rplace_meta.key <> 'bits_per_pixel'",
                &[&key, &value],
            )
            .await
            .map_err(pg)?;
    }
    let have: i64 = client
        .query_one(
            "SELECT value FROM rplace_meta WHERE key = 'bits_per_pixel'",
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    if have != depth.bits() as i64 {
        return Err(StoreError::Config(format!(
            "the PostgreSQL database {shown} holds a board with bits_per_pixel = {have}, but \
             this start asks for {}; start with the same palette depth, or use another \
             database",
            depth.bits()
        )));
    }
    Ok(())
}
