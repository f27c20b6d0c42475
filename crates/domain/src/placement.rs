//! Placements, their global order, identities and the cooldown rule.

use crate::board::Coord;
use crate::palette::ColorIndex;
use std::fmt;

/// The global, gap-free sequence number of a placement. The first placement is 1;
/// a board that has seen no placement is at seq 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seq(pub u64);

impl Seq {
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An anonymous identity. It is carried in a signed cookie, so knowing one lets nobody
/// act as it; its hex form is what others see as "who placed this pixel".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub u64);

impl UserId {
    /// Parses the 16-digit lowercase hex form.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 16 {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(UserId)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One accepted placement, as stored and as broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Its position in the global order.
    pub seq: Seq,
    /// Where it was placed.
    pub coord: Coord,
    /// The new color of that pixel.
    pub color: ColorIndex,
    /// Who placed it.
    pub user: UserId,
    /// When it was accepted, in unix milliseconds.
    pub at_ms: i64,
}

/// The time a user must wait between two placements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cooldown {
    /// Milliseconds; 0 means no cooldown.
    ms: i64,
}

impl Cooldown {
    pub fn from_secs(secs: u64) -> Self {
        Self {
            ms: secs.saturating_mul(1000) as i64,
        }
    }

    pub fn from_millis(ms: u64) -> Self {
        Self { ms: ms as i64 }
    }

    pub fn as_millis(self) -> i64 {
        self.ms
    }

    /// When a user whose last accepted placement was at `last_ms` may place again.
    pub fn next_at(self, last_ms: i64) -> i64 {
        last_ms + self.ms
    }

    /// Decides a placement at `now_ms`: `Ok(next_at)` if it is allowed (and when the user
    /// may place after it), `Err(next_at)` with the moment it becomes allowed otherwise.
    pub fn check(self, last_ms: Option<i64>, now_ms: i64) -> Result<i64, i64> {
        match last_ms {
            Some(last) if self.ms > 0 && now_ms < self.next_at(last) => Err(self.next_at(last)),
            _ => Ok(self.next_at(now_ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldown_rule() {
        let c = Cooldown::from_secs(5);
        assert_eq!(c.check(None, 1_000), Ok(6_000));
        assert_eq!(c.check(Some(1_000), 5_999), Err(6_000));
        assert_eq!(c.check(Some(1_000), 6_000), Ok(11_000));
        let none = Cooldown::from_secs(0);
        assert_eq!(none.check(Some(1_000), 1_000), Ok(1_000));
    }

    #[test]
    fn user_ids_round_trip_through_hex() {
        let u = UserId(0x00ab_cdef_0123_4567);
        assert_eq!(u.to_string(), "00abcdef01234567");
        assert_eq!(UserId::parse(&u.to_string()), Some(u));
        assert_eq!(UserId::parse("xyz"), None);
    }
}
