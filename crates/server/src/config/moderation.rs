//! The moderation settings: per-address limits for accounts and anonymous visitors, report limits, how large a rollback may be.

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct ModerationArgs {
    /// Most pixels one rollback, restore, fill or stamp may change (default: a whole
    /// 2048x2048 board). Larger ones are refused with 413; split them by rect or time.
    #[arg(long, env = "RPLACE_MAX_REWRITE_PIXELS", default_value_t = 4_194_304)]
    pub max_rewrite_pixels: u64,
}
