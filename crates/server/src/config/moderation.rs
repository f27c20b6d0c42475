//! The moderation settings: per-address limits for accounts and anonymous visitors, report limits, how large a rollback may be.

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct ModerationArgs {}
