//! The writer thread: takes waiting placements in batches, decides each by the policy,
//! commits, then updates the shared state, feeds the hub and answers.
//!
//! A batch is committed in rounds that each touch at most the tile cache's capacity of
//! tiles (almost always one round): before a round is decided its tiles are made cached
//! ([`Writer::prepare`]), so deciding reads each pixel's last seq from memory and
//! applying after the commit changes only memory.

use super::tiles;
use super::*;

/// The writer thread's own state.
pub(super) struct Writer {
    /// The only connection that writes.
    pub(super) conn: Connection,
    /// Shared committed state, updated after each commit.
    pub(super) state: Arc<Mutex<State>>,
    /// Where committed placements go, in seq order; bounded, with a reset on overflow.
    pub(super) feed: FeedSender,
    /// The rules to apply.
    pub(super) policy: Params,
    /// Per-address policy state; only this thread reads and writes it.
    pub(super) addrs: AddrStates,
    /// The bans and protected areas in force; only this thread changes them.
    pub(super) active: super::moderation::Active,
    /// How long an idempotency record answers repeats, ms.
    pub(super) idempotency_window_ms: i64,
    /// When expired idempotency records were last deleted.
    pub(super) pruned_at: Instant,
    /// Bits per pixel of every tile.
    pub(super) depth: Depth,
    /// Snapshot cadence, in placements.
    pub(super) snapshot_every: u64,
    /// Placements committed since the last snapshot.
    pub(super) since_snapshot: u64,
    /// Last timestamp handed out, so timestamps never go backwards with seq.
    pub(super) last_ts: i64,
}

impl Writer {
    /// Sends the reset the feed owes, if there is room now; `true` when none is owed.
    fn flush_reset(&mut self) -> bool {
        let state = &self.state;
        self.feed
            .try_reset(|| state.lock().expect("state lock").seq)
    }

    /// The next command. While the feed owes a reset it polls, so the reset goes out as
    /// soon as the hub makes room even when no placement comes.
    fn next_cmd(&mut self, rx: &mut mpsc::Receiver<Cmd>) -> Option<Cmd> {
        loop {
            if self.flush_reset() {
                return rx.blocking_recv();
            }
            match rx.try_recv() {
                Ok(cmd) => return Some(cmd),
                Err(mpsc::error::TryRecvError::Empty) => std::thread::sleep(RESET_RETRY),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
            }
        }
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let Some(first) = self.next_cmd(&mut rx) else {
                // Every handle is gone without a close: still write the dirty tiles.
                let _ = self.checkpoint();
                return;
            };
            let mut close = None;
            // A moderation command or a rewrite chunk ends the batch: placements before it
            // are decided without it, placements after it with it.
            let mut special = None;
            match first {
                Cmd::Place(p, tx) => batch.push((p, tx)),
                Cmd::Close(tx) => close = Some(tx),
                other => special = Some(other),
            }
            let mut drain = |batch: &mut Vec<_>, close: &mut Option<_>, s: &mut Option<Cmd>| {
                while close.is_none() && s.is_none() && batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(Cmd::Place(p, tx)) => batch.push((p, tx)),
                        Ok(Cmd::Close(tx)) => *close = Some(tx),
                        Ok(other) => *s = Some(other),
                        Err(_) => break,
                    }
                }
            };
            drain(&mut batch, &mut close, &mut special);
            // Under load, wait a moment for more, so that one commit (one WAL write, one
            // fsync, one wake-up of this thread) serves more placements. A lone placement
            // does not wait.
            if batch.len() >= LINGER_FROM && close.is_none() && special.is_none() {
                std::thread::sleep(LINGER);
                drain(&mut batch, &mut close, &mut special);
            }
            if !batch.is_empty() {
                self.commit_batch(&mut batch);
            }
            match special {
                Some(Cmd::Moderate(m)) => self.moderate(m),
                Some(Cmd::Rewrite(c)) => self.apply_chunk(c),
                Some(Cmd::Grow(to, tx)) => {
                    let _ = tx.send(self.grow(to));
                }
                _ => {}
            }
            if self.since_snapshot >= self.snapshot_every
                && let Err(e) = self.checkpoint()
            {
                tracing::error!(error = %e, "tile checkpoint failed; will retry");
            }
            if let Some(tx) = close {
                rx.close();
                // Requests that raced the close are answered, not dropped.
                while let Ok(cmd) = rx.try_recv() {
                    match cmd {
                        Cmd::Place(p, tx) => batch.push((p, tx)),
                        Cmd::Moderate(m) => {
                            if !batch.is_empty() {
                                self.commit_batch(&mut batch);
                            }
                            self.moderate(m);
                        }
                        Cmd::Rewrite(c) => {
                            if !batch.is_empty() {
                                self.commit_batch(&mut batch);
                            }
                            self.apply_chunk(c);
                        }
                        Cmd::Grow(to, tx) => {
                            if !batch.is_empty() {
                                self.commit_batch(&mut batch);
                            }
                            let _ = tx.send(self.grow(to));
                        }
                        Cmd::Close(_) => {}
                    }
                }
                if !batch.is_empty() {
                    self.commit_batch(&mut batch);
                }
                let res = self.checkpoint().and_then(|_| {
                    self.conn
                        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                        .map_err(backend)
                });
                let _ = tx.send(res);
                return;
            }
        }
    }

    /// The first outcome of `key` for `user`, if it is younger than the window.
    fn idempotent_outcome(
        &self,
        user: UserId,
        key: &IdempotencyKey,
        now_ms: i64,
    ) -> Result<Option<Placed>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, at, next_at FROM idempotency WHERE user = ?1 AND key = ?2 AND at >= ?3",
            )
            .map_err(backend)?;
        stmt.query_row(
            params![
                user.0 as i64,
                key.as_str(),
                now_ms - self.idempotency_window_ms
            ],
            |r| {
                Ok(Placed {
                    seq: Seq(r.get::<_, i64>(0)? as u64),
                    at_ms: r.get(1)?,
                    next_at_ms: r.get(2)?,
                    charges: None,
                    replayed: true,
                })
            },
        )
        .optional()
        .map_err(backend)
    }

    /// Decides, commits and answers one batch, in rounds that each fit the tile cache.
    fn commit_batch(
        &mut self,
        batch: &mut Vec<(NewPlacement, oneshot::Sender<Result<Placed, PlaceError>>)>,
    ) {
        let capacity = self.state.lock().expect("state lock").tiles.capacity();
        while !batch.is_empty() {
            let mut keys = HashSet::new();
            let n = batch
                .iter()
                .position(|(p, _)| {
                    keys.insert(TileId::of(p.coord).key());
                    keys.len() > capacity
                })
                .unwrap_or(batch.len());
            if n == batch.len() {
                self.commit_round(batch, &keys);
            } else {
                keys.remove(&TileId::of(batch[n].0.coord).key());
                let mut round: Vec<_> = batch.drain(..n).collect();
                self.commit_round(&mut round, &keys);
            }
        }
    }

    /// Makes every tile of `keys` (at most the cache's capacity) cached: evicts the least
    /// recently used others, writing the dirty ones among them in one transaction first,
    /// then loads the missing ones from their rows.
    pub(super) fn prepare(&mut self, keys: &HashSet<u64>) -> Result<(), StoreError> {
        let (missing, victims) = {
            let st = self.state.lock().expect("state lock");
            let missing: Vec<u64> = keys
                .iter()
                .copied()
                .filter(|&k| !st.tiles.contains(k))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            let victims = st.tiles.victims(missing.len(), &|k| keys.contains(&k));
            (missing, victims)
        };
        self.evict(&victims)?;
        let mut loaded = Vec::with_capacity(missing.len());
        for &k in &missing {
            loaded.push((k, tiles::load(&self.conn, k, self.depth)?));
        }
        metrics::counter!("rplace_store_tile_loads_total").increment(loaded.len() as u64);
        let mut st = self.state.lock().expect("state lock");
        for (k, t) in loaded {
            st.tiles.insert(k, t);
        }
        Ok(())
    }

    /// Drops tiles from the cache, once the dirty ones among them are written.
    fn evict(&mut self, victims: &[u64]) -> Result<(), StoreError> {
        if victims.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::new();
        for &k in victims {
            // One tile's encoding per lock, so that readers never wait long.
            let st = self.state.lock().expect("state lock");
            if let Some(t) = st.tiles.get(k).filter(|t| t.dirty) {
                rows.push(tiles::encode(k, t, st.seq.0)?);
            }
        }
        if !rows.is_empty() {
            let tx = self.conn.transaction().map_err(backend)?;
            tiles::write_rows(&tx, &rows)?;
            tx.commit().map_err(backend)?;
        }
        let mut st = self.state.lock().expect("state lock");
        for k in victims {
            st.tiles.remove(*k);
        }
        metrics::counter!("rplace_store_tile_evictions_total").increment(victims.len() as u64);
        metrics::counter!("rplace_store_tile_writes_total").increment(rows.len() as u64);
        Ok(())
    }

    /// Decides, commits and answers one round of a batch, whose tiles are `keys`.
    fn commit_round(
        &mut self,
        batch: &mut Vec<(NewPlacement, oneshot::Sender<Result<Placed, PlaceError>>)>,
        keys: &HashSet<u64>,
    ) {
        if let Err(e) = self.prepare(keys) {
            tracing::error!(error = %Chain(&e), "loading tiles failed; rejecting the batch");
            let e = Arc::new(BackendError::from(e));
            for (_, tx) in batch.drain(..) {
                let _ = tx.send(Err(PlaceError::Unavailable(BackendError::Shared(
                    e.clone(),
                ))));
            }
            return;
        }
        let started = Instant::now();
        let clock_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let now = Now::not_before_ms(clock_us, self.last_ts);
        let now_ms = now.millis();
        let mut decided = Vec::with_capacity(batch.len());
        // Placements in one batch are decided as if one by one: later ones see the state
        // that earlier ones leave, which is stored only once the commit succeeds.
        let mut users: HashMap<UserId, UserState> = HashMap::new();
        let mut addrs: HashMap<AddrKey, policy::AddrState> = HashMap::new();
        let mut keys: HashMap<(UserId, IdempotencyKey), Placed> = HashMap::new();
        // Pixels placed twice in one batch: the second links to the first.
        let mut pixel_in_batch: HashMap<Coord, Seq> = HashMap::new();
        let mut accepted = Vec::with_capacity(batch.len());
        let mut prevs = Vec::with_capacity(batch.len());
        let mut records = Vec::new();
        // Earlier outcomes of the keys in this batch, read before the state lock is taken
        // so that readers of the state never wait behind these queries.
        let mut earlier: HashMap<
            (UserId, IdempotencyKey),
            Result<Option<Placed>, Arc<BackendError>>,
        > = HashMap::new();
        for (p, _) in batch.iter() {
            if let Some(key) = p.idempotency_key {
                earlier.entry((p.user, key)).or_insert_with(|| {
                    self.idempotent_outcome(p.user, &key, now_ms)
                        .map_err(|e| Arc::new(BackendError::from(e)))
                });
            }
        }
        if let Some(Err(e)) = earlier.values().find(|r| r.is_err()) {
            tracing::error!(error = %Chain(&**e), "idempotency lookup failed");
        }
        // The one-time proofs of this batch as committed before it; proofs spent within
        // the batch are in `spent`.
        let mut once_before: HashMap<OnceToken, Result<OnceState, Arc<BackendError>>> =
            HashMap::new();
        for (p, _) in batch.iter() {
            if let Some(token) = p.standing.once.filter(|_| !p.bypass_limits) {
                once_before.entry(token).or_insert_with(|| {
                    self.spent_once(&token)
                        .map_err(|e| Arc::new(BackendError::from(e)))
                });
            }
        }
        let mut spent: HashMap<OnceToken, i64> = HashMap::new();
        let seq = {
            let st = self.state.lock().expect("state lock");
            let mut seq = st.seq;
            for (p, _) in batch.iter() {
                // A repeat of a key is answered before any rule: it is not a new attempt.
                if let Some(key) = p.idempotency_key {
                    let first = match keys.get(&(p.user, key)) {
                        Some(placed) => Some(*placed),
                        None => match &earlier[&(p.user, key)] {
                            Ok(found) => *found,
                            Err(e) => {
                                decided.push(Err(PlaceError::Unavailable(BackendError::Shared(
                                    e.clone(),
                                ))));
                                continue;
                            }
                        },
                    };
                    if let Some(placed) = first {
                        decided.push(Ok(Placed {
                            replayed: true,
                            charges: None,
                            ..placed
                        }));
                        continue;
                    }
                }
                let user = users.get(&p.user).copied().unwrap_or_else(|| {
                    UserState::new(st.last_placed.get(&p.user).copied())
                        .with_tat(st.charge_tats.get(&p.user).copied())
                });
                // The address rule reads (and changes) its state only when it applies, so
                // the load generator's path and a canvas without the limit skip the map.
                let addr_key = (!p.bypass_limits
                    && !self.policy.rate_for(p.standing.account).is_off())
                .then(|| self.policy.addr_key(p.ip));
                let addr = addr_key.map_or_else(policy::AddrState::default, |k| {
                    addrs.get(&k).copied().unwrap_or_else(|| self.addrs.get(&k))
                });
                let once = match p.standing.once.filter(|_| !p.bypass_limits) {
                    None => None,
                    Some(token) => match spent.get(&token) {
                        Some(&until) => Some(OnceState::new(Some(until))),
                        None => match &once_before[&token] {
                            Ok(state) => Some(*state),
                            Err(e) => {
                                decided.push(Err(PlaceError::Unavailable(BackendError::Shared(
                                    e.clone(),
                                ))));
                                continue;
                            }
                        },
                    },
                };
                let (ban, protected) = if p.bypass_limits {
                    (None, false)
                } else {
                    (
                        self.active.ban_for(p.user, p.ip, now),
                        self.active.is_protected(p.coord),
                    )
                };
                let prior = Prior::new(user, addr, p.bypass_limits)
                    .with_ban(ban)
                    .with_protected(protected)
                    .with_standing(p.standing.moderator, p.standing.account)
                    .with_once(once);
                match policy::decide(&self.policy, &prior, now) {
                    Decision::Accept(a) => {
                        seq = seq.next();
                        users.insert(p.user, a.user());
                        if let Some(k) = addr_key {
                            addrs.insert(k, a.addr());
                        }
                        let prev = pixel_in_batch
                            .insert(p.coord, seq)
                            .map_or_else(|| st.tiles.seq_of(p.coord), |s| s.0);
                        prevs.push(prev);
                        accepted.push(Placement {
                            seq,
                            coord: p.coord,
                            color: p.color,
                            user: p.user,
                            at_ms: a.at_ms(),
                        });
                        let placed = Placed {
                            seq,
                            at_ms: a.at_ms(),
                            next_at_ms: a.next_at_ms(),
                            charges: self.policy.quota(a.user(), a.at_ms()).charges(),
                            replayed: false,
                        };
                        if let Some(key) = p.idempotency_key {
                            keys.insert((p.user, key), placed);
                            records.push((p.user, key, placed));
                        }
                        if let (Some(token), Some(until)) = (p.standing.once, a.once_until_ms()) {
                            spent.insert(token, until);
                        }
                        decided.push(Ok(placed));
                    }
                    Decision::Refuse(Refusal::Cooldown { next_at_ms }) => {
                        decided.push(Err(PlaceError::Cooldown { next_at_ms }))
                    }
                    Decision::Refuse(Refusal::RateLimited { retry_after_ms }) => {
                        decided.push(Err(PlaceError::RateLimited { retry_after_ms }))
                    }
                    Decision::Refuse(Refusal::OnceSpent) => {
                        decided.push(Err(PlaceError::OnceSpent))
                    }
                    Decision::Refuse(Refusal::Protected) => {
                        decided.push(Err(PlaceError::Protected))
                    }
                    Decision::Refuse(Refusal::Banned { ban }) => {
                        decided.push(Err(PlaceError::Banned {
                            reason: self.active.reason(ban.id()).unwrap_or("banned").into(),
                            until_ms: ban.until_ms(),
                        }))
                    }
                }
            }
            seq
        };
        let outcome = if accepted.is_empty() {
            Ok(())
        } else {
            self.insert(&accepted, &prevs, &records, &spent)
        };
        match outcome {
            Ok(()) => {
                for (key, state) in addrs {
                    self.addrs.set(key, state, now);
                }
                if !accepted.is_empty() {
                    let mut st = self.state.lock().expect("state lock");
                    for a in &accepted {
                        st.tiles.apply(a.coord, a.color, a.seq.0);
                    }
                    for (user, state) in users {
                        if let Some(last) = state.last_ms() {
                            st.last_placed.insert(user, last);
                        }
                        if let Some(tat) = state.tat_ms() {
                            st.charge_tats.insert(user, tat);
                        }
                    }
                    if st.charge_tats.len() > 100_000 {
                        // A pool that is full again is no state at all.
                        st.charge_tats.retain(|_, &mut t| t > now_ms);
                    }
                    st.seq = seq;
                    if st.last_placed.len() > 100_000 {
                        let cutoff = now_ms - self.policy.cooldown().as_millis();
                        st.last_placed.retain(|_, &mut t| t >= cutoff);
                    }
                    drop(st);
                    self.last_ts = now_ms;
                    self.since_snapshot += accepted.len() as u64;
                    metrics::counter!("rplace_store_placements_committed_total")
                        .increment(accepted.len() as u64);
                    self.feed.placements(accepted);
                }
                for ((_, tx), d) in batch.drain(..).zip(decided) {
                    let _ = tx.send(d);
                }
            }
            Err(e) => {
                tracing::error!(error = %Chain(&e), "commit failed; rejecting the batch");
                let e = Arc::new(e);
                metrics::counter!("rplace_store_commit_failures_total").increment(1);
                for ((_, tx), d) in batch.drain(..).zip(decided) {
                    let _ = tx.send(match d {
                        Ok(_) => Err(PlaceError::Unavailable(BackendError::Shared(e.clone()))),
                        Err(rejected) => Err(rejected),
                    });
                }
            }
        }
        self.prune_idempotency(now_ms);
        metrics::histogram!("rplace_store_commit_seconds").record(started.elapsed().as_secs_f64());
    }

    /// Deletes idempotency records older than the window, at most every few seconds.
    fn prune_idempotency(&mut self, now_ms: i64) {
        if self.pruned_at.elapsed() < PRUNE_EVERY {
            return;
        }
        self.pruned_at = Instant::now();
        if let Err(e) = self
            .conn
            .execute(
                "DELETE FROM idempotency WHERE at < ?1",
                [now_ms - self.idempotency_window_ms],
            )
            .map_err(BackendError::from)
        {
            tracing::warn!(error = %e, "pruning idempotency records failed; will retry");
        }
        if let Err(e) = self
            .conn
            .execute("DELETE FROM spent_once WHERE expires_at <= ?1", [now_ms])
            .map_err(BackendError::from)
        {
            tracing::warn!(error = %e, "pruning spent one-time proofs failed; will retry");
        }
    }

    /// Inserts `rows`, each with the seq of the placement before it on its pixel, and the
    /// idempotency records of those that carried a key, in one transaction.
    pub(super) fn insert(
        &mut self,
        rows: &[Placement],
        prevs: &[u64],
        records: &[(UserId, IdempotencyKey, Placed)],
        spent: &HashMap<OnceToken, i64>,
    ) -> Result<(), BackendError> {
        let tx = self.conn.transaction().map_err(BackendError::from)?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO placements (seq, x, y, color, user, ts, prev) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .map_err(BackendError::from)?;
            for (p, &prev) in rows.iter().zip(prevs) {
                stmt.execute(params![
                    p.seq.0 as i64,
                    p.coord.x(),
                    p.coord.y(),
                    p.color.get(),
                    p.user.0 as i64,
                    p.at_ms,
                    (prev != 0).then_some(prev as i64)
                ])
                .map_err(BackendError::from)?;
            }
        }
        if !records.is_empty() {
            // REPLACE: a record past the window that pruning has not reached yet.
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO idempotency (user, key, seq, at, next_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(BackendError::from)?;
            for (user, key, placed) in records {
                stmt.execute(params![
                    user.0 as i64,
                    key.as_str(),
                    placed.seq.0 as i64,
                    placed.at_ms,
                    placed.next_at_ms
                ])
                .map_err(BackendError::from)?;
            }
        }
        if !spent.is_empty() {
            // REPLACE: an expired record that pruning has not reached yet.
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO spent_once (token, expires_at) VALUES (?1, ?2)",
                )
                .map_err(BackendError::from)?;
            for (token, until) in spent {
                stmt.execute(params![&token.as_bytes()[..], until])
                    .map_err(BackendError::from)?;
            }
        }
        tx.commit().map_err(BackendError::from)
    }

    /// Writes every dirty tile's row, then the watermark: the log up to the head is then
    /// in the rows, and a restart replays only what follows. One tile is encoded per lock
    /// and one row is held at a time, so this costs no more memory than the cache.
    pub(super) fn checkpoint(&mut self) -> Result<(), StoreError> {
        let started = Instant::now();
        let (dirty, head) = {
            let st = self.state.lock().expect("state lock");
            (st.tiles.dirty(), st.seq.0)
        };
        let mut written = Vec::with_capacity(dirty.len());
        let tx = self.conn.transaction().map_err(backend)?;
        for k in dirty {
            let row = {
                let st = self.state.lock().expect("state lock");
                let t = st.tiles.get(k).expect("a dirty tile is cached");
                tiles::encode(k, t, head)?
            };
            tiles::write_rows(&tx, std::slice::from_ref(&row))?;
            written.push((k, row.through));
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![TILES_THROUGH, head as i64],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        let mut st = self.state.lock().expect("state lock");
        for (k, through) in &written {
            st.tiles.mark_clean(*k, *through);
        }
        metrics::gauge!("rplace_store_tile_cache_bytes").set(st.tiles.heap_bytes() as f64);
        metrics::gauge!("rplace_store_tile_cache_tiles").set(st.tiles.len() as f64);
        drop(st);
        metrics::counter!("rplace_store_tile_writes_total").increment(written.len() as u64);
        self.since_snapshot = 0;
        tracing::debug!(
            seq = head,
            tiles = written.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "tile checkpoint written"
        );
        Ok(())
    }

    /// Grows the canvas: `meta` first, then memory, then the feed.
    pub(super) fn grow(&mut self, to: Dimensions) -> Result<Dimensions, StoreError> {
        let now = self.state.lock().expect("state lock").dims;
        if !to.covers(now) {
            return Err(StoreError::Config(format!(
                "the canvas is {}x{} and may only grow: {}x{} is smaller on an axis",
                now.width(),
                now.height(),
                to.width(),
                to.height()
            )));
        }
        if to == now {
            return Ok(now);
        }
        let tx = self.conn.transaction().map_err(backend)?;
        write_dims(&tx, to)?;
        tx.commit().map_err(backend)?;
        self.state.lock().expect("state lock").dims = to;
        self.feed.grown(to);
        tracing::info!(width = to.width(), height = to.height(), "canvas grown");
        Ok(to)
    }
}
