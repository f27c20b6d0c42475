//! The embedded backend's part of [`crate::stats`]: the counts in SQLite tables of their
//! own, read on the reader pool, added in one short immediate transaction per page on a
//! connection of its own (as records are), so the placement writer waits at most that
//! long. Presence is this one process's number.

use super::*;
use crate::stats::{
    LEADERBOARD_MAX, Listing, Ranked, STATS_PAGE, Stats, Tally, Totals, UserTotals,
};

/// This area's SQLite migrations: versions 900 to 999, recorded in `schema_migrations`
/// (see `schema::migrate_areas`).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[(
    900,
    "placement counts per color and user, leaderboard opt-ins",
    "CREATE TABLE stats_state (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         through INTEGER NOT NULL
     );
     INSERT INTO stats_state (id, through) VALUES (1, 0);
     CREATE TABLE stats_colors (color INTEGER PRIMARY KEY, n INTEGER NOT NULL);
     CREATE TABLE stats_users (
         user INTEGER PRIMARY KEY,
         n INTEGER NOT NULL,
         last_ms INTEGER NOT NULL
     );
     CREATE TABLE stats_listed (account INTEGER PRIMARY KEY);",
)];

fn through(c: &Connection) -> Result<Seq, StoreError> {
    schema::watermark(c, "stats_state")
}

impl Stats for EmbeddedStore {
    async fn stats_through(&self) -> Result<Seq, StoreError> {
        self.read(through).await
    }

    async fn stats_apply(&self, t: Tally) -> Result<bool, StoreError> {
        debug_assert!(t.users.len() <= STATS_PAGE);
        self.side_write(move |tx| {
            if through(tx)? != t.after {
                return Ok(false);
            }
            {
                let mut color = tx
                    .prepare_cached(
                        "INSERT INTO stats_colors (color, n) VALUES (?1, ?2)
                         ON CONFLICT (color) DO UPDATE SET n = n + excluded.n",
                    )
                    .map_err(backend)?;
                for (c, n) in &t.colors {
                    color.execute(params![c, *n as i64]).map_err(backend)?;
                }
                let mut user = tx
                    .prepare_cached(
                        "INSERT INTO stats_users (user, n, last_ms) VALUES (?1, ?2, ?3)
                         ON CONFLICT (user) DO UPDATE SET n = n + excluded.n,
                             last_ms = max(last_ms, excluded.last_ms)",
                    )
                    .map_err(backend)?;
                for (u, (n, last)) in &t.users {
                    user.execute(params![u.0 as i64, *n as i64, last])
                        .map_err(backend)?;
                }
            }
            tx.execute(
                "UPDATE stats_state SET through = ?1 WHERE id = 1",
                [t.through.0 as i64],
            )
            .map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn stats_totals(&self) -> Result<Totals, StoreError> {
        self.read(|c| {
            // One read transaction: the counts and the watermark agree.
            c.execute_batch("BEGIN").map_err(backend)?;
            let out = (|| {
                let through = through(c)?;
                let mut stmt = c
                    .prepare_cached("SELECT color, n FROM stats_colors ORDER BY color")
                    .map_err(backend)?;
                let colors: Vec<(u8, u64)> = stmt
                    .query_map([], |r| {
                        Ok((r.get::<_, i64>(0)? as u8, r.get::<_, i64>(1)? as u64))
                    })
                    .and_then(|rows| rows.collect())
                    .map_err(backend)?;
                let placers: i64 = c
                    .query_row("SELECT count(*) FROM stats_users", [], |r| r.get(0))
                    .map_err(backend)?;
                Ok(Totals {
                    through,
                    placements: colors.iter().map(|(_, n)| n).sum(),
                    colors,
                    placers: placers as u64,
                })
            })();
            c.execute_batch("COMMIT").map_err(backend)?;
            out
        })
        .await
    }

    async fn user_totals(&self, user: UserId) -> Result<UserTotals, StoreError> {
        self.read(move |c| {
            let counts: Option<(i64, i64)> = c
                .query_row(
                    "SELECT n, last_ms FROM stats_users WHERE user = ?1",
                    [user.0 as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            let listed: bool = c
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM stats_listed l
                         JOIN accounts a ON a.id = l.account WHERE a.user = ?1)",
                    [user.0 as i64],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            Ok(UserTotals {
                placements: counts.map_or(0, |(n, _)| n as u64),
                last_ms: counts.map(|(_, l)| l),
                listed,
            })
        })
        .await
    }

    async fn leaderboard(&self, limit: usize) -> Result<Vec<Ranked>, StoreError> {
        let limit = limit.min(LEADERBOARD_MAX) as i64;
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT a.name, s.n FROM stats_listed l
                     JOIN accounts a ON a.id = l.account
                     JOIN stats_users s ON s.user = a.user
                     WHERE a.name IS NOT NULL
                     ORDER BY s.n DESC, a.name_key LIMIT ?1",
                )
                .map_err(backend)?;
            stmt.query_map([limit], |r| {
                Ok(Ranked {
                    name: r.get(0)?,
                    placements: r.get::<_, i64>(1)? as u64,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(backend)
        })
        .await
    }

    async fn set_listed(&self, account: i64, listed: bool) -> Result<Listing, StoreError> {
        self.side_write(move |tx| {
            let exists: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?1)",
                    [account],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if !exists {
                return Ok(Listing::NoAccount);
            }
            let sql = if listed {
                "INSERT OR IGNORE INTO stats_listed (account) VALUES (?1)"
            } else {
                "DELETE FROM stats_listed WHERE account = ?1"
            };
            tx.execute(sql, [account]).map_err(backend)?;
            Ok(Listing::Set)
        })
        .await
    }

    async fn presence(
        &self,
        _instance: u64,
        connections: u64,
        _ttl_ms: u64,
    ) -> Result<u64, StoreError> {
        // One process holds every connection of an embedded canvas.
        Ok(connections)
    }
}
