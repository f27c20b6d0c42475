//! How a client keeps an exact board (docs/API.md, "How a client stays exact"), as a state
//! machine without sockets or clocks: it is fed the websocket's messages and the bodies of
//! `GET /api/board` and `GET /api/updates`, and says what to fetch next ([`Sync::next_fetch`]).
//! The API tests, the topology test and the load generator all drive this one
//! implementation; the page (crates/web/static/sync.js) implements the same algorithm and
//! is checked against the same golden fixtures (crates/domain/tests/fixtures).
//!
//! 1. Open `/ws`; frames are buffered ([`Sync::on_frame`]) until a board is there.
//! 2. `GET /api/board` when [`Fetch::Board`] is asked for ([`Sync::on_board`]).
//! 3. Buffered and new frames are applied in seq order, skipping seqs already applied. A
//!    frame that starts after `current + 1` asks for [`Fetch::Updates`] first
//!    ([`Sync::on_updates`]); a `410` ([`Sync::on_updates_gone`]) asks for a new board.
//! 4. After a reconnect ([`Sync::on_connect`], [`Sync::on_hello`]) the same from the last
//!    seq applied.
//!
//! Every seq is applied exactly once and in order: the only call that changes the target
//! is [`Target::apply`], and it is only ever given a run that starts at `current + 1`.

use crate::board::{Board, Coord};
use crate::palette::ColorIndex;
use crate::placement::Seq;
use crate::wire::{self, ENTRY_LEN, FrameError, HEADER_LEN, Update};
use std::collections::VecDeque;
use thiserror::Error;

#[cfg(test)]
mod tests;

/// Catch-ups in a row that bring nothing while a frame waits ahead of the log before the
/// board is fetched again (the log of a shared store can lag its live feed briefly).
pub const MAX_GAP_RETRIES: u32 = 3;

/// Default bound on the bytes of frames buffered while a board or catch-up is awaited.
pub const DEFAULT_MAX_BUFFERED: usize = 4 << 20;

/// What the caller should fetch next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// `GET /api/board`; `fresh` asks to bypass HTTP caches (after a resync or a `410`, a
    /// cached board is likely too old). `retry` counts boards in a row that the log could
    /// not continue: wait a little longer each time instead of spinning.
    Board { fresh: bool, retry: u32 },
    /// `GET /api/updates?since={since}`. `retry` > 0 when the previous catch-up brought
    /// nothing while a frame still waits ahead of it: wait about `retry` × 100 ms first.
    Updates { since: Seq, retry: u32 },
}

/// Where applied entries came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A websocket frame.
    Live,
    /// A body of `GET /api/updates`.
    CatchUp,
}

/// Contiguous entries to apply: seq `first`, `first + 1`, ... A view into a frame.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// Seq of the first entry.
    first: Seq,
    /// `len()` entries of [`ENTRY_LEN`] bytes, as on the wire.
    entries: &'a [u8],
}

impl<'a> Run<'a> {
    pub fn first(&self) -> Seq {
        self.first
    }

    /// Seq of the last entry.
    pub fn last(&self) -> Seq {
        Seq(self.first.0 + self.len() as u64 - 1)
    }

    pub fn len(&self) -> usize {
        self.entries.len() / ENTRY_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, decoded.
    pub fn updates(&self) -> impl Iterator<Item = Update> + 'a {
        let first = self.first.0;
        self.entries
            .chunks_exact(ENTRY_LEN)
            .enumerate()
            .map(move |(i, e)| Update {
                seq: Seq(first + i as u64),
                coord: Coord::new_unchecked(
                    u32::from(u16::from_le_bytes([e[0], e[1]])),
                    u32::from(u16::from_le_bytes([e[2], e[3]])),
                ),
                color: ColorIndex::new_unchecked(e[4]),
            })
    }
}

/// What a [`Sync`] keeps exact: a whole board ([`Board`]), or only what a client needs to
/// know (the load generator keeps seqs and arrival times, not 15,000 copies of the pixels).
pub trait Target {
    /// Replaces everything with `board`, the board at `seq`.
    fn load(&mut self, board: &[u8], seq: Seq) -> Result<(), SyncError>;
    /// Applies `run`, which starts right after the last seq applied or loaded.
    fn apply(&mut self, run: Run<'_>, source: Source) -> Result<(), SyncError>;
}

/// A message or body that cannot be used. The state machine has already reacted (it asks
/// for a new board); the error is for counting and logging.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SyncError {
    #[error("malformed update frame")]
    Frame(#[from] FrameError),
    #[error("board body has {got} bytes, expected {expected}")]
    BoardLength { got: usize, expected: usize },
    #[error("update of seq {seq} is off the board at ({x}, {y})")]
    OffBoard { seq: u64, x: u32, y: u32 },
    #[error("/api/updates skipped from seq {current} to {first}")]
    LogHole { current: u64, first: u64 },
}

/// Counters of what happened, for tests and the load generator's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries applied from websocket frames.
    pub live: u64,
    /// Entries applied from `/api/updates` bodies.
    pub caught_up: u64,
    /// Entries of websocket frames at or below a seq already received on the same
    /// connection: repeats on the wire.
    pub duplicates: u64,
    /// Websocket frames that arrived after a gap (the catch-up filled it).
    pub gaps: u64,
    /// Boards loaded.
    pub boards: u64,
    /// `410 Gone` answers to a catch-up.
    pub gone: u64,
    /// `resync` messages.
    pub resyncs: u64,
    /// Frames dropped because the buffer was full (the log fills what they held).
    pub dropped: u64,
    /// Messages or bodies that could not be used.
    pub errors: u64,
}

/// The client's sync state, around the [`Target`] it keeps exact.
#[derive(Debug)]
pub struct Sync<T> {
    /// What is kept exact.
    target: T,
    /// Newest seq applied (or loaded); `None` before the first board.
    current: Option<u64>,
    /// Newest seq the server said exists (hello); caught up to without waiting for a frame.
    known: u64,
    /// Frames waiting (validated), oldest first.
    queue: VecDeque<Vec<u8>>,
    /// Bytes in `queue`, bounded by `max_buffered`.
    queued_bytes: usize,
    /// Bound on `queued_bytes`, so a client waiting on a slow fetch cannot grow without end.
    max_buffered: usize,
    /// A board must be loaded before anything else is applied.
    need_board: bool,
    /// The next board should bypass caches.
    fresh_board: bool,
    /// Boards in a row answered by `410` (see [`Fetch::Board`]'s `retry`).
    gone_streak: u32,
    /// The first board waits for a hello, so that frames are buffered from before it.
    gate_open: bool,
    /// The last catch-up said more pages follow.
    more: bool,
    /// Catch-ups in a row that brought nothing while a frame waits ahead.
    gap_retries: u32,
    /// Newest seq received on the current connection (0: none yet), to count repeats.
    last_live: u64,
    /// What happened so far.
    stats: Stats,
}

impl<T: Target> Sync<T> {
    pub fn new(target: T) -> Self {
        Sync {
            target,
            current: None,
            known: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            max_buffered: DEFAULT_MAX_BUFFERED,
            need_board: true,
            fresh_board: false,
            gone_streak: 0,
            gate_open: false,
            more: false,
            gap_retries: 0,
            last_live: 0,
            stats: Stats::default(),
        }
    }

    /// Bounds the bytes of buffered frames (default [`DEFAULT_MAX_BUFFERED`]).
    pub fn with_max_buffered(mut self, bytes: usize) -> Self {
        self.max_buffered = bytes;
        self
    }

    pub fn target(&self) -> &T {
        &self.target
    }

    pub fn target_mut(&mut self) -> &mut T {
        &mut self.target
    }

    pub fn into_target(self) -> T {
        self.target
    }

    /// Newest seq applied; `None` before the first board.
    pub fn current(&self) -> Option<Seq> {
        self.current.map(Seq)
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Frames waiting to be applied.
    pub fn buffered(&self) -> usize {
        self.queue.len()
    }

    /// Nothing to fetch and nothing waiting: the target is exact as of the newest seq
    /// this client has heard of.
    pub fn is_settled(&self) -> bool {
        self.queue.is_empty() && self.next_fetch().is_none() && self.current.is_some()
    }

    /// A new websocket connection opened: repeats are counted per connection.
    pub fn on_connect(&mut self) {
        self.last_live = 0;
    }

    /// The hello of a connection: `seq` exists on the server.
    pub fn on_hello(&mut self, seq: Seq) {
        self.known = self.known.max(seq.0);
        self.gate_open = true;
    }

    /// Lets the first board be fetched without a hello (the page does so after a while;
    /// clients that start from a known board call it at once).
    pub fn open_gate(&mut self) {
        self.gate_open = true;
    }

    /// A `resync` message: the server lost continuity, only a new board can be trusted.
    pub fn on_resync(&mut self) {
        self.stats.resyncs += 1;
        self.want_board();
    }

    /// One binary websocket message.
    pub fn on_frame(&mut self, frame: &[u8]) -> Result<(), SyncError> {
        let (first, count) = match wire::frame_run(frame) {
            Ok(r) => r,
            Err(e) => return Err(self.fail(e.into())),
        };
        if count == 0 {
            return Ok(());
        }
        let (first, last) = (first.0, first.0 + count as u64 - 1);
        if self.last_live != 0 && first <= self.last_live {
            self.stats.duplicates += last.min(self.last_live) - first + 1;
        }
        self.last_live = self.last_live.max(last);
        // The common case, without a copy: nothing waits and the frame continues the board.
        if self.queue.is_empty()
            && !self.need_board
            && let Some(cur) = self.current
        {
            if last <= cur {
                return Ok(());
            }
            if first <= cur + 1 {
                return self.apply_frame(frame, Source::Live);
            }
            self.stats.gaps += 1;
        }
        if self.queued_bytes + frame.len() > self.max_buffered {
            // Dropping is safe: whatever they held comes from the log (a gap) instead.
            self.stats.dropped += self.queue.len() as u64;
            self.queue.clear();
            self.queued_bytes = 0;
        }
        self.queued_bytes += frame.len();
        // Kept in seq order, so a frame that overtook another (across reconnects) waits
        // behind it rather than causing a catch-up.
        let at = self
            .queue
            .iter()
            .rposition(|f| wire::frame_run(f).is_ok_and(|(s, _)| s.0 <= first))
            .map_or(0, |i| i + 1);
        self.queue.insert(at, frame.to_vec());
        self.drain()
    }

    /// The body of `GET /api/board` and its `X-Board-Seq`.
    pub fn on_board(&mut self, body: &[u8], seq: Seq) -> Result<(), SyncError> {
        if let Err(e) = self.target.load(body, seq) {
            self.stats.errors += 1;
            return Err(e);
        }
        self.stats.boards += 1;
        self.current = Some(seq.0);
        self.known = self.known.max(seq.0);
        self.need_board = false;
        self.fresh_board = false;
        self.gate_open = true;
        self.more = false;
        self.gap_retries = 0;
        self.drain()
    }

    /// A `200` to `GET /api/updates?since={since}`: its body and whether
    /// `X-Updates-More` was set.
    pub fn on_updates(&mut self, since: Seq, body: &[u8], more: bool) -> Result<(), SyncError> {
        let Some(cur) = self.current.filter(|_| !self.need_board) else {
            return Ok(()); // a late answer: a new board is coming anyway
        };
        let frames = match wire::split_frames(body) {
            Ok(f) => f,
            Err(e) => return Err(self.fail(e.into())),
        };
        self.gone_streak = 0;
        for frame in frames {
            let (first, count) = wire::frame_run(frame)?;
            let cur_now = self.current.unwrap_or(cur);
            if count == 0 || first.0 + count as u64 - 1 <= cur_now {
                continue;
            }
            if first.0 > cur_now + 1 {
                if since.0 != cur {
                    // Asked from another seq than ours (a board was loaded meanwhile).
                    return self.drain();
                }
                return Err(self.fail(SyncError::LogHole {
                    current: cur_now,
                    first: first.0,
                }));
            }
            self.apply_frame(frame, Source::CatchUp)?;
        }
        let now = self.current.unwrap_or(cur);
        let progressed = now > cur;
        self.more = more && progressed;
        if !more && self.known > now {
            // Never loop on a hello the log cannot satisfy; frames will show any gap.
            self.known = now;
        }
        if progressed {
            self.gap_retries = 0;
        } else if self.head_is_gap() {
            self.gap_retries += 1;
            if self.gap_retries > MAX_GAP_RETRIES {
                self.want_board();
            }
        }
        self.drain()
    }

    /// A `410 Gone` to `GET /api/updates`: the log no longer reaches back to our seq.
    pub fn on_updates_gone(&mut self) {
        self.stats.gone += 1;
        self.gone_streak += 1;
        self.want_board();
    }

    /// What to fetch next, if anything. Asking twice without feeding an answer gives the
    /// same answer: the caller performs one fetch at a time.
    pub fn next_fetch(&self) -> Option<Fetch> {
        if self.need_board {
            return self.gate_open.then_some(Fetch::Board {
                fresh: self.fresh_board,
                retry: self.gone_streak.saturating_sub(1),
            });
        }
        let cur = self.current?;
        let since = Seq(cur);
        if self.head_is_gap() {
            return Some(Fetch::Updates {
                since,
                retry: self.gap_retries,
            });
        }
        (self.more || self.known > cur).then_some(Fetch::Updates { since, retry: 0 })
    }

    /// The oldest buffered frame starts after `current + 1`.
    fn head_is_gap(&self) -> bool {
        match (self.queue.front(), self.current) {
            (Some(f), Some(cur)) => wire::frame_run(f).is_ok_and(|(first, _)| first.0 > cur + 1),
            _ => false,
        }
    }

    fn want_board(&mut self) {
        self.need_board = true;
        self.fresh_board = true;
        self.more = false;
        self.gap_retries = 0;
    }

    /// Counts `e` and starts over from a new board.
    fn fail(&mut self, e: SyncError) -> SyncError {
        self.stats.errors += 1;
        self.want_board();
        e
    }

    /// Applies buffered frames while they continue the board.
    fn drain(&mut self) -> Result<(), SyncError> {
        while !self.need_board
            && let Some(cur) = self.current
            && let Some(f) = self.queue.front()
        {
            let (first, count) = wire::frame_run(f).expect("validated when buffered");
            let last = first.0 + count as u64 - 1;
            if first.0 > cur + 1 {
                break;
            }
            let f = self.queue.pop_front().expect("front exists");
            self.queued_bytes -= f.len();
            if last > cur {
                self.apply_frame(&f, Source::Live)?;
            }
        }
        Ok(())
    }

    /// Applies the entries of a validated frame after `current`; the frame starts at or
    /// before `current + 1`.
    fn apply_frame(&mut self, frame: &[u8], source: Source) -> Result<(), SyncError> {
        let cur = self.current.expect("a board is loaded");
        let (first, count) = wire::frame_run(frame)?;
        let skip = (cur + 1 - first.0) as usize;
        debug_assert!(skip < count as usize);
        let run = Run {
            first: Seq(cur + 1),
            entries: &frame[HEADER_LEN + skip * ENTRY_LEN..],
        };
        let n = run.len() as u64;
        if let Err(e) = self.target.apply(run, source) {
            return Err(self.fail(e));
        }
        self.current = Some(cur + n);
        match source {
            Source::Live => self.stats.live += n,
            Source::CatchUp => self.stats.caught_up += n,
        }
        Ok(())
    }
}

impl Target for Board {
    fn load(&mut self, board: &[u8], _seq: Seq) -> Result<(), SyncError> {
        *self = Board::from_bytes(self.dims(), self.depth(), board.to_vec()).map_err(|e| {
            SyncError::BoardLength {
                got: e.got,
                expected: e.expected,
            }
        })?;
        Ok(())
    }

    fn apply(&mut self, run: Run<'_>, _source: Source) -> Result<(), SyncError> {
        let dims = self.dims();
        for u in run.updates() {
            if !dims.contains(u.coord) {
                return Err(SyncError::OffBoard {
                    seq: u.seq.0,
                    x: u.coord.x(),
                    y: u.coord.y(),
                });
            }
            self.set(u.coord, u.color);
        }
        Ok(())
    }
}
