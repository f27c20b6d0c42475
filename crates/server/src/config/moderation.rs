//! The moderation settings: per-address limits for accounts and anonymous visitors, report limits, how large a rollback may be.

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct ModerationArgs {
    /// Placements per minute one IP address may make (sustained) when a logged-in account
    /// places; `--ip-rate` is the anonymous visitors' limit. 0 turns it off. Higher by
    /// default: an account costs more to make than a cookie.
    #[arg(long, env = "RPLACE_IP_RATE_ACCOUNT", default_value_t = 240)]
    pub ip_rate_account: u32,

    /// Placements one IP address may make back to back by accounts before
    /// `ip-rate-account` applies.
    #[arg(long, env = "RPLACE_IP_BURST_ACCOUNT", default_value_t = 120)]
    pub ip_burst_account: u32,

    /// Most pixels one rollback, restore, fill or stamp may change (default: a whole
    /// 2048x2048 board). Larger ones are refused with 413; split them by rect or time.
    #[arg(long, env = "RPLACE_MAX_REWRITE_PIXELS", default_value_t = 4_194_304)]
    pub max_rewrite_pixels: u64,
}
