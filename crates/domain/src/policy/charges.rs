//! The charges model of the user rule: a pool of up to `max` placements, one more regained
//! every `every_ms` (wplace's charges, pxls's stacking), instead of a fixed cooldown.
//!
//! It is a GCRA on a per-user theoretical arrival time (TAT, unix ms): each accepted
//! placement moves the TAT one `every_ms` later (from now if it lies in the past); a
//! placement is allowed while the TAT runs ahead of now by at most `(max - 1) * every_ms`.
//! A TAT at or before now is a full pool, so a user with no state (a new one, or one
//! whose state expired) has a full pool. A fixed cooldown C is the same GCRA with
//! `max = 1, every_ms = C`; the fixed model keeps its own state (the last placement's
//! time) so that the data stored before this model existed keeps its meaning.
//!
//! [`Charges::status`] turns a TAT into what a person sees (how many charges now, when the
//! next arrives); the stores answer it from their state, the page counts it down.

/// Most charges a pool may hold: enough for any event, small enough that
/// `max * every_ms` never overflows.
pub const MAX_CHARGES: u32 = 100_000;
/// Longest time between two charges: one day, in ms.
pub const MAX_EVERY_MS: i64 = 86_400_000;

/// The charges model's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charges {
    /// Size of the pool, at least 1.
    max: u32,
    /// Time to regain one charge, unix ms, at least 1.
    every_ms: i64,
}

/// Why [`Charges::new`] refuses its parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChargesError {
    #[error("the pool must hold from 1 to {MAX_CHARGES} charges, got {0}")]
    Max(u64),
    #[error("a charge must take from 1 ms to {MAX_EVERY_MS} ms to come back, got {0} ms")]
    Every(i64),
}

/// What a user's pool holds at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeStatus {
    /// Charges available now (0 to `max`).
    pub charges: u32,
    /// When the next charge arrives (unix ms); `None` when the pool is full.
    pub next_charge_at_ms: Option<i64>,
}

impl Charges {
    pub fn new(max: u64, every_ms: i64) -> Result<Self, ChargesError> {
        if !(1..=u64::from(MAX_CHARGES)).contains(&max) {
            return Err(ChargesError::Max(max));
        }
        if !(1..=MAX_EVERY_MS).contains(&every_ms) {
            return Err(ChargesError::Every(every_ms));
        }
        Ok(Self {
            max: max as u32,
            every_ms,
        })
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    pub fn every_ms(&self) -> i64 {
        self.every_ms
    }

    /// How far the TAT may run ahead of now for a placement to be allowed.
    pub fn tolerance_ms(&self) -> i64 {
        (i64::from(self.max) - 1) * self.every_ms
    }

    /// The rule: `Ok(new TAT)` if a charge is available at `now_ms`, else `Err(when the
    /// next charge arrives)`. The caller stores the new TAT only if every other rule
    /// accepts too, so a refusal spends nothing.
    pub fn spend(&self, tat_ms: Option<i64>, now_ms: i64) -> Result<i64, i64> {
        let tat = tat_ms.unwrap_or(now_ms).max(now_ms);
        let allowed_at = tat - self.tolerance_ms();
        if allowed_at > now_ms {
            return Err(allowed_at);
        }
        Ok(tat + self.every_ms)
    }

    /// When a user whose TAT is `tat_ms` may place next; `None` if now.
    pub fn next_at(&self, tat_ms: Option<i64>, now_ms: i64) -> Option<i64> {
        tat_ms
            .map(|t| t - self.tolerance_ms())
            .filter(|&at| at > now_ms)
    }

    /// The pool at `now_ms` of a user whose TAT is `tat_ms`.
    pub fn status(&self, tat_ms: Option<i64>, now_ms: i64) -> ChargeStatus {
        let ahead = tat_ms.map_or(0, |t| (t - now_ms).max(0));
        if ahead == 0 {
            return ChargeStatus {
                charges: self.max,
                next_charge_at_ms: None,
            };
        }
        // Charges still missing, rounded up: a charge under way is not there yet. A pool
        // made smaller by a restart with a lower max may miss more than it holds.
        let missing = (ahead + self.every_ms - 1) / self.every_ms;
        let counted = missing.min(i64::from(self.max));
        ChargeStatus {
            charges: self.max - counted as u32,
            next_charge_at_ms: Some(tat_ms.unwrap_or(now_ms) - (counted - 1) * self.every_ms),
        }
    }

    /// The TAT after a placement known to have been accepted at `at_ms` (rebuilding the
    /// state from a log): one charge spent, from `at_ms` if the pool was full then. Never
    /// more than a whole pool ahead of `at_ms`, since placements the pool did not
    /// decide (exempt ones, moderation) are in the log too.
    pub fn recorded(&self, tat_ms: Option<i64>, at_ms: i64) -> i64 {
        let max_ahead = i64::from(self.max) * self.every_ms;
        (tat_ms.unwrap_or(at_ms).max(at_ms) + self.every_ms).min(at_ms + max_ahead)
    }

    /// How far back a log matters for the pools: a placement older than a whole pool's
    /// regain time has been regained.
    pub fn window_ms(&self) -> i64 {
        i64::from(self.max) * self.every_ms
    }

    /// Whether a TAT says nothing more than no state at `now_ms` (a full pool): the store
    /// may forget it.
    pub fn is_full_at(tat_ms: Option<i64>, now_ms: i64) -> bool {
        tat_ms.is_none_or(|t| t <= now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 30_000;

    fn pool() -> Charges {
        Charges::new(3, T).unwrap()
    }

    #[test]
    fn a_new_user_has_a_full_pool() {
        assert_eq!(
            pool().status(None, 1_000),
            ChargeStatus {
                charges: 3,
                next_charge_at_ms: None
            }
        );
        assert_eq!(pool().next_at(None, 1_000), None);
    }

    #[test]
    fn spending_down_then_refused_until_the_next_charge() {
        let c = pool();
        let now = 1_000_000;
        let mut tat = None;
        for left in [2, 1, 0] {
            tat = Some(c.spend(tat, now).expect("a charge is left"));
            let s = c.status(tat, now);
            assert_eq!(s.charges, left);
            assert_eq!(s.next_charge_at_ms, Some(now + T));
        }
        assert_eq!(c.spend(tat, now), Err(now + T));
        assert_eq!(c.next_at(tat, now), Some(now + T));
        // Refused one ms early, allowed on time.
        assert_eq!(c.spend(tat, now + T - 1), Err(now + T));
        assert_eq!(c.spend(tat, now + T), Ok(now + 4 * T));
    }

    #[test]
    fn charges_come_back_one_per_period_and_stop_at_the_max() {
        let c = pool();
        let now = 1_000_000;
        let tat = Some(now + 3 * T); // empty
        assert_eq!(c.status(tat, now + T / 2).charges, 0);
        assert_eq!(c.status(tat, now + T).charges, 1);
        assert_eq!(c.status(tat, now + T).next_charge_at_ms, Some(now + 2 * T));
        assert_eq!(c.status(tat, now + 2 * T + 1).charges, 2);
        assert_eq!(c.status(tat, now + 3 * T).charges, 3);
        assert_eq!(c.status(tat, now + 3 * T).next_charge_at_ms, None);
        assert_eq!(c.status(tat, now + 100 * T).charges, 3);
        // A long idle pool spends from now: the max is a cap, not a credit.
        assert_eq!(c.spend(tat, now + 100 * T), Ok(now + 101 * T));
        assert!(Charges::is_full_at(tat, now + 3 * T));
        assert!(!Charges::is_full_at(tat, now + 3 * T - 1));
    }

    #[test]
    fn a_pool_of_one_is_a_fixed_cooldown() {
        let c = Charges::new(1, 5_000).unwrap();
        let tat = c.spend(None, 1_000).unwrap();
        assert_eq!(tat, 6_000);
        assert_eq!(c.spend(Some(tat), 5_999), Err(6_000));
        assert_eq!(c.spend(Some(tat), 6_000), Ok(11_000));
    }

    #[test]
    fn a_pool_that_misses_more_than_it_holds_reports_zero() {
        let c = Charges::new(2, T).unwrap();
        let s = c.status(Some(10 * T), 0);
        assert_eq!(s.charges, 0);
        assert_eq!(s.next_charge_at_ms, Some(9 * T));
        assert_eq!(c.spend(Some(10 * T), 0), Err(9 * T));
    }

    #[test]
    fn parameters_are_bounded() {
        assert_eq!(Charges::new(0, T), Err(ChargesError::Max(0)));
        assert!(Charges::new(u64::from(MAX_CHARGES) + 1, T).is_err());
        assert_eq!(Charges::new(3, 0), Err(ChargesError::Every(0)));
        assert!(Charges::new(3, MAX_EVERY_MS + 1).is_err());
        assert!(Charges::new(u64::from(MAX_CHARGES), MAX_EVERY_MS).is_ok());
    }
}
