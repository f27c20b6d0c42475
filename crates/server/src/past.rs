//! The canvas at a past moment (`?seq=S` or `?at=T` on `GET /api/board`, `/api/board.png`,
//! `/api/tiles/{tx}/{ty}` and its `.png`): the moment's parsing, the concurrency cap and
//! the bound on the log a read replays. The store's side is [`rplace_store::past`]; the
//! handlers are in `routes::past`.
//!
//! - **Bounded**: at most `--history-concurrency` past reads at once (a board read holds
//!   the whole board and its keyframes); more get `503 busy`. Each read replays at most
//!   twice `--history-keyframe-every` rows of the log.
//! - **Immutable**: the canvas at a seq never changes, so its answers are cacheable for
//!   a year; a time after the newest placement may still gain placements and is not.

use crate::error::ApiError;
use rplace_store::past::Moment;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A moment asked for in the query: `seq=S` (a seq from 0) or `at=T` (unix ms), never
/// both. Parsed, so holding one means it is well formed (not yet that it is in range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PastMoment(pub Moment);

impl PastMoment {
    /// The moment in `q`, `None` if it asks for none (the live canvas).
    pub fn parse(q: &HashMap<String, String>) -> Result<Option<Self>, ApiError> {
        match (q.get("seq"), q.get("at")) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(ApiError::InvalidQuery {
                field: "seq",
                message: "give seq or at, not both".into(),
            }),
            (Some(s), None) => s
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| *s <= i64::MAX as u64)
                .map(|s| Some(Self(Moment::Seq(rplace_domain::Seq(s)))))
                .ok_or_else(|| ApiError::InvalidQuery {
                    field: "seq",
                    message: format!("seq must be a placement's seq from 0, got {s:?}"),
                }),
            (None, Some(t)) => t
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|t| *t >= 0)
                .map(|t| Some(Self(Moment::At(t))))
                .ok_or_else(|| ApiError::InvalidQuery {
                    field: "at",
                    message: format!("at must be a time in unix milliseconds from 0, got {t:?}"),
                }),
        }
    }
}

/// What every past read of this instance shares.
#[derive(Clone)]
pub struct PastReads {
    /// One permit per read that may run at once.
    permits: Arc<Semaphore>,
    /// The cap, for the error message.
    pub max: usize,
    /// Most log rows one read replays after its keyframes: twice the interval, since the
    /// keyframer builds a step only once the head is a whole interval past the last mark.
    pub tail: u64,
}

impl PastReads {
    /// `concurrency`: reads at once (at least 1); `every`: the keyframe interval.
    pub fn new(concurrency: usize, every: u64) -> Self {
        let max = concurrency.max(1);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            tail: every.clamp(1, rplace_store::past::MAX_KEYFRAME_EVERY) * 2,
        }
    }

    /// A permit for one read, or `503 busy` if as many run as may.
    pub fn try_start(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::PastBusy { max: self.max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn moments_parse_or_say_what_is_allowed() {
        assert_eq!(PastMoment::parse(&q(&[])).unwrap(), None);
        assert_eq!(
            PastMoment::parse(&q(&[("seq", "12")])).unwrap(),
            Some(PastMoment(Moment::Seq(rplace_domain::Seq(12))))
        );
        assert_eq!(
            PastMoment::parse(&q(&[("at", "1700000000000")])).unwrap(),
            Some(PastMoment(Moment::At(1_700_000_000_000)))
        );
        for bad in [
            &[("seq", "-1")][..],
            &[("seq", "x")],
            &[("seq", "18446744073709551615")],
            &[("at", "-5")],
            &[("seq", "1"), ("at", "2")],
        ] {
            assert!(PastMoment::parse(&q(bad)).is_err(), "{bad:?}");
        }
    }
}
