//! Proof of work: the challenge the server signs, the solution the page finds, and the
//! checks between them. Pure: keys, times and ids are passed in (no clock, no randomness).
//!
//! # Format
//! A challenge is one ASCII string, opaque to clients:
//!
//! ```text
//! p1-<id: 32 hex>-<user: 16 hex>-<issued: unix ms>-<expires: unix ms>-<difficulty: bits>-<mac: 64 hex>
//! ```
//!
//! `mac` is HMAC-SHA256 under the [`PowKey`] of everything before `-<mac>`, so only the
//! server makes challenges, and the identity, lifetime and difficulty in it are the
//! server's. A solution is a nonce (1 to 20 decimal digits) such that
//! `SHA-256(challenge ":" nonce)` starts with at least `difficulty` zero bits; it travels as
//! `<challenge>.<nonce>` (the challenge has no `.`). The id names the challenge once solved
//! ([`OnceToken`]): the store accepts one placement per id.
//!
//! The vectors in `crates/domain/tests/fixtures/pow.json` pin the format, the hash input
//! and the zero-bit count; the page's worker (crates/web/static/pow-worker.js) is tested
//! against the same file.

use crate::{OnceToken, UserId};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The only algorithm: what `GET /api/pow` names.
pub const ALGORITHM: &str = "SHA-256";
/// The format's version prefix.
pub const VERSION: &str = "p1";
/// Longest lifetime of a challenge: a solution found later is refused.
pub const MAX_TTL_MS: i64 = 5 * 60 * 1000;
/// How far in the future a challenge's issuing time may be (instances' clocks differ).
pub const CLOCK_SKEW_MS: i64 = 30_000;
/// Hardest difficulty accepted: 32 bits is about 4 billion hashes, hours on a phone.
pub const MAX_DIFFICULTY: u8 = 32;
/// Longest nonce: a u64 in decimal.
pub const MAX_NONCE_DIGITS: usize = 20;
/// Longest `<challenge>.<nonce>` worth parsing (a valid one is about 170 bytes).
pub const MAX_SOLUTION_LEN: usize = 256;

type HmacSha256 = Hmac<Sha256>;

/// The key challenges are signed with: 32 bytes that every instance of a canvas shares.
#[derive(Clone)]
pub struct PowKey([u8; 32]);

impl PowKey {
    /// Derives the key from a longer secret (the cookie key, or `--pow-key`), so that a
    /// challenge's MAC is never a valid cookie signature or the other way round.
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"rplace proof-of-work key v1");
        Self(mac.finalize().into_bytes().into())
    }

    /// The raw key (for the test vectors).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length")
    }
}

impl std::fmt::Debug for PowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PowKey(..)")
    }
}

/// What a challenge says, once its MAC checked out (or before it is signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Random, unique: what the solved challenge is spent as.
    id: OnceToken,
    /// The identity it was issued to; nobody else may use its solution.
    user: UserId,
    /// When it was issued, unix ms.
    issued_ms: i64,
    /// When its solution stops being accepted, unix ms.
    expires_ms: i64,
    /// Leading zero bits the solution's hash needs.
    difficulty: u8,
}

/// Why a challenge could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("difficulty must be 1 to {MAX_DIFFICULTY} bits, got {0}")]
    Difficulty(u8),
    #[error("lifetime must be 1 ms to {MAX_TTL_MS} ms, got {0}")]
    Lifetime(i64),
}

/// Why a solution is refused. The messages are meant for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowError {
    #[error(
        "the proof is not `<challenge>.<nonce>` with a challenge from GET /api/pow and 1 to 20 decimal digits"
    )]
    Malformed,
    #[error("the challenge was not issued by this canvas (bad signature)")]
    Forged,
    #[error("the challenge was issued to another identity")]
    WrongUser,
    #[error("the challenge expired; fetch a new one from GET /api/pow")]
    Expired,
    #[error("the challenge is not valid yet (issued in the future)")]
    NotYetValid,
    #[error("the challenge asks {got} bits of work, this canvas needs {needed}")]
    TooEasy { got: u8, needed: u8 },
    #[error(
        "the nonce does not solve the challenge: its hash has {got} leading zero bits, {needed} needed"
    )]
    InsufficientWork { got: u32, needed: u8 },
}

impl Challenge {
    /// A challenge for `user`, valid from `issued_ms` for `ttl_ms`.
    pub fn new(
        id: [u8; 16],
        user: UserId,
        issued_ms: i64,
        ttl_ms: i64,
        difficulty: u8,
    ) -> Result<Self, ChallengeError> {
        if difficulty == 0 || difficulty > MAX_DIFFICULTY {
            return Err(ChallengeError::Difficulty(difficulty));
        }
        if !(1..=MAX_TTL_MS).contains(&ttl_ms) {
            return Err(ChallengeError::Lifetime(ttl_ms));
        }
        Ok(Self {
            id: OnceToken::from_bytes(id),
            user,
            issued_ms,
            expires_ms: issued_ms + ttl_ms,
            difficulty,
        })
    }

    pub fn id(&self) -> OnceToken {
        self.id
    }

    pub fn user(&self) -> UserId {
        self.user
    }

    pub fn issued_ms(&self) -> i64 {
        self.issued_ms
    }

    pub fn expires_ms(&self) -> i64 {
        self.expires_ms
    }

    pub fn difficulty(&self) -> u8 {
        self.difficulty
    }

    /// Everything the MAC covers.
    fn body(&self) -> String {
        format!(
            "{VERSION}-{}-{}-{}-{}-{}",
            self.id.to_hex(),
            self.user,
            self.issued_ms,
            self.expires_ms,
            self.difficulty
        )
    }

    /// The signed string the client solves.
    pub fn encode(&self, key: &PowKey) -> String {
        let body = self.body();
        let mut mac = key.mac();
        mac.update(body.as_bytes());
        format!("{body}-{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Reads a challenge and checks its MAC (in constant time). Says nothing yet about
    /// who may use it or until when: see [`verify`].
    pub fn decode(s: &str, key: &PowKey) -> Result<Self, PowError> {
        let (body, mac_hex) = s.rsplit_once('-').ok_or(PowError::Malformed)?;
        let tag = hex::decode(mac_hex).map_err(|_| PowError::Malformed)?;
        let mut mac = key.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&tag).map_err(|_| PowError::Forged)?;
        // Signed by us: the fields are ours, but parse them strictly all the same.
        let f: Vec<&str> = body.split('-').collect();
        let [version, id, user, issued, expires, difficulty] = f[..] else {
            return Err(PowError::Malformed);
        };
        if version != VERSION || id.len() != 32 {
            return Err(PowError::Malformed);
        }
        let mut id_bytes = [0u8; 16];
        hex::decode_to_slice(id, &mut id_bytes).map_err(|_| PowError::Malformed)?;
        let user = UserId::parse(user).ok_or(PowError::Malformed)?;
        let int = |v: &str| v.parse::<i64>().map_err(|_| PowError::Malformed);
        let c = Self {
            id: OnceToken::from_bytes(id_bytes),
            user,
            issued_ms: int(issued)?,
            expires_ms: int(expires)?,
            difficulty: difficulty.parse().map_err(|_| PowError::Malformed)?,
        };
        // Round trip: one challenge has one spelling (no leading zeros, no `+`).
        if c.body() != body {
            return Err(PowError::Malformed);
        }
        Ok(c)
    }
}

/// `SHA-256(challenge ":" nonce)`: the hash the work is measured on.
pub fn work(challenge: &str, nonce: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(challenge.as_bytes());
    h.update(b":");
    h.update(nonce.as_bytes());
    h.finalize().into()
}

/// Leading zero bits of a hash, most significant bit of the first byte first.
pub fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut n = 0;
    for &b in hash {
        if b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// The smallest nonce from `from` that solves `challenge` at `difficulty` bits: what a
/// client does (the page's worker does the same in JavaScript). Expected cost: 2^difficulty
/// hashes.
pub fn solve(challenge: &str, difficulty: u8, from: u64) -> u64 {
    (from..)
        .find(|n| leading_zero_bits(&work(challenge, &n.to_string())) >= u32::from(difficulty))
        .expect("some nonce below 2^64 solves a difficulty of at most 64 bits")
}

/// Splits `<challenge>.<nonce>`.
pub fn split_solution(solution: &str) -> Result<(&str, &str), PowError> {
    if solution.len() > MAX_SOLUTION_LEN {
        return Err(PowError::Malformed);
    }
    let (challenge, nonce) = solution.rsplit_once('.').ok_or(PowError::Malformed)?;
    if nonce.is_empty()
        || nonce.len() > MAX_NONCE_DIGITS
        || !nonce.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(PowError::Malformed);
    }
    Ok((challenge, nonce))
}

/// Checks a solution `<challenge>.<nonce>` sent by `user` at `now_ms` on a canvas that
/// needs `needed` bits: signature, identity, lifetime, difficulty, then the work. On
/// success the challenge, whose id the placement spends.
pub fn verify(
    key: &PowKey,
    solution: &str,
    user: UserId,
    now_ms: i64,
    needed: u8,
) -> Result<Challenge, PowError> {
    let (text, nonce) = split_solution(solution)?;
    let c = Challenge::decode(text, key)?;
    if c.user != user {
        return Err(PowError::WrongUser);
    }
    if now_ms >= c.expires_ms || c.expires_ms - c.issued_ms > MAX_TTL_MS {
        return Err(PowError::Expired);
    }
    if c.issued_ms > now_ms + CLOCK_SKEW_MS {
        return Err(PowError::NotYetValid);
    }
    if c.difficulty < needed {
        return Err(PowError::TooEasy {
            got: c.difficulty,
            needed,
        });
    }
    let got = leading_zero_bits(&work(text, nonce));
    if got < u32::from(c.difficulty) {
        return Err(PowError::InsufficientWork {
            got,
            needed: c.difficulty,
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests;
