//! The shared backend's part of [`crate::stats`]: the counts in PostgreSQL, which every
//! instance shares (any of them may catch up; the watermark row, locked `FOR UPDATE`,
//! lets one page be counted once), and presence in one Redis hash, `instance -> "<n>
//! <expires>"` with Redis's own clock, so instances' clocks need not agree.

use super::SharedStore;
use super::history::{History, pg};
use crate::stats::{LEADERBOARD_MAX, Listing, Ranked, Stats, Tally, Totals, UserTotals};
use crate::{BackendError, Service, StoreError};
use rplace_domain::{Seq, UserId};
use std::sync::LazyLock;

/// This area's PostgreSQL migrations: versions 900 to 999 (see `history::schema::migrate`).
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[(
    900,
    "placement counts per color and user, leaderboard opt-ins",
    "CREATE TABLE stats_state (
         id int PRIMARY KEY CHECK (id = 1),
         through bigint NOT NULL
     );
     INSERT INTO stats_state (id, through) VALUES (1, 0);
     CREATE TABLE stats_colors (color smallint PRIMARY KEY, n bigint NOT NULL);
     CREATE TABLE stats_users (
         user_id bigint PRIMARY KEY,
         n bigint NOT NULL,
         last_ms bigint NOT NULL
     );
     CREATE TABLE stats_listed (account bigint PRIMARY KEY REFERENCES accounts (id));",
)];

/// Publishes one instance's number and sums the live ones, forgetting the expired
/// (KEYS[1] the hash; ARGV instance, connections, ttl ms). The hash holds one field per
/// running instance.
static PRESENCE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. (now + ttl))
local all = redis.call('HGETALL', KEYS[1])
local sum = 0
for i = 1, #all, 2 do
  local n, exp = string.match(all[i + 1], '^(%d+) (%d+)$')
  if n and tonumber(exp) > now then
    sum = sum + tonumber(n)
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
return sum
",
    )
});

impl Stats for SharedStore {
    async fn stats_through(&self) -> Result<Seq, StoreError> {
        self.inner.history.watermark("stats_state").await
    }

    async fn stats_apply(&self, t: Tally) -> Result<bool, StoreError> {
        let h = &self.inner.history;
        h.bounded(async {
            let mut client = h.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            if !History::watermark_still(&tx, "stats_state", t.after).await? {
                return Ok(false);
            }
            let (colors, counts): (Vec<i16>, Vec<i64>) = t
                .colors
                .iter()
                .map(|(c, n)| (i16::from(*c), *n as i64))
                .unzip();
            tx.execute(
                "INSERT INTO stats_colors (color, n)
                 SELECT * FROM unnest($1::smallint[], $2::bigint[])
                 ON CONFLICT (color) DO UPDATE SET n = stats_colors.n + excluded.n",
                &[&colors, &counts],
            )
            .await
            .map_err(pg)?;
            let mut users = Vec::with_capacity(t.users.len());
            let mut counts = Vec::with_capacity(t.users.len());
            let mut lasts = Vec::with_capacity(t.users.len());
            for (u, (n, last)) in &t.users {
                users.push(u.0 as i64);
                counts.push(*n as i64);
                lasts.push(*last);
            }
            tx.execute(
                "INSERT INTO stats_users (user_id, n, last_ms)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])
                 ON CONFLICT (user_id) DO UPDATE SET n = stats_users.n + excluded.n,
                     last_ms = greatest(stats_users.last_ms, excluded.last_ms)",
                &[&users, &counts, &lasts],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                "UPDATE stats_state SET through = $1 WHERE id = 1",
                &[&(t.through.0 as i64)],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(true)
        })
        .await
    }

    async fn stats_totals(&self) -> Result<Totals, StoreError> {
        let h = &self.inner.history;
        h.bounded(async {
            let mut client = h.client().await?;
            // One snapshot: the counts and the watermark agree.
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(pg)?;
            let through: i64 = tx
                .query_one("SELECT through FROM stats_state WHERE id = 1", &[])
                .await
                .map_err(pg)?
                .get(0);
            let colors: Vec<(u8, u64)> = tx
                .query("SELECT color, n FROM stats_colors ORDER BY color", &[])
                .await
                .map_err(pg)?
                .iter()
                .map(|r| (r.get::<_, i16>(0) as u8, r.get::<_, i64>(1) as u64))
                .collect();
            let placers: i64 = tx
                .query_one("SELECT count(*) FROM stats_users", &[])
                .await
                .map_err(pg)?
                .get(0);
            tx.commit().await.map_err(pg)?;
            Ok(Totals {
                through: Seq(through as u64),
                placements: colors.iter().map(|(_, n)| n).sum(),
                colors,
                placers: placers as u64,
            })
        })
        .await
    }

    async fn user_totals(&self, user: UserId) -> Result<UserTotals, StoreError> {
        let h = &self.inner.history;
        h.bounded(async {
            let row = h
                .client()
                .await?
                .query_one(
                    "SELECT (SELECT n FROM stats_users WHERE user_id = $1),
                            (SELECT last_ms FROM stats_users WHERE user_id = $1),
                            EXISTS (SELECT 1 FROM stats_listed l
                                JOIN accounts a ON a.id = l.account WHERE a.user_id = $1)",
                    &[&(user.0 as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(UserTotals {
                placements: row.get::<_, Option<i64>>(0).unwrap_or(0) as u64,
                last_ms: row.get(1),
                listed: row.get(2),
            })
        })
        .await
    }

    async fn leaderboard(&self, limit: usize) -> Result<Vec<Ranked>, StoreError> {
        let limit = limit.min(LEADERBOARD_MAX) as i64;
        let h = &self.inner.history;
        h.bounded(async {
            let rows = h
                .client()
                .await?
                .query(
                    "SELECT a.name, s.n FROM stats_listed l
                     JOIN accounts a ON a.id = l.account
                     JOIN stats_users s ON s.user_id = a.user_id
                     WHERE a.name IS NOT NULL
                     ORDER BY s.n DESC, a.name_key LIMIT $1",
                    &[&limit],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| Ranked {
                    name: r.get(0),
                    placements: r.get::<_, i64>(1) as u64,
                })
                .collect())
        })
        .await
    }

    async fn set_listed(&self, account: i64, listed: bool) -> Result<Listing, StoreError> {
        let h = &self.inner.history;
        h.bounded(async {
            let client = h.client().await?;
            let exists: bool = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)",
                    &[&account],
                )
                .await
                .map_err(pg)?
                .get(0);
            if !exists {
                return Ok(Listing::NoAccount);
            }
            let sql = if listed {
                "INSERT INTO stats_listed (account) VALUES ($1) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM stats_listed WHERE account = $1"
            };
            client.execute(sql, &[&account]).await.map_err(pg)?;
            Ok(Listing::Set)
        })
        .await
    }

    async fn presence(
        &self,
        instance: u64,
        connections: u64,
        ttl_ms: u64,
    ) -> Result<u64, StoreError> {
        let live = &self.inner.live;
        let mut conn = live.conn.clone();
        let mut call = PRESENCE.prepare_invoke();
        call.key(&live.keys.presence)
            .arg(instance)
            .arg(connections)
            .arg(ttl_ms);
        match tokio::time::timeout(
            self.inner.cfg.redis_timeout,
            call.invoke_async::<u64>(&mut conn),
        )
        .await
        {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(BackendError::Redis(e).into()),
            Err(_) => Err(BackendError::Timeout(Service::Redis).into()),
        }
    }
}
