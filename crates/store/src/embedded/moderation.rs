//! The embedded backend's part of [`crate::moderation`].
//!
//! The writer thread holds the bans and protected areas in force in memory ([`Active`])
//! and applies moderation commands ([`ModCmd`]) in order with placements: a command is
//! committed to SQLite, then applied to memory, then answered, all between two batches
//! of placements. So every placement decided after the answer sees it, and none before.

use super::*;
use crate::moderation::{
    Ban, BanTarget, Banned, MAX_ACTIVE_BANS, MAX_PROTECTED, Moderation, ModerationError, NewBan,
    NewProtected, Protected, target_columns, target_from_columns,
};
use rplace_domain::Rect;
use rplace_domain::policy::{BanRef, applying_ban, net_key};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// This area's SQLite migrations: versions 200 to 299, recorded in
/// `schema_migrations` (see `schema::migrate_areas`).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        200,
        "spent one-time proofs",
        // A proof spent by an accepted placement, written in the placement's transaction,
        // so that a restart does not allow a replay; pruned once expired.
        "CREATE TABLE spent_once (
             token BLOB PRIMARY KEY,
             expires_at INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE INDEX spent_once_expires ON spent_once (expires_at);",
    ),
    (
        201,
        "bans and protected areas",
        // AUTOINCREMENT: an id once shown to a moderator never names another ban or area.
        "CREATE TABLE bans (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             kind TEXT NOT NULL,
             user INTEGER,
             covers TEXT NOT NULL,
             reason TEXT NOT NULL,
             until INTEGER,
             by INTEGER NOT NULL,
             at INTEGER NOT NULL,
             lifted_at INTEGER,
             lifted_by INTEGER
         );
         CREATE TABLE protected (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             x INTEGER NOT NULL,
             y INTEGER NOT NULL,
             w INTEGER NOT NULL,
             h INTEGER NOT NULL,
             reason TEXT,
             by INTEGER NOT NULL,
             at INTEGER NOT NULL
         );",
    ),
];

/// A moderation change for the writer to apply in order with placements.
pub(super) enum ModCmd {
    Ban(NewBan, oneshot::Sender<Result<Banned, ModerationError>>),
    Unban(
        u64,
        UserId,
        oneshot::Sender<Result<Option<Ban>, ModerationError>>,
    ),
    Protect(
        NewProtected,
        oneshot::Sender<Result<Protected, ModerationError>>,
    ),
    Unprotect(
        u64,
        oneshot::Sender<Result<Option<Protected>, ModerationError>>,
    ),
}

/// The bans and protected areas in force, as the writer decides placements by them.
#[derive(Debug, Default)]
pub(super) struct Active {
    /// Every ban held, by id (for lifting and for its reason).
    bans: HashMap<u64, Ban>,
    /// Bans per covered identity.
    users: HashMap<UserId, Vec<BanRef>>,
    /// Bans per network, by the domain's `net_key`.
    nets: HashMap<String, Vec<BanRef>>,
    /// Network lengths in use (IPv4?, bits) and how many bans have each.
    lens: BTreeMap<(bool, u8), usize>,
    /// Protected areas, oldest first.
    protected: Vec<Protected>,
}

impl Active {
    /// The bans and areas in force, from the database.
    pub(super) fn load(conn: &Connection, now_ms: i64) -> Result<Self, StoreError> {
        let mut active = Active::default();
        for ban in select_bans(
            conn,
            "WHERE lifted_at IS NULL AND (until IS NULL OR until > ?1) ORDER BY id",
            now_ms,
            i64::MAX,
        )? {
            active.add_ban(ban);
        }
        active.protected = select_protected(conn)?;
        Ok(active)
    }

    fn add_ban(&mut self, ban: Ban) {
        let r = BanRef::new(ban.id, ban.until_ms);
        match &ban.target {
            BanTarget::User { identities, .. } => {
                for u in identities {
                    self.users.entry(*u).or_default().push(r);
                }
            }
            BanTarget::Net(n) => {
                self.nets.entry(n.key()).or_default().push(r);
                *self.lens.entry((n.addr().is_ipv4(), n.bits())).or_default() += 1;
            }
        }
        self.bans.insert(ban.id, ban);
    }

    fn remove_ban(&mut self, id: u64) -> Option<Ban> {
        let ban = self.bans.remove(&id)?;
        let drop_ref = |v: &mut Vec<BanRef>| v.retain(|b| b.id() != id);
        match &ban.target {
            BanTarget::User { identities, .. } => {
                for u in identities {
                    if let Some(v) = self.users.get_mut(u) {
                        drop_ref(v);
                        if v.is_empty() {
                            self.users.remove(u);
                        }
                    }
                }
            }
            BanTarget::Net(n) => {
                let key = n.key();
                if let Some(v) = self.nets.get_mut(&key) {
                    drop_ref(v);
                    if v.is_empty() {
                        self.nets.remove(&key);
                    }
                }
                let len = (n.addr().is_ipv4(), n.bits());
                if let Some(c) = self.lens.get_mut(&len) {
                    *c -= 1;
                    if *c == 0 {
                        self.lens.remove(&len);
                    }
                }
            }
        }
        Some(ban)
    }

    /// Forgets bans that are over, so that they neither count against the limit nor cost
    /// lookups.
    fn prune(&mut self, now_ms: i64) {
        let over: Vec<u64> = self
            .bans
            .values()
            .filter(|b| !b.is_active_at(now_ms))
            .map(|b| b.id)
            .collect();
        for id in over {
            self.remove_ban(id);
        }
    }

    /// The ban that applies to `user` placing from `ip` (see the domain's
    /// `applying_ban`). No network bans: one map lookup.
    pub(super) fn ban_for(&self, user: UserId, ip: IpAddr, now: Now) -> Option<BanRef> {
        let ip = ip.to_canonical();
        let mut all: Vec<BanRef> = self.users.get(&user).cloned().unwrap_or_default();
        for &(v4, bits) in self.lens.keys() {
            if v4 == ip.is_ipv4()
                && let Some(v) = self.nets.get(&net_key(ip, bits))
            {
                all.extend_from_slice(v);
            }
        }
        if all.is_empty() {
            return None;
        }
        applying_ban(all, now)
    }

    /// The reason of ban `id`, if it is held.
    pub(super) fn reason(&self, id: u64) -> Option<&str> {
        self.bans.get(&id).map(|b| b.reason.as_str())
    }

    /// Whether `coord` lies in a protected area: one comparison per area.
    pub(super) fn is_protected(&self, coord: Coord) -> bool {
        self.protected.iter().any(|p| p.rect.contains(coord))
    }
}

fn row_to_ban(r: &rusqlite::Row) -> rusqlite::Result<Option<Ban>> {
    let kind: String = r.get(1)?;
    let user: Option<i64> = r.get(2)?;
    let covers: String = r.get(3)?;
    let Some(target) = target_from_columns(&kind, user, &covers) else {
        return Ok(None);
    };
    Ok(Some(Ban {
        id: r.get::<_, i64>(0)? as u64,
        target,
        reason: r.get(4)?,
        until_ms: r.get(5)?,
        by: UserId(r.get::<_, i64>(6)? as u64),
        at_ms: r.get(7)?,
        lifted_at_ms: r.get(8)?,
        lifted_by: r.get::<_, Option<i64>>(9)?.map(|u| UserId(u as u64)),
    }))
}

const BAN_COLUMNS: &str = "id, kind, user, covers, reason, until, by, at, lifted_at, lifted_by";

/// Bans matching `filter` (which may use `?1` for now and must order them), at most `limit`.
fn select_bans(
    conn: &Connection,
    filter: &str,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<Ban>, StoreError> {
    let mut stmt = conn
        .prepare(&format!("SELECT {BAN_COLUMNS} FROM bans {filter} LIMIT ?2"))
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![now_ms, limit], row_to_ban)
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(backend)?;
    Ok(rows.into_iter().flatten().collect())
}

fn select_protected(conn: &Connection) -> Result<Vec<Protected>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT id, x, y, w, h, reason, by, at FROM protected ORDER BY id")
        .map_err(backend)?;
    stmt.query_map([], |r| {
        Ok(Protected {
            id: r.get::<_, i64>(0)? as u64,
            rect: Rect::new_unchecked(r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
            reason: r.get(5)?,
            by: UserId(r.get::<_, i64>(6)? as u64),
            at_ms: r.get(7)?,
        })
    })
    .and_then(|rows| rows.collect())
    .map_err(backend)
}

impl Writer {
    /// What the database says of a one-time proof: until when it is spent, if it is.
    pub(super) fn spent_once(&self, token: &OnceToken) -> Result<OnceState, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT expires_at FROM spent_once WHERE token = ?1")
            .map_err(backend)?;
        let until: Option<i64> = stmt
            .query_row([&token.as_bytes()[..]], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        Ok(OnceState::new(until))
    }

    /// Applies one moderation command: SQLite first, then memory, then the answer.
    pub(super) fn moderate(&mut self, cmd: ModCmd) {
        let now = now_ms();
        match cmd {
            ModCmd::Ban(b, tx) => {
                let res = self.add_ban(b, now).map(|ban| Banned {
                    ban,
                    after_seq: self.state.lock().expect("state lock").seq,
                });
                let _ = tx.send(res);
            }
            ModCmd::Unban(id, by, tx) => {
                let res = (|| {
                    let changed = self
                        .conn
                        .execute(
                            "UPDATE bans SET lifted_at = ?2, lifted_by = ?3 WHERE id = ?1 AND lifted_at IS NULL",
                            params![id as i64, now, by.0 as i64],
                        )
                        .map_err(backend)?;
                    if changed == 0 {
                        return Ok(None);
                    }
                    self.active.remove_ban(id);
                    let ban = select_bans(&self.conn, "WHERE id = ?1 ORDER BY id", id as i64, 1)?;
                    Ok(ban.into_iter().next())
                })();
                let _ = tx.send(res);
            }
            ModCmd::Protect(p, tx) => {
                let res = (|| {
                    if self.active.protected.len() >= MAX_PROTECTED {
                        return Err(ModerationError::TooManyProtected {
                            limit: MAX_PROTECTED,
                        });
                    }
                    let r = p.rect;
                    self.conn
                        .execute(
                            "INSERT INTO protected (x, y, w, h, reason, by, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            params![r.x(), r.y(), r.w(), r.h(), p.reason, p.by.0 as i64, now],
                        )
                        .map_err(backend)?;
                    let area = Protected {
                        id: self.conn.last_insert_rowid() as u64,
                        rect: r,
                        reason: p.reason,
                        by: p.by,
                        at_ms: now,
                    };
                    self.active.protected.push(area.clone());
                    Ok(area)
                })();
                let _ = tx.send(res);
            }
            ModCmd::Unprotect(id, tx) => {
                let res = (|| {
                    self.conn
                        .execute("DELETE FROM protected WHERE id = ?1", [id as i64])
                        .map_err(backend)?;
                    let pos = self.active.protected.iter().position(|p| p.id == id);
                    Ok(pos.map(|i| self.active.protected.remove(i)))
                })();
                let _ = tx.send(res);
            }
        }
    }

    fn add_ban(&mut self, b: NewBan, now: i64) -> Result<Ban, ModerationError> {
        self.active.prune(now);
        if self.active.bans.len() >= MAX_ACTIVE_BANS {
            return Err(ModerationError::TooManyBans {
                limit: MAX_ACTIVE_BANS,
            });
        }
        let (kind, user, covers) = target_columns(&b.target);
        self.conn
            .execute(
                "INSERT INTO bans (kind, user, covers, reason, until, by, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![kind, user, covers, b.reason, b.until_ms, b.by.0 as i64, now],
            )
            .map_err(backend)?;
        let ban = Ban {
            id: self.conn.last_insert_rowid() as u64,
            target: b.target,
            reason: b.reason,
            until_ms: b.until_ms,
            by: b.by,
            at_ms: now,
            lifted_at_ms: None,
            lifted_by: None,
        };
        self.active.add_ban(ban.clone());
        Ok(ban)
    }
}

impl EmbeddedStore {
    async fn moderate<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ModerationError>>) -> ModCmd,
    ) -> Result<T, ModerationError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || ModerationError::from(BackendError::Stopped("writer"));
        self.tx
            .send(Cmd::Moderate(make(tx)))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

impl Moderation for EmbeddedStore {
    async fn ban(&self, b: NewBan) -> Result<Banned, ModerationError> {
        self.moderate(|tx| ModCmd::Ban(b, tx)).await
    }

    async fn unban(&self, id: u64, by: UserId) -> Result<Option<Ban>, ModerationError> {
        self.moderate(|tx| ModCmd::Unban(id, by, tx)).await
    }

    async fn bans(&self, all: bool, now_ms: i64, limit: usize) -> Result<Vec<Ban>, StoreError> {
        let filter = if all {
            "WHERE ?1 IS NOT NULL ORDER BY id DESC"
        } else {
            "WHERE lifted_at IS NULL AND (until IS NULL OR until > ?1) ORDER BY id DESC"
        };
        self.read(move |c| select_bans(c, filter, now_ms, limit as i64))
            .await
    }

    async fn ban_by_id(&self, id: u64) -> Result<Option<Ban>, StoreError> {
        self.read(move |c| select_bans(c, "WHERE id = ?1 ORDER BY id", id as i64, 1))
            .await
            .map(|b| b.into_iter().next())
    }

    async fn protect(&self, p: NewProtected) -> Result<Protected, ModerationError> {
        self.moderate(|tx| ModCmd::Protect(p, tx)).await
    }

    async fn unprotect(&self, id: u64) -> Result<Option<Protected>, ModerationError> {
        self.moderate(|tx| ModCmd::Unprotect(id, tx)).await
    }

    async fn protected_areas(&self) -> Result<Vec<Protected>, StoreError> {
        self.read(select_protected).await
    }
}
