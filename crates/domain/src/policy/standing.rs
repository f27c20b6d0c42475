//! The parts of [`super::Prior`] that come from moderation and anti-bot state rather than
//! from the placer's own history: the ban that may apply, and a one-time proof's record.

use super::Now;

/// How long a spent one-time proof is remembered. Challenges are valid for at most five
/// minutes, so ten leave a margin for clock skew between instances.
pub const ONCE_TTL_MS: i64 = 600_000;

/// One ban as the rule sees it: which one (so that the caller can show its reason) and
/// until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanRef {
    /// The ban's id, as the store numbers bans.
    id: u64,
    /// When it stops applying, unix ms; `None`: never.
    until_ms: Option<i64>,
}

impl BanRef {
    pub fn new(id: u64, until_ms: Option<i64>) -> Self {
        Self { id, until_ms }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn until_ms(&self) -> Option<i64> {
        self.until_ms
    }

    /// Whether the ban still applies at `now`: it ends exactly at `until_ms`.
    pub fn applies_at(&self, now: Now) -> bool {
        self.until_ms.is_none_or(|u| now.millis() < u)
    }
}

/// Of several bans on one placer (their user and address bans together), the one to
/// report: of those that still apply, one without end, else the one that ends last (the
/// lowest id on a tie, so every backend names the same one).
pub fn applying_ban(bans: impl IntoIterator<Item = BanRef>, now: Now) -> Option<BanRef> {
    let rank = |b: &BanRef| (b.until_ms.map_or(i64::MAX, |u| u), std::cmp::Reverse(b.id));
    bans.into_iter()
        .filter(|b| b.applies_at(now))
        .max_by_key(rank)
}

/// What the store knows about the one-time proof a placement carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OnceState {
    /// Until when (unix ms) the proof counts as spent, if an accepted placement spent it.
    spent_until_ms: Option<i64>,
}

impl OnceState {
    pub fn new(spent_until_ms: Option<i64>) -> Self {
        Self { spent_until_ms }
    }

    pub fn spent_until_ms(&self) -> Option<i64> {
        self.spent_until_ms
    }

    /// Whether the proof was spent and that is still remembered at `now`.
    pub fn is_spent_at(&self, now: Now) -> bool {
        self.spent_until_ms.is_some_and(|u| now.millis() < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_applying_ban_is_reported() {
        let now = Now::from_micros(10_000_000);
        let a = BanRef::new(1, Some(9_000));
        let b = BanRef::new(2, Some(20_000));
        let c = BanRef::new(3, None);
        assert_eq!(applying_ban([a], now), None, "ended");
        assert_eq!(applying_ban([a, b], now), Some(b));
        assert_eq!(applying_ban([b, c, a], now), Some(c));
        assert_eq!(
            applying_ban([BanRef::new(7, None), BanRef::new(5, None)], now),
            Some(BanRef::new(5, None))
        );
        assert!(!BanRef::new(1, Some(10_000)).applies_at(now));
        assert!(BanRef::new(1, Some(10_001)).applies_at(now));
    }

    #[test]
    fn a_spent_proof_is_forgotten_after_its_time() {
        let now = Now::from_micros(10_000_000);
        assert!(!OnceState::default().is_spent_at(now));
        assert!(OnceState::new(Some(10_001)).is_spent_at(now));
        assert!(!OnceState::new(Some(10_000)).is_spent_at(now));
    }
}
