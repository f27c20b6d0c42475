//! A repeat of an idempotency key in shared mode. The placement script answers it with
//! the first accepted attempt's outcome, atomically with every other placement, so two
//! attempts with one key never both place, on any instance. But that first attempt may
//! not be durable yet (its instance is still writing it, or died before it could), and a
//! repeat must not get `200` for a placement that could still be lost: it is answered
//! only once the seq is in PostgreSQL with this user's placement, waiting for it up to the
//! ack timeout, else `Unavailable`, just as the first attempt would have answered.

use super::Inner;
use crate::{BackendError, NewPlacement, PlaceError, Placed};
use std::time::{Duration, Instant};

/// How often the history is asked whether the first attempt has arrived.
const POLL: Duration = Duration::from_millis(20);

/// `placed` (the first attempt's outcome) once its placement is durable.
pub(crate) async fn confirm(
    inner: &Inner,
    p: &NewPlacement,
    placed: Placed,
) -> Result<Placed, PlaceError> {
    let deadline = Instant::now() + inner.cfg.ack_timeout;
    loop {
        match inner.history.placement_at(placed.seq).await {
            Ok(Some(stored)) if stored.user == p.user => return Ok(placed),
            Ok(Some(_)) => {
                // The first attempt was made on a Redis state that a rebuild replaced; its
                // seq now belongs to another placement: it was never kept. Forget the key
                // so that a retry is decided afresh.
                if let Some(key) = &p.idempotency_key
                    && let Err(e) = inner.live.forget_idempotency(p.user, key).await
                {
                    tracing::warn!(error = %e, "could not forget an idempotency key");
                }
                return Err(BackendError::ReplayLost.into());
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "idempotency check: history read failed"),
        }
        if Instant::now() + POLL > deadline {
            return Err(BackendError::ReplayNotSaved { seq: placed.seq.0 }.into());
        }
        tokio::time::sleep(POLL).await;
    }
}
