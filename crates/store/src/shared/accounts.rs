//! The shared backend's part of [`crate::accounts`]: accounts, links and sessions in
//! PostgreSQL (every instance reads the same rows); the cooldown carry-over in Redis,
//! where the cooldowns live.

use super::*;
use crate::accounts::{
    Account, Accounts, LINKED_LIMIT, LoggedIn, Login, MODERATORS_LIMIT, NameSet,
    SESSIONS_PER_ACCOUNT, SessionHash,
};
use crate::{BackendError, StoreError};
use rplace_domain::UserId;

/// This area's PostgreSQL migrations: versions 100 to 199 (see
/// `history::schema::migrate`).
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[(
    100,
    "accounts, linked identities, sessions",
    "CREATE TABLE accounts (
         id bigserial PRIMARY KEY,
         user_id bigint NOT NULL UNIQUE,
         provider text NOT NULL,
         subject text NOT NULL,
         email text,
         email_verified boolean NOT NULL DEFAULT false,
         name text,
         name_key text UNIQUE,
         moderator boolean NOT NULL DEFAULT false,
         created_ms bigint NOT NULL,
         last_login_ms bigint NOT NULL,
         UNIQUE (provider, subject)
     );
     CREATE INDEX accounts_moderators ON accounts (id) WHERE moderator;
     CREATE TABLE account_links (
         user_id bigint PRIMARY KEY,
         account bigint NOT NULL REFERENCES accounts (id),
         linked_ms bigint NOT NULL
     );
     CREATE INDEX account_links_account ON account_links (account);
     CREATE TABLE sessions (
         token_hash bytea PRIMARY KEY,
         account bigint NOT NULL REFERENCES accounts (id),
         created_ms bigint NOT NULL,
         expires_ms bigint NOT NULL
     );
     CREATE INDEX sessions_account ON sessions (account, created_ms);
     CREATE INDEX sessions_expiry ON sessions (expires_ms);",
)];

const COLUMNS: &str = "a.id, a.user_id, a.provider, a.subject, a.email, a.email_verified, a.name, \
                       a.moderator, a.created_ms, a.last_login_ms";

fn pg(e: tokio_postgres::Error) -> StoreError {
    BackendError::Postgres(e).into()
}

fn row_to_account(r: &tokio_postgres::Row) -> Account {
    Account {
        id: r.get(0),
        user: UserId(r.get::<_, i64>(1) as u64),
        provider: r.get(2),
        subject: r.get(3),
        email: r.get(4),
        email_verified: r.get(5),
        name: r.get(6),
        moderator: r.get(7),
        created_ms: r.get(8),
        last_login_ms: r.get(9),
    }
}

/// Copies the `from` cooldown key onto `to` (value and remaining lifetime) unless `to`'s
/// last placement is as late already.
const CARRY_COOLDOWN: &str = r"
local from = redis.call('GET', KEYS[1])
if not from then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return 0 end
local to = redis.call('GET', KEYS[2])
if to and tonumber(to) >= tonumber(from) then return 0 end
redis.call('SET', KEYS[2], from, 'PX', ttl)
return 1
";

impl Accounts for SharedStore {
    async fn login(&self, l: Login) -> Result<LoggedIn, StoreError> {
        let h = &self.inner.history;
        h.bounded(async {
            let mut client = h.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            // Logins of one device (or one account) are decided one after the other.
            tx.execute("LOCK TABLE account_links IN SHARE ROW EXCLUSIVE MODE", &[])
                .await
                .map_err(pg)?;
            let existing: Option<i64> = tx
                .query_opt(
                    "SELECT id FROM accounts WHERE provider = $1 AND subject = $2",
                    &[&l.provider, &l.subject],
                )
                .await
                .map_err(pg)?
                .map(|r| r.get(0));
            let device = match l.device {
                Some(d) => {
                    let taken: bool = tx
                        .query_one(
                            "SELECT EXISTS (SELECT 1 FROM accounts WHERE user_id = $1)
                                 OR EXISTS (SELECT 1 FROM account_links WHERE user_id = $1)",
                            &[&(d.0 as i64)],
                        )
                        .await
                        .map_err(pg)?
                        .get(0);
                    (!taken).then_some(d)
                }
                None => None,
            };
            let (id, created) = match existing {
                Some(id) => {
                    tx.execute(
                        "UPDATE accounts SET email = $2, email_verified = $3, last_login_ms = $4
                         WHERE id = $1",
                        &[&id, &l.email, &l.email_verified, &l.now_ms],
                    )
                    .await
                    .map_err(pg)?;
                    if let Some(d) = device {
                        tx.execute(
                            "INSERT INTO account_links (user_id, account, linked_ms)
                             VALUES ($1, $2, $3)",
                            &[&(d.0 as i64), &id, &l.now_ms],
                        )
                        .await
                        .map_err(pg)?;
                    }
                    (id, false)
                }
                None => {
                    let user = device.unwrap_or(l.fresh);
                    let id: i64 = tx
                        .query_one(
                            "INSERT INTO accounts (user_id, provider, subject, email,
                                                   email_verified, created_ms, last_login_ms)
                             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
                            &[
                                &(user.0 as i64),
                                &l.provider,
                                &l.subject,
                                &l.email,
                                &l.email_verified,
                                &l.now_ms,
                            ],
                        )
                        .await
                        .map_err(pg)?
                        .get(0);
                    (id, true)
                }
            };
            let row = tx
                .query_one(
                    &format!("SELECT {COLUMNS} FROM accounts a WHERE a.id = $1"),
                    &[&id],
                )
                .await
                .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(LoggedIn {
                account: row_to_account(&row),
                created,
                linked: device,
            })
        })
        .await
    }

    async fn account_of(&self, user: UserId) -> Result<Option<Account>, StoreError> {
        let h = &self.inner.history;
        h.bounded(async {
            let client = h.client().await?;
            let row = client
                .query_opt(
                    &format!(
                        "SELECT {COLUMNS} FROM accounts a WHERE a.user_id = $1
                         UNION ALL
                         SELECT {COLUMNS} FROM account_links l
                         JOIN accounts a ON a.id = l.account WHERE l.user_id = $1
                         LIMIT 1"
                    ),
                    &[&(user.0 as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(row.as_ref().map(row_to_account))
        })
        .await
    }

    async fn linked(&self, id: i64) -> Result<Vec<UserId>, StoreError> {
        let h = &self.inner.history;
        h.bounded(async {
            let client = h.client().await?;
            let rows = client
                .query(
                    "SELECT user_id FROM account_links WHERE account = $1
                     ORDER BY linked_ms LIMIT $2",
                    &[&id, &(LINKED_LIMIT as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| UserId(r.get::<_, i64>(0) as u64))
                .collect())
        })
        .await
    }

    async fn set_name(&self, id: i64, name: &str, key: &str) -> Result<NameSet, StoreError> {
        let h = &self.inner.history;
        h.bounded(async {
            let client = h.client().await?;
            match client
                .execute(
                    "UPDATE accounts SET name = $2, name_key = $3 WHERE id = $1",
                    &[&id, &name, &key],
                )
                .await
            {
                Ok(0) => Ok(NameSet::NoAccount),
                Ok(_) => Ok(NameSet::Set),
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    Ok(NameSet::Taken)
                }
                Err(e) => Err(pg(e)),
            }
        })
        .await
    }

    async fn set_moderator(&self, id: i64, moderator: bool) -> Result<bool, StoreError> {
        let h = &self.inner.history;
        h.bounded(async {
            let client = h.client().await?;
            let n = client
                .execute(
                    "UPDATE accounts SET moderator = $2 WHERE id = $1",
                    &[&id, &moderator],
                )
                .await
                .map_err(pg)?;
            Ok(n > 0)
        })
        .await
    }

    async fn moderators(&self) -> Result<Vec<Account>, StoreError> {
        let h = &self.inner.history;
        h.bounded(async {
            let client = h.client().await?;
            let rows = client
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM accounts a WHERE a.moderator ORDER BY a.id LIMIT $1"
                    ),
                    &[&(MODERATORS_LIMIT as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(rows.iter().map(row_to_account).collect())
        })
        .await
    }

    async fn create_session(
        &self,
        hash: SessionHash,
        id: i64,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        let h = &self.inner.history;
        h.bounded(async {
            let mut client = h.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            tx.execute("DELETE FROM sessions WHERE expires_ms <= $1", &[&now_ms])
                .await
                .map_err(pg)?;
            tx.execute(
                "INSERT INTO sessions (token_hash, account, created_ms, expires_ms)
                 VALUES ($1, $2, $3, $4)",
                &[&&hash.0[..], &id, &now_ms, &expires_ms],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                "DELETE FROM sessions WHERE account = $1 AND token_hash NOT IN (
                     SELECT token_hash FROM sessions WHERE account = $1
                     ORDER BY created_ms DESC LIMIT $2)",
                &[&id, &(SESSIONS_PER_ACCOUNT as i64)],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)
        })
        .await
    }

    async fn session(&self, hash: SessionHash, now_ms: i64) -> Result<Option<Account>, StoreError> {
        let h = &self.inner.history;
        h.bounded(async {
            let client = h.client().await?;
            let row = client
                .query_opt(
                    &format!(
                        "SELECT {COLUMNS} FROM sessions s JOIN accounts a ON a.id = s.account
                         WHERE s.token_hash = $1 AND s.expires_ms > $2"
                    ),
                    &[&&hash.0[..], &now_ms],
                )
                .await
                .map_err(pg)?;
            Ok(row.as_ref().map(row_to_account))
        })
        .await
    }

    async fn end_session(&self, hash: SessionHash) -> Result<(), StoreError> {
        let h = &self.inner.history;
        h.bounded(async {
            let client = h.client().await?;
            client
                .execute(
                    "DELETE FROM sessions WHERE token_hash = $1",
                    &[&&hash.0[..]],
                )
                .await
                .map_err(pg)?;
            Ok(())
        })
        .await
    }

    async fn carry_cooldown(&self, from: UserId, to: UserId) -> Result<(), StoreError> {
        let live = &self.inner.live;
        let script = redis::Script::new(CARRY_COOLDOWN);
        let mut conn = live.conn.clone();
        let mut invocation = script.prepare_invoke();
        invocation.key(live.user_key(from)).key(live.user_key(to));
        let call = invocation.invoke_async::<i64>(&mut conn);
        match tokio::time::timeout(self.inner.cfg.redis_timeout, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(BackendError::Redis(e).into()),
            Err(_) => Err(BackendError::Timeout(crate::Service::Redis).into()),
        }
    }
}
