//! The embedded backend's part of [`crate::accounts`].
//!
//! Reads use the store's reader pool; writes (logins, names, roles, sessions: rare next
//! to placements) open a connection of their own that waits for the placement writer's
//! short transactions (`busy_timeout`) instead of queueing behind it.

use super::*;
use crate::accounts::{
    Account, Accounts, LINKED_LIMIT, LoggedIn, Login, MODERATORS_LIMIT, NameSet,
    SESSIONS_PER_ACCOUNT, SessionHash,
};

/// This area's SQLite migrations: versions 100 to 199, recorded in
/// `schema_migrations` (see `schema::migrate_areas`).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[(
    100,
    "accounts, linked identities, sessions",
    "CREATE TABLE accounts (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         user INTEGER NOT NULL UNIQUE,
         provider TEXT NOT NULL,
         subject TEXT NOT NULL,
         email TEXT,
         email_verified INTEGER NOT NULL DEFAULT 0,
         name TEXT,
         name_key TEXT UNIQUE,
         moderator INTEGER NOT NULL DEFAULT 0,
         created_ms INTEGER NOT NULL,
         last_login_ms INTEGER NOT NULL,
         UNIQUE (provider, subject)
     );
     CREATE INDEX accounts_moderators ON accounts (id) WHERE moderator = 1;
     CREATE TABLE account_links (
         user INTEGER PRIMARY KEY,
         account INTEGER NOT NULL REFERENCES accounts (id),
         linked_ms INTEGER NOT NULL
     );
     CREATE INDEX account_links_account ON account_links (account);
     CREATE TABLE sessions (
         token_hash BLOB PRIMARY KEY,
         account INTEGER NOT NULL REFERENCES accounts (id),
         created_ms INTEGER NOT NULL,
         expires_ms INTEGER NOT NULL
     );
     CREATE INDEX sessions_account ON sessions (account, created_ms);
     CREATE INDEX sessions_expiry ON sessions (expires_ms)",
)];

/// How long an account write waits for the placement writer's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const COLUMNS: &str = "a.id, a.user, a.provider, a.subject, a.email, a.email_verified, a.name, \
                       a.moderator, a.created_ms, a.last_login_ms";

fn row_to_account(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: r.get(0)?,
        user: UserId(r.get::<_, i64>(1)? as u64),
        provider: r.get(2)?,
        subject: r.get(3)?,
        email: r.get(4)?,
        email_verified: r.get(5)?,
        name: r.get(6)?,
        moderator: r.get(7)?,
        created_ms: r.get(8)?,
        last_login_ms: r.get(9)?,
    })
}

fn by_id(c: &Connection, id: i64) -> Result<Option<Account>, StoreError> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM accounts a WHERE a.id = ?1"),
        [id],
        row_to_account,
    )
    .optional()
    .map_err(backend)
}

/// Whether `user` is an account's own identity or linked to one.
fn claimed(c: &Connection, user: UserId) -> Result<bool, StoreError> {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE user = ?1)
             OR EXISTS (SELECT 1 FROM account_links WHERE user = ?1)",
        [user.0 as i64],
        |r| r.get(0),
    )
    .map_err(backend)
}

impl EmbeddedStore {
    /// Runs `f` on a write connection of its own, on the blocking pool.
    async fn write_accounts<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(backend)?;
            c.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
            f(&mut c)
        })
        .await
        .map_err(|_| BackendError::Stopped("accounts task"))?
    }
}

impl Accounts for EmbeddedStore {
    async fn login(&self, l: Login) -> Result<LoggedIn, StoreError> {
        self.write_accounts(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)?;
            let existing: Option<i64> = tx
                .query_row(
                    "SELECT id FROM accounts WHERE provider = ?1 AND subject = ?2",
                    params![l.provider, l.subject],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            let device = match l.device {
                Some(d) if !claimed(&tx, d)? => Some(d),
                _ => None,
            };
            let (id, created, linked) = match existing {
                Some(id) => {
                    tx.execute(
                        "UPDATE accounts SET email = ?2, email_verified = ?3, last_login_ms = ?4
                         WHERE id = ?1",
                        params![id, l.email, l.email_verified, l.now_ms],
                    )
                    .map_err(backend)?;
                    if let Some(d) = device {
                        tx.execute(
                            "INSERT INTO account_links (user, account, linked_ms) VALUES (?1, ?2, ?3)",
                            params![d.0 as i64, id, l.now_ms],
                        )
                        .map_err(backend)?;
                    }
                    (id, false, device)
                }
                None => {
                    let user = device.unwrap_or(l.fresh);
                    tx.execute(
                        "INSERT INTO accounts (user, provider, subject, email, email_verified,
                                               created_ms, last_login_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                        params![
                            user.0 as i64,
                            l.provider,
                            l.subject,
                            l.email,
                            l.email_verified,
                            l.now_ms
                        ],
                    )
                    .map_err(backend)?;
                    (tx.last_insert_rowid(), true, device)
                }
            };
            let account = by_id(&tx, id)?.ok_or_else(|| {
                StoreError::Config("an account vanished inside its own transaction".into())
            })?;
            tx.commit().map_err(backend)?;
            Ok(LoggedIn {
                account,
                created,
                linked,
            })
        })
        .await
    }

    async fn account_of(&self, user: UserId) -> Result<Option<Account>, StoreError> {
        self.read(move |c| {
            c.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM accounts a WHERE a.user = ?1
                     UNION ALL
                     SELECT {COLUMNS} FROM account_links l JOIN accounts a ON a.id = l.account
                     WHERE l.user = ?1
                     LIMIT 1"
                ),
                [user.0 as i64],
                row_to_account,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn linked(&self, id: i64) -> Result<Vec<UserId>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT user FROM account_links WHERE account = ?1 ORDER BY linked_ms LIMIT ?2",
                )
                .map_err(backend)?;
            stmt.query_map(params![id, LINKED_LIMIT as i64], |r| {
                Ok(UserId(r.get::<_, i64>(0)? as u64))
            })
            .and_then(|rows| rows.collect())
            .map_err(backend)
        })
        .await
    }

    async fn set_name(&self, id: i64, name: &str, key: &str) -> Result<NameSet, StoreError> {
        let (name, key) = (name.to_string(), key.to_string());
        self.write_accounts(move |c| {
            match c.execute(
                "UPDATE accounts SET name = ?2, name_key = ?3 WHERE id = ?1",
                params![id, name, key],
            ) {
                Ok(0) => Ok(NameSet::NoAccount),
                Ok(_) => Ok(NameSet::Set),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Ok(NameSet::Taken)
                }
                Err(e) => Err(backend(e)),
            }
        })
        .await
    }

    async fn set_moderator(&self, id: i64, moderator: bool) -> Result<bool, StoreError> {
        self.write_accounts(move |c| {
            c.execute(
                "UPDATE accounts SET moderator = ?2 WHERE id = ?1",
                params![id, moderator],
            )
            .map(|n| n > 0)
            .map_err(backend)
        })
        .await
    }

    async fn moderators(&self) -> Result<Vec<Account>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM accounts a WHERE a.moderator = 1 ORDER BY a.id LIMIT ?1"
                ))
                .map_err(backend)?;
            stmt.query_map([MODERATORS_LIMIT as i64], row_to_account)
                .and_then(|rows| rows.collect())
                .map_err(backend)
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
        self.write_accounts(move |c| {
            let tx = c.transaction().map_err(backend)?;
            tx.execute("DELETE FROM sessions WHERE expires_ms <= ?1", [now_ms])
                .map_err(backend)?;
            tx.execute(
                "INSERT INTO sessions (token_hash, account, created_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![&hash.0[..], id, now_ms, expires_ms],
            )
            .map_err(backend)?;
            tx.execute(
                "DELETE FROM sessions WHERE account = ?1 AND token_hash NOT IN (
                     SELECT token_hash FROM sessions WHERE account = ?1
                     ORDER BY created_ms DESC LIMIT ?2)",
                params![id, SESSIONS_PER_ACCOUNT as i64],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn session(&self, hash: SessionHash, now_ms: i64) -> Result<Option<Account>, StoreError> {
        self.read(move |c| {
            c.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM sessions s JOIN accounts a ON a.id = s.account
                     WHERE s.token_hash = ?1 AND s.expires_ms > ?2"
                ),
                params![&hash.0[..], now_ms],
                row_to_account,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn end_session(&self, hash: SessionHash) -> Result<(), StoreError> {
        self.write_accounts(move |c| {
            c.execute("DELETE FROM sessions WHERE token_hash = ?1", [&hash.0[..]])
                .map(|_| ())
                .map_err(backend)
        })
        .await
    }

    async fn carry_cooldown(&self, from: UserId, to: UserId) -> Result<(), StoreError> {
        // The cooldowns live in the writer's state; a placement of `to` committed at the
        // same moment only makes its last placement later, which is what we want.
        let mut st = self.state.lock().expect("state lock");
        if let Some(&last) = st.last_placed.get(&from) {
            let slot = st.last_placed.entry(to).or_insert(last);
            *slot = (*slot).max(last);
        }
        // A charges pool carries the same way: the later arrival time is the emptier pool.
        if let Some(&tat) = st.charge_tats.get(&from) {
            let slot = st.charge_tats.entry(to).or_insert(tat);
            *slot = (*slot).max(tat);
        }
        Ok(())
    }
}
