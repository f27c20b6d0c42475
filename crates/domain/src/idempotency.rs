//! The `Idempotency-Key` a client sends with a placement, so that a resend of the same
//! intended placement (an HTTP client's or a proxy's automatic retry, or the page's own)
//! is answered with the first attempt's outcome instead of placing again.

use std::fmt;

/// 1 to 64 characters of `A-Z a-z 0-9 _ -`: enough for a UUID or 32 random bytes in
/// base64url, and safe inside a Redis key name and a log line.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    /// The key's bytes (checked ASCII), padded with zeros; inline so that a placement
    /// request stays `Copy`.
    bytes: [u8; IdempotencyKey::MAX_LEN],
    /// How many of `bytes` are the key.
    len: u8,
}

/// A header value that is not a valid key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be {allowed}")]
pub struct IdempotencyKeyError {
    /// What a valid key looks like.
    pub allowed: &'static str,
}

impl IdempotencyKey {
    /// Longest key accepted.
    pub const MAX_LEN: usize = 64;
    /// The rule, as told to clients.
    pub const ALLOWED: &'static str = "1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'";

    pub fn parse(s: &str) -> Result<Self, IdempotencyKeyError> {
        let ok = (1..=Self::MAX_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            let mut bytes = [0; Self::MAX_LEN];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Ok(Self {
                bytes,
                len: s.len() as u8,
            })
        } else {
            Err(IdempotencyKeyError {
                allowed: Self::ALLOWED,
            })
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).expect("checked ASCII")
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({:?})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert_eq!(IdempotencyKey::parse("a-1").unwrap().as_str(), "a-1");
        assert!(IdempotencyKey::parse("0f3a-B_9").is_ok());
        assert!(IdempotencyKey::parse(&"x".repeat(64)).is_ok());
        assert!(IdempotencyKey::parse(&"x".repeat(65)).is_err());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("a b").is_err());
        assert!(IdempotencyKey::parse("a:b").is_err());
        assert!(IdempotencyKey::parse("é").is_err());
    }
}
