//! What checking a proof of work costs the server: `rplace_domain::pow::verify` (parse,
//! HMAC-SHA256 of the challenge, identity and lifetime checks, one SHA-256 of the work)
//! on a valid solution and on the refusals, and issuing a challenge (HMAC + formatting).
//! Single-threaded, no criterion: each case runs `rounds` times `iters` iterations and
//! the median round's ns per call is printed.
//!
//! ```sh
//! cargo run --release -p rplace-bench --example pow_verify -- 200000 7 18
//! ```
//! Arguments: iterations per round, rounds, difficulty (bits) of the solved challenge.
//! Spending the solution (one store write with the placement) is not included: it rides
//! on the placement's own transaction or Lua call.

use rplace_domain::UserId;
use rplace_domain::pow::{self, Challenge, PowKey};
use std::hint::black_box;
use std::time::Instant;

/// A named case: its body gets the iteration number.
type Case<'a> = (&'static str, Box<dyn Fn(u32) + 'a>);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iters: u32 = args.get(1).map_or(200_000, |s| s.parse().unwrap());
    let rounds: usize = args.get(2).map_or(7, |s| s.parse().unwrap());
    let bits: u8 = args.get(3).map_or(18, |s| s.parse().unwrap());
    let key = PowKey::derive(&[0x5a; 64]);
    let user = UserId(0x0123_4567_89ab_cdef);
    let now = 1_764_633_600_000;
    let c = Challenge::new([7; 16], user, now, pow::MAX_TTL_MS, bits).unwrap();
    let text = c.encode(&key);
    let t = Instant::now();
    let nonce = pow::solve(&text, bits, 0);
    println!(
        "solved a {bits}-bit challenge natively in {:?} ({nonce} hashes)",
        t.elapsed()
    );
    let good = format!("{text}.{nonce}");
    let forged = format!("{}0.{nonce}", &text[..text.len() - 1]);
    let lazy = format!("{text}.0");

    let cases: [Case; 5] = [
        (
            "verify (valid)",
            Box::new(|_| {
                black_box(pow::verify(&key, black_box(&good), user, now + 1, bits).unwrap());
            }),
        ),
        (
            "verify (forged MAC)",
            Box::new(|_| {
                black_box(pow::verify(&key, black_box(&forged), user, now + 1, bits).unwrap_err());
            }),
        ),
        (
            "verify (wrong user)",
            Box::new(|_| {
                black_box(pow::verify(&key, black_box(&good), UserId(1), now, bits).unwrap_err());
            }),
        ),
        (
            "verify (work short)",
            Box::new(|_| {
                black_box(pow::verify(&key, black_box(&lazy), user, now + 1, bits).unwrap_err());
            }),
        ),
        (
            "issue (new + sign)",
            Box::new(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_le_bytes());
                let c = Challenge::new(id, user, now, pow::MAX_TTL_MS, bits).unwrap();
                black_box(c.encode(&key));
            }),
        ),
    ];
    println!("{iters} iterations x {rounds} rounds, median round:");
    for (name, f) in &cases {
        let mut ns: Vec<f64> = (0..rounds)
            .map(|_| {
                let t = Instant::now();
                for i in 0..iters {
                    f(i);
                }
                t.elapsed().as_nanos() as f64 / f64::from(iters)
            })
            .collect();
        ns.sort_by(f64::total_cmp);
        let (lo, mid, hi) = (ns[0], ns[rounds / 2], ns[rounds - 1]);
        println!("{name:<22} {mid:>8.0} ns/call  (min {lo:.0}, max {hi:.0})");
    }
}
