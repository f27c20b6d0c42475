use super::*;
use crate::board::{Depth, Dimensions};

/// A server as the client sees it: a board, a log of every placement, frames to send.
struct FakeServer {
    /// Pixels after every placement so far.
    board: Board,
    /// Every placement, seq 1 first.
    log: Vec<Update>,
    /// The smallest `since` answered; older gets 410.
    log_start: u64,
    /// Entries per `/api/updates` page.
    page: usize,
}

impl FakeServer {
    fn new() -> Self {
        FakeServer {
            board: blank(),
            log: Vec::new(),
            log_start: 0,
            page: 1000,
        }
    }

    fn seq(&self) -> u64 {
        self.log.len() as u64
    }

    /// Places `n` pixels and returns their frame.
    fn tick(&mut self, n: usize) -> Vec<u8> {
        let mut ups = Vec::new();
        for _ in 0..n {
            let s = self.seq() + 1;
            let u = Update {
                seq: Seq(s),
                coord: Coord::new_unchecked((s * 7 % 16) as u32, (s * 3 % 8) as u32),
                color: ColorIndex::new_unchecked((s % 15 + 1) as u8),
            };
            self.board.set(u.coord, u.color);
            self.log.push(u);
            ups.push(u);
        }
        wire::encode_frames(&ups).remove(0)
    }

    fn board_body(&self) -> (Vec<u8>, Seq) {
        (self.board.as_bytes().to_vec(), Seq(self.seq()))
    }

    /// `GET /api/updates?since=`: `None` for 410, else (body, more).
    fn updates(&self, since: u64) -> Option<(Vec<u8>, bool)> {
        if since < self.log_start {
            return None;
        }
        let rest = &self.log[since as usize..];
        let page = &rest[..rest.len().min(self.page)];
        Some((wire::encode_frames(page).concat(), page.len() < rest.len()))
    }

    /// Answers every fetch the client asks for until it asks for nothing.
    fn serve(&self, c: &mut Sync<Board>) -> Vec<Fetch> {
        let mut asked = Vec::new();
        while let Some(f) = c.next_fetch() {
            asked.push(f);
            assert!(asked.len() < 100, "fetch loop: {asked:?}");
            match f {
                Fetch::Board { .. } => {
                    let (b, s) = self.board_body();
                    c.on_board(&b, s).unwrap();
                }
                Fetch::Updates { since, .. } => match self.updates(since.0) {
                    None => c.on_updates_gone(),
                    Some((body, more)) => c.on_updates(since, &body, more).unwrap(),
                },
            }
        }
        asked
    }
}

fn dims() -> Dimensions {
    Dimensions::parse(16, 8).unwrap()
}

fn blank() -> Board {
    Board::new(dims(), Depth::Four)
}

/// A client that has its hello and the server's current board.
fn synced(server: &FakeServer) -> Sync<Board> {
    let mut c = Sync::new(blank());
    c.on_connect();
    c.on_hello(Seq(server.seq()));
    assert_eq!(
        c.next_fetch(),
        Some(Fetch::Board {
            fresh: false,
            retry: 0
        })
    );
    server.serve(&mut c);
    c
}

fn assert_exact(c: &Sync<Board>, s: &FakeServer) {
    assert_eq!(c.current(), Some(Seq(s.seq())));
    assert_eq!(c.target(), &s.board);
}

#[test]
fn the_board_waits_for_the_hello_and_frames_wait_for_the_board() {
    let mut s = FakeServer::new();
    s.tick(2);
    let mut c = Sync::new(blank());
    c.on_connect();
    assert_eq!(c.next_fetch(), None, "no board before the hello");
    let f3 = s.tick(1);
    c.on_frame(&f3).unwrap();
    assert_eq!(c.buffered(), 1);
    c.on_hello(Seq(3));
    assert!(matches!(c.next_fetch(), Some(Fetch::Board { .. })));
    let (board, seq) = s.board_body();
    c.on_board(&board, seq).unwrap();
    // The board already has seq 3: the buffered frame is dropped, not applied twice.
    assert_eq!(c.buffered(), 0);
    assert_eq!(c.stats().live, 0);
    assert_exact(&c, &s);
    assert!(c.is_settled());
}

#[test]
fn frames_continue_the_board_live() {
    let mut s = FakeServer::new();
    let mut c = synced(&s);
    for n in [1, 3, 2] {
        let f = s.tick(n);
        c.on_frame(&f).unwrap();
        assert_eq!(c.next_fetch(), None);
    }
    assert_exact(&c, &s);
    assert_eq!(c.stats().live, 6);
    assert_eq!(c.stats().caught_up, 0);
}

#[test]
fn a_stale_board_older_than_the_buffered_frames_is_caught_up() {
    let mut s = FakeServer::new();
    s.tick(2);
    let stale = s.board_body(); // seq 2, as a cache might still serve it
    s.tick(3);
    let f6 = s.tick(1);
    let mut c = Sync::new(blank());
    c.on_connect();
    c.on_frame(&f6).unwrap();
    c.on_hello(Seq(5));
    c.on_board(&stale.0, stale.1).unwrap();
    assert_eq!(
        c.next_fetch(),
        Some(Fetch::Updates {
            since: Seq(2),
            retry: 0
        })
    );
    s.serve(&mut c);
    assert_exact(&c, &s);
    // The log brought 3..6, so the buffered frame of 6 had nothing new.
    assert_eq!(c.stats().caught_up, 4);
    assert_eq!(c.stats().live, 0);
    assert_eq!(c.buffered(), 0);
}

#[test]
fn a_board_newer_than_the_buffered_frames_skips_them() {
    let mut s = FakeServer::new();
    let f1 = s.tick(2);
    let f2 = s.tick(2);
    s.tick(1);
    let mut c = Sync::new(blank());
    c.on_connect();
    c.on_frame(&f1).unwrap();
    c.on_frame(&f2).unwrap();
    c.open_gate();
    let (b, seq) = s.board_body();
    c.on_board(&b, seq).unwrap();
    assert_eq!(c.buffered(), 0);
    assert_exact(&c, &s);
    assert_eq!(c.stats().live, 0);
}

#[test]
fn a_board_in_the_middle_of_a_frame_applies_only_its_newer_entries() {
    let mut s = FakeServer::new();
    s.tick(1);
    let (b, seq) = s.board_body();
    let mut c = Sync::new(blank());
    c.open_gate();
    c.on_board(&b, seq).unwrap();
    // Seqs 1..3 in one frame, the board had 1.
    let mut s2 = FakeServer::new();
    let f = s2.tick(3);
    c.on_frame(&f).unwrap();
    assert_exact(&c, &s2);
    assert_eq!(c.stats().live, 2);
}

#[test]
fn a_gap_is_filled_from_the_log_before_the_frame_after_it() {
    let mut s = FakeServer::new();
    let mut c = synced(&s);
    s.tick(4); // lost on the way
    let f = s.tick(2);
    c.on_frame(&f).unwrap();
    assert_eq!(c.stats().gaps, 1);
    assert_eq!(
        c.next_fetch(),
        Some(Fetch::Updates {
            since: Seq(0),
            retry: 0
        })
    );
    // Frames arriving meanwhile wait too.
    let f2 = s.tick(1);
    c.on_frame(&f2).unwrap();
    assert_eq!(c.buffered(), 2);
    s.serve(&mut c);
    assert_exact(&c, &s);
    assert_eq!(c.buffered(), 0);
}

#[test]
fn catch_up_pages_while_more_is_set() {
    let mut s = FakeServer::new();
    s.page = 3;
    let mut c = synced(&s);
    s.tick(10);
    let f = s.tick(1);
    c.on_frame(&f).unwrap();
    let asked = s.serve(&mut c);
    assert_eq!(asked.len(), 4, "{asked:?}");
    assert_exact(&c, &s);
}

#[test]
fn repeats_on_the_wire_are_counted_and_applied_once() {
    let mut s = FakeServer::new();
    let mut c = synced(&s);
    let f1 = s.tick(2);
    let f2 = s.tick(2);
    c.on_frame(&f1).unwrap();
    c.on_frame(&f2).unwrap();
    c.on_frame(&f1).unwrap();
    c.on_frame(&f2).unwrap();
    assert_exact(&c, &s);
    assert_eq!(c.stats().duplicates, 4);
    assert_eq!(c.stats().live, 4);
    // A new connection may repeat what the old one sent: not a repeat on the wire.
    c.on_connect();
    c.on_frame(&f2).unwrap();
    assert_eq!(c.stats().duplicates, 4);
    assert_exact(&c, &s);
}

#[test]
fn frames_out_of_order_are_put_back_in_order() {
    let mut s = FakeServer::new();
    let mut c = synced(&s);
    let f1 = s.tick(1);
    let f2 = s.tick(1);
    let f3 = s.tick(1);
    c.on_frame(&f3).unwrap();
    c.on_frame(&f2).unwrap();
    assert_eq!(c.buffered(), 2);
    c.on_frame(&f1).unwrap();
    assert_eq!(c.buffered(), 0, "no catch-up needed");
    assert_exact(&c, &s);
}

#[test]
fn gone_asks_for_a_fresh_board_and_backs_off_when_it_repeats() {
    let mut s = FakeServer::new();
    let mut c = synced(&s);
    s.tick(5);
    s.log_start = 3;
    let f = s.tick(1);
    c.on_frame(&f).unwrap();
    assert!(matches!(c.next_fetch(), Some(Fetch::Updates { .. })));
    c.on_updates_gone();
    assert_eq!(
        c.next_fetch(),
        Some(Fetch::Board {
            fresh: true,
            retry: 0
        })
    );
    // A cached board at seq 0 brings 410 again: wait before the next board.
    let stale = blank();
    c.on_board(stale.as_bytes(), Seq(0)).unwrap();
    c.on_updates_gone();
    assert_eq!(
        c.next_fetch(),
        Some(Fetch::Board {
            fresh: true,
            retry: 1
        })
    );
    s.serve(&mut c);
    assert_exact(&c, &s);
    assert_eq!(c.stats().gone, 2);
}

#[test]
fn resync_replaces_the_board() {
    let mut s = FakeServer::new();
    let mut c = synced(&s);
    s.board
        .set(Coord::new_unchecked(1, 1), ColorIndex::new_unchecked(7)); // behind our back
    c.on_resync();
    let f = s.tick(1);
    c.on_frame(&f).unwrap();
    assert_eq!(
        c.stats().live,
        0,
        "nothing is applied to a board known to be wrong"
    );
    assert_eq!(
        c.next_fetch(),
        Some(Fetch::Board {
            fresh: true,
            retry: 0
        })
    );
    s.serve(&mut c);
    assert_exact(&c, &s);
}

#[test]
fn a_hello_ahead_of_the_board_catches_up_without_waiting_for_a_frame() {
    let mut s = FakeServer::new();
    let mut c = synced(&s);
    s.tick(3); // missed while reconnecting
    c.on_connect();
    c.on_hello(Seq(3));
    assert_eq!(
        c.next_fetch(),
        Some(Fetch::Updates {
            since: Seq(0),
            retry: 0
        })
    );
    s.serve(&mut c);
    assert_exact(&c, &s);
    // A hello the log cannot satisfy (not there yet) does not loop.
    c.on_hello(Seq(9));
    let asked = s.serve(&mut c);
    assert_eq!(asked.len(), 1);
}

#[test]
fn a_frame_ahead_of_a_lagging_log_retries_then_refetches_the_board() {
    let mut s = FakeServer::new();
    let mut c = synced(&s);
    let mut ahead = FakeServer::new();
    ahead.tick(2);
    let f3 = ahead.tick(1); // seq 3, but the log has nothing yet
    c.on_frame(&f3).unwrap();
    for retry in 0..=MAX_GAP_RETRIES {
        assert_eq!(
            c.next_fetch(),
            Some(Fetch::Updates {
                since: Seq(0),
                retry
            })
        );
        let (body, more) = s.updates(0).unwrap();
        c.on_updates(Seq(0), &body, more).unwrap();
    }
    assert_eq!(
        c.next_fetch(),
        Some(Fetch::Board {
            fresh: true,
            retry: 0
        })
    );
    // The log has caught up by now.
    s.tick(3);
    s.serve(&mut c);
    assert_exact(&c, &s);
}

#[test]
fn a_hole_in_the_log_is_an_error_and_asks_for_a_board() {
    let mut s = FakeServer::new();
    let mut c = synced(&s);
    s.tick(5);
    let f = s.tick(1);
    c.on_frame(&f).unwrap();
    let body = wire::encode_frames(&s.log[2..]).concat(); // starts at seq 3
    assert_eq!(
        c.on_updates(Seq(0), &body, false),
        Err(SyncError::LogHole {
            current: 0,
            first: 3
        })
    );
    assert!(matches!(
        c.next_fetch(),
        Some(Fetch::Board { fresh: true, .. })
    ));
    s.serve(&mut c);
    assert_exact(&c, &s);
}

#[test]
fn a_late_catch_up_answer_for_an_older_seq_is_harmless() {
    let mut s = FakeServer::new();
    let mut c = synced(&s);
    s.tick(2);
    let (old_body, _) = s.updates(0).unwrap();
    let f = s.tick(1);
    // The answer to since=0 arrives after the client got seqs 1..3 another way.
    let mut other = FakeServer::new();
    other.log = s.log.clone();
    let (all, more) = other.updates(0).unwrap();
    c.on_frame(&f).unwrap();
    c.on_updates(Seq(0), &all, more).unwrap();
    c.on_updates(Seq(0), &old_body, false).unwrap();
    assert_exact(&c, &s);
    // An answer for a newer seq than ours (a board older than before was loaded) that
    // does not continue it is dropped, not taken for a hole.
    let (b, _) = (blank(), 0);
    c.on_board(b.as_bytes(), Seq(0)).unwrap();
    let (body, more) = s.updates(2).unwrap();
    c.on_updates(Seq(2), &body, more).unwrap();
    assert!(matches!(c.next_fetch(), None | Some(Fetch::Updates { .. })));
}

#[test]
fn malformed_input_is_an_error_and_starts_over() {
    let mut s = FakeServer::new();
    let mut c = synced(&s);
    let mut f = s.tick(1);
    f.pop();
    assert!(matches!(c.on_frame(&f), Err(SyncError::Frame(_))));
    assert!(matches!(
        c.next_fetch(),
        Some(Fetch::Board { fresh: true, .. })
    ));
    assert_eq!(
        c.on_board(&[0; 3], Seq(1)),
        Err(SyncError::BoardLength {
            got: 3,
            expected: 64
        })
    );
    assert!(matches!(c.next_fetch(), Some(Fetch::Board { .. })));
    s.serve(&mut c);
    assert_exact(&c, &s);
    // Off the board.
    let bad = wire::encode_frames(&[Update {
        seq: Seq(2),
        coord: Coord::new_unchecked(16, 0),
        color: ColorIndex::new_unchecked(1),
    }])
    .remove(0);
    assert!(matches!(
        c.on_frame(&bad),
        Err(SyncError::OffBoard { seq: 2, .. })
    ));
    assert_eq!(c.stats().errors, 3);
}

#[test]
fn the_buffer_is_bounded_and_the_log_fills_what_was_dropped() {
    let mut s = FakeServer::new();
    let mut c = Sync::new(blank()).with_max_buffered(100);
    c.on_connect();
    for _ in 0..20 {
        let f = s.tick(3); // 28 bytes each
        c.on_frame(&f).unwrap();
        assert!(c.buffered() <= 3);
    }
    assert!(c.stats().dropped > 0);
    c.open_gate();
    // The board is older than the frames still buffered.
    let mut old = FakeServer::new();
    old.log = s.log[..10].to_vec();
    for u in &old.log {
        old.board.set(u.coord, u.color);
    }
    let (b, seq) = old.board_body();
    c.on_board(&b, seq).unwrap();
    s.serve(&mut c);
    assert_exact(&c, &s);
}

/// Random loss, repeats, reorderings, reconnects, stale boards, resyncs and a log that
/// forgets: the client always ends exact, having applied each seq once and in order.
#[test]
fn random_interleavings_end_exact() {
    struct Checked {
        board: Board,
        last: u64,
    }
    impl Target for Checked {
        fn load(&mut self, body: &[u8], seq: Seq) -> Result<(), SyncError> {
            self.board.load(body, seq)?;
            self.last = seq.0;
            Ok(())
        }
        fn apply(&mut self, run: Run<'_>, source: Source) -> Result<(), SyncError> {
            assert_eq!(run.first().0, self.last + 1, "applied out of order");
            self.last = run.last().0;
            self.board.apply(run, source)
        }
    }
    let mut rnd = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: u64| {
        rnd ^= rnd << 13;
        rnd ^= rnd >> 7;
        rnd ^= rnd << 17;
        rnd % n
    };
    for round in 0..200 {
        let mut s = FakeServer::new();
        s.page = 1 + rand(5) as usize;
        let mut c = Sync::new(Checked {
            board: blank(),
            last: 0,
        })
        .with_max_buffered(200);
        let mut stale: Option<(Vec<u8>, Seq)> = None;
        let mut in_flight: Vec<Vec<u8>> = Vec::new();
        c.on_connect();
        c.on_hello(Seq(0));
        for _ in 0..80 {
            match rand(10) {
                0..=3 => {
                    let f = s.tick(1 + rand(3) as usize);
                    match rand(10) {
                        0 => {}                 // lost
                        1 => in_flight.push(f), // delivered later
                        2 => {
                            c.on_frame(&f).unwrap();
                            c.on_frame(&f).unwrap(); // repeated
                        }
                        _ => c.on_frame(&f).unwrap(),
                    }
                }
                4 if !in_flight.is_empty() => {
                    let f = in_flight.remove(rand(in_flight.len() as u64) as usize);
                    c.on_frame(&f).unwrap();
                }
                5 => stale = (rand(2) == 0).then(|| s.board_body()),
                6 => {
                    c.on_connect();
                    c.on_hello(Seq(s.seq()));
                }
                7 if rand(4) == 0 => c.on_resync(),
                8 if rand(3) == 0 => s.log_start = s.seq().saturating_sub(3),
                _ => {
                    // Answer one fetch, maybe from a stale cache.
                    match c.next_fetch() {
                        Some(Fetch::Board { fresh, .. }) => {
                            let (b, seq) = match (&stale, fresh) {
                                (Some(st), false) => st.clone(),
                                _ => s.board_body(),
                            };
                            c.on_board(&b, seq).unwrap();
                        }
                        Some(Fetch::Updates { since, .. }) => match s.updates(since.0) {
                            None => c.on_updates_gone(),
                            Some((body, more)) => c.on_updates(since, &body, more).unwrap(),
                        },
                        None => {}
                    }
                }
            }
        }
        // Settle: everything still in flight arrives, one more frame, all fetches answered.
        for f in in_flight.drain(..) {
            c.on_frame(&f).unwrap();
        }
        let f = s.tick(1);
        c.on_frame(&f).unwrap();
        s.log_start = 0;
        let mut answered = 0;
        while let Some(fetch) = c.next_fetch() {
            answered += 1;
            assert!(answered < 100, "round {round}: fetch loop");
            match fetch {
                Fetch::Board { .. } => {
                    let (b, seq) = s.board_body();
                    c.on_board(&b, seq).unwrap();
                }
                Fetch::Updates { since, .. } => {
                    let (body, more) = s.updates(since.0).unwrap();
                    c.on_updates(since, &body, more).unwrap();
                }
            }
        }
        assert_eq!(c.current(), Some(Seq(s.seq())), "round {round}");
        assert_eq!(c.target().board, s.board, "round {round}");
        assert!(c.is_settled());
    }
}
