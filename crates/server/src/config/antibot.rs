//! The anti-bot settings: when a proof of work is required and how hard it is, and the optional third-party captcha.

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct AntibotArgs {}
