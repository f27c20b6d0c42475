//! The audit log: every admin and moderator action is recorded here by the handler that
//! performs it, after it took effect. Stored by the records area of the store
//! ([`rplace_store::records::Records::add_audit`]); read at `GET /api/admin/audit`.

use crate::app::AppState;
use crate::auth::Actor;
use crate::error::ApiError;
use serde_json::Value;

/// One action, as its handler describes it.
#[derive(Debug, Clone)]
pub struct Action<'a> {
    /// What was done: `ban`, `unban`, `rollback`, `restore`, `protect`, `unprotect`,
    /// `fill`, `stamp`, `resolve_report`, `grant_moderator`, `revoke_moderator`,
    /// `delete_template`.
    pub kind: &'static str,
    /// The moderator's reason, if they gave one.
    pub reason: Option<&'a str>,
    /// How many pixels it changed (0 for actions that place nothing).
    pub pixels: u64,
    /// The action's parameters and results (ids, rectangles, seqs), as JSON.
    pub detail: Value,
}

/// Records `action` by `actor`. Called once the action took effect, so the log never
/// shows what did not happen.
pub async fn record(app: &AppState, actor: &Actor, action: Action<'_>) -> Result<(), ApiError> {
    use rplace_store::records::{NewAudit, Records};
    let entry = NewAudit {
        at_ms: rplace_store::now_ms(),
        actor: actor.user,
        actor_name: actor.name.clone(),
        kind: action.kind.to_string(),
        reason: action.reason.map(str::to_string),
        pixels: action.pixels,
        detail: action.detail.to_string(),
    };
    match app.store.add_audit(entry).await {
        Ok(id) => {
            tracing::info!(id, kind = action.kind, actor = %actor.user, pixels = action.pixels, "audited");
            Ok(())
        }
        Err(e) => {
            // The action itself took effect: the handler reports this failure, and the
            // log line keeps what the audit table could not.
            tracing::error!(
                kind = action.kind,
                actor = %actor.user,
                pixels = action.pixels,
                detail = %action.detail,
                error = %rplace_store::Chain(&e),
                "could not write the audit entry"
            );
            Err(e.into())
        }
    }
}
