//! Clients that name the tiles they show (the websocket `view` message) and keep each of
//! those tiles exact by the per-tile rule of docs/API.md ("Tiles"): a tile's version comes
//! from `X-Tile-Version`; a frame whose `prev` is at most the version applies its newer
//! entries; one whose `prev` is ahead means placements were missed, which
//! `GET /api/tiles/{tx}/{ty}/updates?since=k` brings first (a `410` refetches the tile).
//! Like the whole-canvas clients, they keep seqs and arrival times, not pixels.

use super::*;
use rplace_domain::tile::TILE_SIZE;
use rplace_domain::wire::{self, TileFrame};
use std::collections::HashMap;

/// What a view client records.
#[derive(Debug, Default)]
pub(super) struct ViewState {
    /// The tiles it shows: tx, ty, w, h.
    pub rect: (u32, u32, u32, u32),
    /// Each shown tile's known version, by `TileId::key`, once fetched.
    versions: HashMap<u64, u64>,
    /// (seq, arrival ns) of every placement it learnt, each once.
    pub arrivals: Vec<(u64, u64)>,
    /// Placements that came through a catch-up.
    pub caught_up: u64,
    /// Frames whose `prev` was ahead of the tile's version.
    pub gaps: u64,
    /// Tiles fetched again after a `410`.
    pub refetches: u64,
    /// Frames for tiles it did not ask for (must stay 0).
    pub foreign: u64,
    /// Entries not newer than their tile's version (repeats; harmless, counted).
    pub repeats: u64,
}

impl ViewState {
    /// Whether a tile key lies in the view.
    pub fn shows(&self, key: u64) -> bool {
        let t = rplace_domain::TileId::from_key(key);
        let (tx, ty, w, h) = self.rect;
        (tx..tx + w).contains(&t.tx()) && (ty..ty + h).contains(&t.ty())
    }

    /// Applies a frame's entries newer than its tile's version; `false` if the frame
    /// starts after a gap (nothing applied then).
    fn apply(&mut self, f: &TileFrame, at: u64, catch_up: bool) -> bool {
        let Some(k) = self.versions.get_mut(&f.tile.key()) else {
            self.foreign += 1;
            return true;
        };
        if f.prev.0 > *k {
            return false;
        }
        for u in &f.updates {
            if u.version.0 > *k {
                *k = u.version.0;
                self.arrivals.push((u.version.0, at));
                if catch_up {
                    self.caught_up += 1;
                }
            } else {
                self.repeats += 1;
            }
        }
        true
    }
}

/// A random `w`×`h` rectangle of tiles on a `width`×`height` canvas, fixed by the
/// client's id so that runs are repeatable.
pub(super) fn pick_rect(id: u32, width: u64, height: u64, w: u32, h: u32) -> (u32, u32, u32, u32) {
    let tile = u64::from(TILE_SIZE);
    let (across, down) = (width.div_ceil(tile) as u32, height.div_ceil(tile) as u32);
    let (w, h) = (w.min(across).max(1), h.min(down).max(1));
    let mut r = (u64::from(id) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    r ^= r >> 29;
    r = r.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    r ^= r >> 32;
    let tx = (r % u64::from(across - w + 1)) as u32;
    let ty = ((r >> 32) % u64::from(down - h + 1)) as u32;
    (tx, ty, w, h)
}

/// Sends the view and reads until the server confirms it.
async fn subscribe(ws: &mut Ws, rect: (u32, u32, u32, u32)) -> anyhow::Result<()> {
    let (tx, ty, w, h) = rect;
    let msg = serde_json::json!({ "type": "view", "tx": tx, "ty": ty, "w": w, "h": h });
    futures_util::SinkExt::send(ws, Message::Text(msg.to_string().into())).await?;
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(&t)?;
                    match v["type"].as_str() {
                        Some("view") => return Ok(()),
                        Some("error") => bail!("view refused: {t}"),
                        _ => continue,
                    }
                }
                // Whole-canvas frames sent before the view took effect.
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => bail!("closed before the view was confirmed"),
            }
        }
    })
    .await
    .context("no view confirmation within 30 s")?
}

/// `GET /api/tiles/{tx}/{ty}` as a page would; returns the tile's version.
async fn fetch_tile(sh: &Shared, key: u64, fresh: bool) -> anyhow::Result<u64> {
    let t = rplace_domain::TileId::from_key(key);
    let _slot = sh.http_slots.acquire().await?;
    let mut req = sh
        .http
        .get(format!(
            "http://{}/api/tiles/{}/{}",
            sh.cfg.addr,
            t.tx(),
            t.ty()
        ))
        .header("accept-encoding", "zstd, br, gzip");
    if fresh {
        req = req.header("cache-control", "no-cache");
    }
    let r = req.send().await?;
    if !r.status().is_success() {
        bail!("tile {},{} answered {}", t.tx(), t.ty(), r.status());
    }
    let version = r
        .headers()
        .get("x-tile-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("tile without X-Tile-Version")?;
    r.bytes().await?;
    Ok(version)
}

/// The placements on a tile after `since`; `None` if the server no longer has them.
async fn catch_up(sh: &Shared, key: u64, since: u64) -> anyhow::Result<Option<Vec<TileFrame>>> {
    let t = rplace_domain::TileId::from_key(key);
    let _slot = sh.http_slots.acquire().await?;
    let r = sh
        .http
        .get(format!(
            "http://{}/api/tiles/{}/{}/updates?since={since}",
            sh.cfg.addr,
            t.tx(),
            t.ty()
        ))
        .send()
        .await?;
    if r.status() == 410 {
        return Ok(None);
    }
    if !r.status().is_success() {
        bail!("tile updates answered {}", r.status());
    }
    Ok(Some(wire::split_tile_frames(&r.bytes().await?)?))
}

/// Brings one tile up to date from its version: a catch-up, or a fresh fetch on `410`.
async fn refresh(sh: &Shared, vs: &mut ViewState, key: u64) -> anyhow::Result<()> {
    let k = vs.versions[&key];
    match catch_up(sh, key, k).await? {
        Some(frames) => {
            let at = now_ns();
            for f in &frames {
                vs.apply(f, at, true);
            }
        }
        None => {
            vs.refetches += 1;
            let v = fetch_tile(sh, key, true).await?;
            let k = vs.versions.get_mut(&key).expect("shown tile");
            *k = (*k).max(v);
        }
    }
    Ok(())
}

/// Feeds one binary message: tile frames are applied by the rule, anything else ignored.
async fn on_frame(sh: &Shared, vs: &mut ViewState, data: &[u8], at: u64) -> anyhow::Result<()> {
    if data.first() != Some(&wire::KIND_TILE) {
        return Ok(());
    }
    let f = wire::decode_tile_frame(data)?;
    if vs.apply(&f, at, false) {
        return Ok(());
    }
    vs.gaps += 1;
    // The tile's log may lag its live frames briefly: a few catch-ups, then a fresh tile.
    for retry in 0..3u64 {
        refresh(sh, vs, f.tile.key()).await?;
        if vs.apply(&f, at, false) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50 * (retry + 1))).await;
    }
    vs.refetches += 1;
    let v = fetch_tile(sh, f.tile.key(), true).await?;
    let k = vs.versions.get_mut(&f.tile.key()).expect("shown tile");
    *k = (*k).max(v);
    vs.apply(&f, at, false);
    Ok(())
}

/// One view client's life, as [`run_client`] for whole-canvas clients.
pub(super) async fn run_view_client(sh: Arc<Shared>, idx: u32, (w, h): (u32, u32)) -> ClientState {
    let id = sh.cfg.first_id + idx;
    let mut vs = ViewState {
        rect: pick_rect(id, sh.cfg.width, sh.cfg.height, w, h),
        ..Default::default()
    };
    let mut st = ClientState {
        id,
        sync: Sync::new(Arrivals::default()),
        reconnects: 0,
        errors: 0,
        bytes: 0,
        frames: 0,
        sync_ms: 0,
        view: None,
    };
    let mut synced = false;
    let mut backoff = Duration::from_millis(50);
    'connection: while !sh.stop.is_cancelled() {
        let connected = tokio::select! {
            _ = sh.stop.cancelled() => break,
            c = connect(&sh, idx) => c,
        };
        let mut ws = match connected {
            Ok((ws, _)) => ws,
            Err(e) => {
                st.errors += 1;
                if st.errors <= 3 {
                    eprintln!("client {id}: {e:#}");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        if let Err(e) = subscribe(&mut ws, vs.rect).await {
            st.errors += 1;
            eprintln!("client {id}: {e:#}");
            continue;
        }
        sh.hellos.fetch_add(u32::from(!synced), Ordering::Relaxed);
        // First connection: fetch every tile; after a reconnect: catch each one up.
        let (tx, ty, w, h) = vs.rect;
        let keys: Vec<u64> = (ty..ty + h)
            .flat_map(|y| {
                (tx..tx + w).map(move |x| rplace_domain::TileId::new_unchecked(x, y).key())
            })
            .collect();
        for key in keys {
            let known = vs.versions.contains_key(&key);
            let done = if known {
                refresh(&sh, &mut vs, key).await
            } else {
                fetch_tile(&sh, key, false).await.map(|v| {
                    vs.versions.insert(key, v);
                })
            };
            if let Err(e) = done {
                st.errors += 1;
                eprintln!("client {id}: {e:#}");
                continue 'connection;
            }
        }
        if !synced {
            synced = true;
            st.sync_ms = sh.started.elapsed().as_millis() as u64;
            sh.synced.fetch_add(1, Ordering::Relaxed);
        }
        loop {
            let msg = tokio::select! {
                _ = sh.stop.cancelled() => break 'connection,
                m = ws.next() => m,
            };
            match msg {
                Some(Ok(Message::Binary(data))) => {
                    let at = now_ns();
                    if sh.measuring.load(Ordering::Relaxed) {
                        st.bytes += data.len() as u64 + ws_header_len(data.len());
                        st.frames += 1;
                    }
                    sh.last_arrival.fetch_max(at, Ordering::Relaxed);
                    if let Err(e) = on_frame(&sh, &mut vs, &data, at).await {
                        st.errors += 1;
                        eprintln!("client {id}: {e:#}");
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    if !sh.stop.is_cancelled() {
                        st.reconnects += 1;
                        if st.reconnects <= 3 {
                            eprintln!("client {id}: closed: {frame:?}");
                        }
                    }
                    continue 'connection;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    st.reconnects += 1;
                    st.errors += 1;
                    if st.errors <= 3 {
                        eprintln!("client {id}: websocket: {e}");
                    }
                    continue 'connection;
                }
                None => {
                    st.reconnects += 1;
                    continue 'connection;
                }
            }
        }
    }
    st.view = Some(vs);
    st
}

/// Scores a view client: of the acknowledged placements on its tiles, which it learnt and
/// how late (and it must have received nothing for other tiles).
pub(super) fn view_report(
    st: &ClientState,
    vs: &ViewState,
    acks: &Acks,
    one: &mut hdrhistogram::Histogram<u64>,
    all: &mut hdrhistogram::Histogram<u64>,
    sent_all: &mut hdrhistogram::Histogram<u64>,
    sync: &mut hdrhistogram::Histogram<u64>,
) -> ClientReport {
    let expected = (acks.first_seq..=acks.last_seq())
        .filter(|&s| acks.at(s).is_some() && acks.tile(s).is_some_and(|t| vs.shows(t)))
        .count() as u64;
    let mut delivered = 0;
    for &(seq, at) in &vs.arrivals {
        let Some(ack) = acks.at(seq) else { continue };
        if !acks.tile(seq).is_some_and(|t| vs.shows(t)) {
            continue;
        }
        delivered += 1;
        one.saturating_record((at.saturating_sub(ack) / 1000).max(1));
        if let Some(sent) = acks.sent(seq) {
            sent_all.saturating_record((at.saturating_sub(sent) / 1000).max(1));
        }
    }
    all.add(&*one).expect("same histogram bounds");
    sync.saturating_record(st.sync_ms.max(1));
    let ms = |q: f64| {
        if one.is_empty() {
            0.0
        } else {
            one.value_at_quantile(q) as f64 / 1000.0
        }
    };
    ClientReport {
        id: st.id,
        delivered,
        missing: expected.saturating_sub(delivered),
        duplicates: vs.foreign,
        via_catch_up: vs.caught_up,
        gaps: vs.gaps,
        resyncs: vs.refetches as u32,
        reconnects: st.reconnects,
        errors: st.errors,
        bytes: st.bytes,
        frames: st.frames,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        max_ms: if one.is_empty() {
            0.0
        } else {
            one.max() as f64 / 1000.0
        },
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rects_lie_on_the_canvas() {
        for id in 0..1000 {
            let (tx, ty, w, h) = pick_rect(id, 65_536, 65_536, 4, 3);
            assert_eq!((w, h), (4, 3));
            assert!(tx + w <= 256 && ty + h <= 256);
        }
        assert_eq!(pick_rect(7, 300, 300, 4, 3), (0, 0, 2, 2));
    }

    #[test]
    fn frames_apply_by_the_rule() {
        use rplace_domain::wire::{TileUpdate, decode_tile_frame, encode_tile_frame};
        use rplace_domain::{ColorIndex, TileId};
        let t = TileId::new_unchecked(1, 1);
        let mut vs = ViewState {
            rect: (1, 1, 1, 1),
            ..Default::default()
        };
        vs.versions.insert(t.key(), 10);
        let up = |v| TileUpdate {
            version: Seq(v),
            index: 0,
            color: ColorIndex::new_unchecked(1),
        };
        let frame = |prev, ups: &[TileUpdate]| {
            decode_tile_frame(&encode_tile_frame(t, Seq(prev), ups)).unwrap()
        };
        // Older entries than the fetched version are skipped, newer ones recorded.
        assert!(vs.apply(&frame(4, &[up(8), up(12)]), 1, false));
        assert_eq!(vs.arrivals, vec![(12, 1)]);
        assert_eq!(vs.repeats, 1);
        // A frame after a gap applies nothing.
        assert!(!vs.apply(&frame(20, &[up(21)]), 2, false));
        assert_eq!(vs.arrivals.len(), 1);
        // A tile not asked for is counted.
        let other = decode_tile_frame(&encode_tile_frame(
            TileId::new_unchecked(5, 5),
            Seq(0),
            &[up(3)],
        ))
        .unwrap();
        vs.apply(&other, 3, false);
        assert_eq!(vs.foreign, 1);
        assert!(vs.shows(t.key()) && !vs.shows(TileId::new_unchecked(2, 1).key()));
    }
}
