//! The SQLite file: schema migrations, opening connections, and restoring the state
//! (board, seqs, cooldowns, per-pixel links) from the snapshot and the rows after it.

use super::*;

pub(super) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::from(e)
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
];

/// zstd level for the per-pixel seqs in a snapshot: fast, since the writer pauses for it.
pub(super) const PIXEL_SEQ_LEVEL: i32 = 1;

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
/// moderation 200s, rewrite 300s, records 400s), so that areas evolve independently.
const AREAS: &[&[(i64, &str, &str)]] = &[
    super::accounts::MIGRATIONS,
    super::moderation::MIGRATIONS,
    super::rewrite::MIGRATIONS,
    super::records::MIGRATIONS,
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

/// Records the board's shape on first use and refuses a data dir made for another shape.
pub(super) fn check_shape(conn: &Connection, cfg: &EmbeddedConfig) -> Result<(), StoreError> {
    let want = [
        ("width", cfg.dims.width() as i64),
        ("height", cfg.dims.height() as i64),
        ("bits_per_pixel", cfg.depth.bits() as i64),
    ];
    for (key, value) in want {
        let have: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        match have {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    params![key, value],
                )
                .map_err(backend)?;
            }
            Some(h) if h != value => {
                return Err(StoreError::Config(format!(
                    "the data dir {} holds a board with {key} = {h}, but this start asks for {value}; \
                     start with the same size and palette depth, or use another --data-dir",
                    cfg.data_dir.display()
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Rebuilds the committed state from the snapshot and the log after it.
pub(super) fn restore(conn: &Connection, cfg: &EmbeddedConfig) -> Result<State, StoreError> {
    let started = Instant::now();
    let snap: Option<(i64, Vec<u8>, Option<Vec<u8>>)> = conn
        .query_row(
            "SELECT seq, board, pixel_seq FROM snapshot WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(backend)?;
    let pixels = cfg.dims.pixels();
    let (mut seq, mut board, pixel_seq) = match snap {
        Some((seq, bytes, pixel_seq)) => (
            Seq(seq as u64),
            Board::from_bytes(cfg.dims, cfg.depth, bytes)
                .map_err(|e| BackendError::Corrupt(format!("snapshot board: {e}")))?,
            pixel_seq
                .map(|blob| decode_pixel_seq(&blob, pixels))
                .transpose()?,
        ),
        None => (Seq(0), Board::new(cfg.dims, cfg.depth), None),
    };
    let snapshot_seq = seq;
    // A snapshot from before migration 2 has no pixel seqs: read them from the whole log.
    let scan_from = if pixel_seq.is_some() { seq } else { Seq(0) };
    let mut pixel_seq = pixel_seq.unwrap_or_else(|| vec![0; pixels]);
    let mut replayed = 0u64;
    {
        let mut stmt = conn
            .prepare("SELECT seq, x, y, color FROM placements WHERE seq > ?1 ORDER BY seq")
            .map_err(backend)?;
        let mut rows = stmt.query([scan_from.0 as i64]).map_err(backend)?;
        while let Some(r) = rows.next().map_err(backend)? {
            let s = Seq(r.get::<_, i64>(0).map_err(backend)? as u64);
            // A row off this board is a corrupt database, not a panic in `Board::set`.
            let (x, y) = (
                r.get::<_, i64>(1).map_err(backend)?,
                r.get::<_, i64>(2).map_err(backend)?,
            );
            let coord = cfg.dims.coord(x, y).map_err(|e| {
                StoreError::Backend(BackendError::Corrupt(format!("placement {}: {e}", s.0)))
            })?;
            pixel_seq[coord.index(cfg.dims)] = s.0;
            if s > snapshot_seq {
                board.set(
                    coord,
                    ColorIndex::new_unchecked(r.get::<_, i64>(3).map_err(backend)? as u8),
                );
                seq = s;
                replayed += 1;
            }
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
    tracing::info!(
        seq = seq.0,
        replayed,
        cooldowns = last_placed.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "embedded store restored"
    );
    Ok(State {
        board,
        seq,
        last_placed,
        pixel_seq,
    })
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
    let conn = open_write(cfg, &cfg.data_dir.join(DB_FILE))?;
    check_shape(&conn, cfg)?;
    Ok(conn)
}

/// The database file inside the data dir.
pub(super) const DB_FILE: &str = "rplace.sqlite3";
