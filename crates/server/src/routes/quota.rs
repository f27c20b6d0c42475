//! What the API tells a user about their own limit: `next_at` in both cooldown models and,
//! in the charges model, the pool (`charges`, `next_charge_at`) and the model's
//! parameters. The numbers come from the domain's `Params::quota` through the store; this
//! only shapes them as JSON (docs/API.md).

use crate::app::AppState;
use crate::error::ApiError;
use rplace_domain::UserId;
use rplace_domain::policy::{ChargeStatus, Params, Quota};
use rplace_store::{Placed, Store};
use serde::Serialize;
use serde_json::{Value, json};

/// The `user` object of `GET /api/config`.
#[derive(Serialize)]
pub struct UserInfo {
    /// The user's id (hex).
    id: String,
    /// When they may place next (unix ms); null if now.
    next_at: Option<i64>,
    /// Their pool, in the charges model only.
    #[serde(flatten)]
    pool: Option<Pool>,
}

/// A pool as the API shows it.
#[derive(Serialize)]
struct Pool {
    /// Charges available now.
    charges: u32,
    /// When the next charge arrives (unix ms); null when full.
    next_charge_at: Option<i64>,
}

impl From<ChargeStatus> for Pool {
    fn from(s: ChargeStatus) -> Self {
        Pool {
            charges: s.charges,
            next_charge_at: s.next_charge_at_ms,
        }
    }
}

impl UserInfo {
    pub fn new(user: UserId, quota: Quota) -> Self {
        Self {
            id: user.to_string(),
            next_at: quota.next_at_ms(),
            pool: quota.charges().map(Pool::from),
        }
    }
}

/// The model's fields of `GET /api/config`: `cooldown_model`, and `charges_max` and
/// `charge_every_ms` (null in the fixed model).
pub fn model_fields(policy: &Params) -> [(&'static str, Value); 3] {
    let c = policy.charges();
    [
        (
            "cooldown_model",
            json!(if c.is_some() { "charges" } else { "fixed" }),
        ),
        ("charges_max", json!(c.map(|c| c.max()))),
        ("charge_every_ms", json!(c.map(|c| c.every_ms()))),
    ]
}

/// Adds the pool left to a placement's answer, in the charges model. A replayed answer
/// carries none (the store remembers only the first outcome's seq and times): the pool as
/// it is now is answered then, or, if the store cannot say, nothing (the placement stands;
/// `GET /api/config` tells the pool later).
pub async fn add_pool(app: &AppState, user: UserId, placed: &Placed, body: &mut Value) {
    if app.settings.policy.charges().is_none() {
        return;
    }
    let status = match placed.charges {
        Some(s) => Some(s),
        None => match app.store.user_quota(user).await {
            Ok(q) => q.charges(),
            Err(e) => {
                tracing::warn!(error = %rplace_store::Chain(&e), "reading a pool for a replayed answer failed");
                None
            }
        },
    };
    if let Some(s) = status {
        body["charges"] = json!(s.charges);
        body["next_charge_at"] = json!(s.next_charge_at_ms);
    }
}

/// A refused placement as the API answers it: in the charges model a cooldown refusal
/// means an empty pool, and says when its next charge arrives.
pub fn refusal(app: &AppState, e: rplace_store::PlaceError) -> ApiError {
    let charges = app.settings.policy.charges().is_some();
    match ApiError::from(e) {
        ApiError::Cooldown {
            next_at,
            retry_after_ms,
            ..
        } if charges => ApiError::Cooldown {
            next_at,
            retry_after_ms,
            next_charge_at: Some(next_at),
        },
        other => other,
    }
}
