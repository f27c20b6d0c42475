//! The SQLite file: schema migrations, opening connections, and restoring the state
//! (tiles, seq, cooldowns) from the tile rows and the log after their watermark.

use super::*;

pub(super) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::from(e)
}

/// The `through` of a one-row state table along the log (`stats_state`,
/// `activity_state`): every placement up to it is counted there.
pub(super) fn watermark(c: &Connection, table: &'static str) -> Result<Seq, StoreError> {
    c.query_row(
        &format!("SELECT through FROM {table} WHERE id = 1"),
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|s| Seq(s as u64))
    .map_err(backend)
}

/// Schema versions, applied in order and recorded in `PRAGMA user_version`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the log, a single board snapshot and the board's shape.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
     CREATE TABLE placements (
         seq INTEGER PRIMARY KEY,
         x INTEGER NOT NULL,
         y INTEGER NOT NULL,
         color INTEGER NOT NULL,
         user INTEGER NOT NULL,
         ts INTEGER NOT NULL
     );
     CREATE INDEX placements_pixel ON placements (y, x, seq);
     CREATE TABLE snapshot (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         seq INTEGER NOT NULL,
         board BLOB NOT NULL
     );",
    // 2: history by `prev` links instead of an index (see the module docs), and the
    //    per-pixel last seq in the snapshot (NULL in older snapshots: restore rescans).
    "ALTER TABLE placements ADD COLUMN prev INTEGER;
     UPDATE placements SET prev = (
         SELECT max(p.seq) FROM placements p
         WHERE p.y = placements.y AND p.x = placements.x AND p.seq < placements.seq);
     DROP INDEX placements_pixel;
     ALTER TABLE snapshot ADD COLUMN pixel_seq BLOB;",
    // 3: the first outcome of each idempotency key, written with its placement.
    "CREATE TABLE idempotency (
         user INTEGER NOT NULL,
         key TEXT NOT NULL,
         seq INTEGER NOT NULL,
         at INTEGER NOT NULL,
         next_at INTEGER NOT NULL,
         PRIMARY KEY (user, key)
     ) WITHOUT ROWID;
     CREATE INDEX idempotency_at ON idempotency (at);",
    // 4: the canvas in tiles (see `tiles`): one row per painted tile, keyed by
    //    `TileId::key`; the watermark is `meta.tiles_through`. A whole-board snapshot left
    //    by an older version is turned into tiles when the file is opened, and its table
    //    stays empty.
    "CREATE TABLE tiles (
         key INTEGER PRIMARY KEY,
         version INTEGER NOT NULL,
         through INTEGER NOT NULL,
         pixels BLOB NOT NULL,
         seqs BLOB NOT NULL
     );",
];

/// The `meta` key of the tiles' watermark: every placement up to it is in the tile rows.
pub(super) const TILES_THROUGH: &str = "tiles_through";

fn meta(conn: &Connection, key: &str) -> Result<Option<i64>, StoreError> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
        .map_err(backend)
}

fn set_meta(conn: &Connection, key: &str, value: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .map(drop)
    .map_err(backend)
}

/// Records the canvas size (in the caller's transaction).
pub(super) fn write_dims(conn: &Connection, dims: Dimensions) -> Result<(), StoreError> {
    set_meta(conn, "width", i64::from(dims.width()))?;
    set_meta(conn, "height", i64::from(dims.height()))
}

/// The canvas size the data dir holds.
pub(super) fn read_dims(conn: &Connection) -> Result<Dimensions, StoreError> {
    let side = |key| -> Result<i64, StoreError> {
        meta(conn, key)?.ok_or_else(|| BackendError::Corrupt(format!("meta has no {key}")).into())
    };
    Dimensions::parse(side("width")? as u64, side("height")? as u64)
        .map_err(|e| BackendError::Corrupt(format!("meta: {e}")).into())
}

/// zstd level of the per-pixel seqs of an older version's snapshot (only tests write
/// them now, to check that such a data dir is read).
#[cfg(test)]
pub(super) const PIXEL_SEQ_LEVEL: i32 = 1;

#[cfg(test)]
pub(super) fn encode_pixel_seq(seqs: &[u64]) -> Result<Vec<u8>, StoreError> {
    use std::io::Write;
    let fail = StoreError::from;
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), PIXEL_SEQ_LEVEL).map_err(fail)?;
    // Chunk by chunk, so the raw bytes (8 per pixel) are never all in memory at once.
    let mut chunk = Vec::with_capacity(8 * 8192);
    for part in seqs.chunks(8192) {
        chunk.clear();
        chunk.extend(part.iter().flat_map(|s| s.to_le_bytes()));
        enc.write_all(&chunk).map_err(fail)?;
    }
    enc.finish().map_err(fail)
}

pub(super) fn decode_pixel_seq(blob: &[u8], pixels: usize) -> Result<Vec<u64>, StoreError> {
    use std::io::Read;
    let fail = StoreError::from;
    let mut dec = zstd::stream::read::Decoder::new(blob).map_err(fail)?;
    let mut out = Vec::with_capacity(pixels);
    let mut chunk = vec![0u8; 8 * 8192];
    while out.len() < pixels {
        let n = (pixels - out.len()).min(8192);
        dec.read_exact(&mut chunk[..8 * n]).map_err(fail)?;
        out.extend(
            chunk[..8 * n]
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))),
        );
    }
    if dec.read(&mut chunk[..1]).map_err(fail)? != 0 {
        return Err(BackendError::Corrupt(format!(
            "snapshot pixel seqs hold more than the {pixels} pixels of the board"
        ))
        .into());
    }
    Ok(out)
}

pub(super) fn open_write(cfg: &EmbeddedConfig, path: &PathBuf) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(backend)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(backend)?;
    let sync = match cfg.sync {
        SyncMode::Full => "FULL",
        SyncMode::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(backend)?;
    // A checkpoint runs inside the commit that crosses the threshold and stalls that batch:
    // fewer, larger ones than the default 1,000 pages.
    conn.pragma_update(None, "wal_autocheckpoint", 10_000)
        .map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(backend)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend)?;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        conn.execute_batch(&format!(
            "BEGIN; {m}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))
        .map_err(backend)?;
    }
    migrate_areas(&conn)?;
    Ok(conn)
}

/// Every area's own migrations, each version in its area's range (accounts 100s,
/// moderation 200s, rewrite 300s, records 400s, past 500s, templates 800s, stats 900s,
/// activity 1000s), so that areas evolve independently.
const AREAS: &[&[(i64, &str, &str)]] = &[
    super::accounts::MIGRATIONS,
    super::moderation::MIGRATIONS,
    super::rewrite::MIGRATIONS,
    super::records::MIGRATIONS,
    super::templates::MIGRATIONS,
    super::stats::MIGRATIONS,
    super::past::MIGRATIONS,
    super::activity::MIGRATIONS,
];

/// Applies the area migrations not yet recorded in `schema_migrations`, each in its own
/// transaction with its record.
fn migrate_areas(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )
    .map_err(backend)?;
    for (version, name, sql) in AREAS.iter().flat_map(|a| a.iter()) {
        let done: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
                [version],
                |r| r.get(0),
            )
            .map_err(backend)?;
        if done {
            continue;
        }
        conn.execute_batch(&format!(
            "BEGIN; {sql}; INSERT INTO schema_migrations VALUES ({version}, '{}', {}); COMMIT;",
            name.replace('\'', "''"),
            now_ms()
        ))
        .map_err(backend)?;
        tracing::info!(version, name, "applied SQLite migration");
    }
    Ok(())
}

/// Records the canvas's shape on first use, grows a data dir made for a smaller canvas,
/// keeps the size of one made for a larger one, and refuses one of another depth.
pub(super) fn check_shape(conn: &Connection, cfg: &EmbeddedConfig) -> Result<(), StoreError> {
    let bits = i64::from(cfg.depth.bits());
    match meta(conn, "bits_per_pixel")? {
        None => set_meta(conn, "bits_per_pixel", bits)?,
        Some(h) if h != bits => {
            return Err(StoreError::Config(format!(
                "the data dir {} holds a board with bits_per_pixel = {h}, but this start asks for {bits}; \
                 start with the same palette depth, or use another --data-dir",
                cfg.data_dir.display()
            )));
        }
        Some(_) => {}
    }
    let (w, h) = (meta(conn, "width")?, meta(conn, "height")?);
    let want = (
        i64::from(cfg.dims.width()).max(w.unwrap_or(0)),
        i64::from(cfg.dims.height()).max(h.unwrap_or(0)),
    );
    if (w, h) != (Some(want.0), Some(want.1)) {
        if w.is_some() {
            tracing::info!(
                from_width = w,
                from_height = h,
                width = want.0,
                height = want.1,
                "the canvas grows to the configured size"
            );
        }
        let dims = Dimensions::parse(want.0 as u64, want.1 as u64)
            .map_err(|e| BackendError::Corrupt(format!("meta: {e}")))?;
        write_dims(conn, dims)?;
    } else if !cfg.dims.covers(
        Dimensions::parse(want.0 as u64, want.1 as u64)
            .map_err(|e| BackendError::Corrupt(format!("meta: {e}")))?,
    ) {
        tracing::info!(
            width = want.0,
            height = want.1,
            "the data dir holds a larger canvas than configured; it keeps its size"
        );
    }
    Ok(())
}

/// Turns the whole-board snapshot an older version left into tile rows (once: the
/// snapshot row is deleted in the same transaction). A snapshot without pixel seqs (from
/// before migration 2) is dropped instead, and the whole log replayed.
fn convert_legacy_snapshot(conn: &mut Connection) -> Result<(), StoreError> {
    let snap: Option<(i64, Vec<u8>, Option<Vec<u8>>)> = conn
        .query_row(
            "SELECT seq, board, pixel_seq FROM snapshot WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(backend)?;
    let Some((seq, board, pixel_seq)) = snap else {
        return Ok(());
    };
    let dims = read_dims(conn)?;
    let bits = meta(conn, "bits_per_pixel")?.unwrap_or(4);
    let depth = if bits == 8 { Depth::Eight } else { Depth::Four };
    let tx = conn.transaction().map_err(backend)?;
    let mut tiles_written = 0;
    let through = match pixel_seq {
        None => 0,
        Some(blob) => {
            let board = Board::from_bytes(dims, depth, board)
                .map_err(|e| BackendError::Corrupt(format!("snapshot board: {e}")))?;
            let pixel_seq = decode_pixel_seq(&blob, dims.pixels())?;
            let (across, down) = rplace_domain::tile::tiles_across(dims);
            for ty in 0..down {
                for tx_ in 0..across {
                    let id = TileId::new_unchecked(tx_, ty);
                    let mut t = tiles::Cached::blank(depth);
                    let o = id.origin();
                    for y in o.y()..(o.y() + rplace_domain::tile::TILE_SIZE).min(dims.height()) {
                        for x in o.x()..(o.x() + rplace_domain::tile::TILE_SIZE).min(dims.width()) {
                            let c = Coord::new_unchecked(x, y);
                            let s = pixel_seq[c.index(dims)];
                            if s != 0 {
                                t.apply(id.local_index(c), board.get(c), s);
                            }
                        }
                    }
                    if t.version != 0 {
                        tiles::write_rows(&tx, &[tiles::encode(id.key(), &t, seq as u64)?])?;
                        tiles_written += 1;
                    }
                }
            }
            seq
        }
    };
    set_meta(&tx, TILES_THROUGH, through)?;
    tx.execute("DELETE FROM snapshot", []).map_err(backend)?;
    tx.commit().map_err(backend)?;
    tracing::info!(
        seq,
        tiles = tiles_written,
        "turned the whole-board snapshot into tiles"
    );
    Ok(())
}

/// Placements read per page while replaying.
const REPLAY_PAGE: i64 = 65_536;

/// Rebuilds the committed state: the log after the tiles' watermark is replayed onto the
/// tile rows through a cache as bounded as the writer's (evicted tiles are written back),
/// skipping on each tile what its row already holds.
pub(super) fn restore(conn: &Connection, cfg: &EmbeddedConfig) -> Result<State, StoreError> {
    let started = Instant::now();
    let dims = read_dims(conn)?;
    let watermark = meta(conn, TILES_THROUGH)?.unwrap_or(0) as u64;
    let mut cache = TileCache::new(cfg.tile_cache);
    let mut seq = Seq(watermark);
    let mut replayed = 0u64;
    let mut written = 0usize;
    loop {
        let page: Vec<(i64, i64, i64, i64)> = conn
            .prepare_cached(
                "SELECT seq, x, y, color FROM placements WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(backend)?
            .query_map(params![seq.0 as i64, REPLAY_PAGE], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(backend)?;
        if page.is_empty() {
            break;
        }
        for (s, x, y, color) in page {
            let s = Seq(s as u64);
            // A row off this canvas is a corrupt database, not a panic.
            let coord = dims.coord(x, y).map_err(|e| {
                StoreError::Backend(BackendError::Corrupt(format!("placement {}: {e}", s.0)))
            })?;
            let id = TileId::of(coord);
            if !cache.contains(id.key()) {
                // Evict a quarter of the cache at once: one transaction for many rows.
                let victims = cache.victims(cache.capacity().div_ceil(4), &|_| false);
                let mut rows = Vec::new();
                for k in &victims {
                    if let Some(t) = cache.get(*k).filter(|t| t.dirty) {
                        rows.push(tiles::encode(*k, t, seq.0)?);
                    }
                }
                if !rows.is_empty() {
                    let tx = conn.unchecked_transaction().map_err(backend)?;
                    tiles::write_rows(&tx, &rows)?;
                    tx.commit().map_err(backend)?;
                    written += rows.len();
                }
                for k in victims {
                    cache.remove(k);
                }
                cache.insert(id.key(), tiles::load(conn, id.key(), cfg.depth)?);
            }
            let t = cache.get_mut(id.key());
            if s.0 > t.through {
                t.apply(
                    id.local_index(coord),
                    ColorIndex::new_unchecked(color as u8),
                    s.0,
                );
                replayed += 1;
            }
            seq = s;
        }
    }
    let mut last_placed = HashMap::new();
    let cooldown = cfg.policy.cooldown();
    if cooldown.as_millis() > 0 {
        let cutoff = now_ms() - cooldown.as_millis();
        let mut stmt = conn
            .prepare("SELECT user, ts FROM placements ORDER BY seq DESC")
            .map_err(backend)?;
        let mut rows = stmt.query([]).map_err(backend)?;
        while let Some(r) = rows.next().map_err(backend)? {
            let ts: i64 = r.get(1).map_err(backend)?;
            if ts < cutoff {
                break;
            }
            let user = UserId(r.get::<_, i64>(0).map_err(backend)? as u64);
            last_placed.entry(user).or_insert(ts);
        }
    }
    let charge_tats = restore_pools(conn, cfg)?;
    tracing::info!(
        seq = seq.0,
        watermark,
        replayed,
        tiles_written = written,
        cooldowns = last_placed.len(),
        pools = charge_tats.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "embedded store restored"
    );
    Ok(State {
        dims,
        seq,
        last_placed,
        charge_tats,
        tiles: cache,
    })
}

/// Most log rows read to rebuild the charges pools at start: beyond them (a pool's regain
/// time holding more placements than this), older placements count as regained.
const POOL_ROWS: usize = 5_000_000;

/// The charges pools, recomputed from the placements of the last whole regain time
/// (`Charges::window_ms`): each replayed oldest first as an accepted placement
/// (`Charges::recorded`). Older placements are regained by now. Exempt and moderation
/// placements are in the log too and count as spent: a restart errs towards emptier pools,
/// by at most what such placements cost, never towards a pool fuller than it was.
fn restore_pools(
    conn: &Connection,
    cfg: &EmbeddedConfig,
) -> Result<HashMap<UserId, i64>, StoreError> {
    let mut tats = HashMap::new();
    let Some(charges) = cfg.policy.charges() else {
        return Ok(tats);
    };
    let now = now_ms();
    let cutoff = now - charges.window_ms();
    let mut stmt = conn
        .prepare("SELECT user, ts FROM placements ORDER BY seq DESC")
        .map_err(backend)?;
    let mut rows = stmt.query([]).map_err(backend)?;
    let mut recent = Vec::new();
    while let Some(r) = rows.next().map_err(backend)? {
        let ts: i64 = r.get(1).map_err(backend)?;
        if ts < cutoff {
            break;
        }
        if recent.len() == POOL_ROWS {
            tracing::warn!(
                rows = POOL_ROWS,
                "charges pools rebuilt from the newest rows only"
            );
            break;
        }
        recent.push((UserId(r.get::<_, i64>(0).map_err(backend)? as u64), ts));
    }
    for &(user, ts) in recent.iter().rev() {
        let tat = tats.get(&user).copied();
        tats.insert(user, charges.recorded(tat, ts));
    }
    tats.retain(|_, &mut t| t > now);
    Ok(tats)
}

pub(super) fn open_reader(path: &PathBuf) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(backend)?;
    Ok(conn)
}

pub(super) fn row_to_placement(r: &rusqlite::Row<'_>) -> rusqlite::Result<Placement> {
    Ok(Placement {
        seq: Seq(r.get::<_, i64>(0)? as u64),
        // Read back from rows that went through `Dimensions::coord` when placed.
        coord: Coord::new_unchecked(r.get::<_, i64>(1)? as u32, r.get::<_, i64>(2)? as u32),
        color: ColorIndex::new_unchecked(r.get::<_, i64>(3)? as u8),
        user: UserId(r.get::<_, i64>(4)? as u64),
        at_ms: r.get(5)?,
    })
}

/// Opens (or creates) the database of `cfg.data_dir` with the current schema and checks its
/// shape, without starting a store: for tools that fill a data dir directly (the load
/// generator's `make-history`).
pub fn open_database(cfg: &EmbeddedConfig) -> Result<Connection, StoreError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
        StoreError::Config(format!(
            "cannot create data dir {}: {e}",
            cfg.data_dir.display()
        ))
    })?;
    let mut conn = open_write(cfg, &cfg.data_dir.join(DB_FILE))?;
    // Before the size may change: an old snapshot is a board of the size stored.
    if meta(&conn, "width")?.is_some() {
        convert_legacy_snapshot(&mut conn)?;
    }
    check_shape(&conn, cfg)?;
    Ok(conn)
}

/// The database file inside the data dir.
pub(super) const DB_FILE: &str = "rplace.sqlite3";
