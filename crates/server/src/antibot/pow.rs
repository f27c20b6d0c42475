//! The server's side of the proof of work: issuing signed challenges and checking the
//! solutions placements carry. The format and the checks are the domain's
//! ([`rplace_domain::pow`]); this adds the key, the clock and the randomness.

use rplace_domain::UserId;
use rplace_domain::pow::{self, ALGORITHM, Challenge, MAX_TTL_MS, PowError, PowKey};
use serde::Serialize;

/// The request header that carries `<challenge>.<nonce>`.
pub const HEADER: &str = "x-rplace-pow";

/// A challenge as `GET /api/pow` and a `428 pow_required` answer give it.
#[derive(Debug, Clone, Serialize)]
pub struct Issued {
    /// The signed string to solve; opaque to clients.
    pub challenge: String,
    /// Leading zero bits of SHA-256(challenge ":" nonce) needed.
    pub difficulty: u8,
    /// Always "SHA-256".
    pub algorithm: &'static str,
    /// Until when a solution is accepted, unix ms.
    pub expires: i64,
}

/// Issues and checks challenges of one canvas.
pub struct Pow {
    /// Signs challenges; the same on every instance.
    key: PowKey,
    /// Bits of work asked and needed.
    difficulty: u8,
}

impl Pow {
    /// `secret`: `--pow-key`, else the cookie key's bytes.
    pub fn new(secret: &[u8], difficulty: u8) -> Self {
        Self {
            key: PowKey::derive(secret),
            difficulty,
        }
    }

    pub fn difficulty(&self) -> u8 {
        self.difficulty
    }

    /// A fresh challenge for `user`, valid for [`MAX_TTL_MS`] from `now_ms`.
    pub fn issue(&self, user: UserId, now_ms: i64) -> Issued {
        let c = Challenge::new(rand::random(), user, now_ms, MAX_TTL_MS, self.difficulty)
            .expect("the difficulty was checked at start and the lifetime is the maximum");
        Issued {
            challenge: c.encode(&self.key),
            difficulty: c.difficulty(),
            algorithm: ALGORITHM,
            expires: c.expires_ms(),
        }
    }

    /// Checks a solution sent by `user`; on success the challenge (its id is spent with
    /// the placement).
    pub fn verify(&self, solution: &str, user: UserId, now_ms: i64) -> Result<Challenge, PowError> {
        pow::verify(&self.key, solution, user, now_ms, self.difficulty)
    }
}

/// The `reason` code of a refused solution, for clients that branch on it.
pub fn reason(e: &PowError) -> &'static str {
    match e {
        PowError::Malformed => "malformed",
        PowError::Forged => "forged",
        PowError::WrongUser => "wrong_user",
        PowError::Expired => "expired",
        PowError::NotYetValid => "not_yet_valid",
        PowError::TooEasy { .. } => "too_easy",
        PowError::InsufficientWork { .. } => "insufficient_work",
    }
}
