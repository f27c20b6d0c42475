//! The anti-bot settings: when a proof of work is required and how hard it is, and the optional third-party captcha.
//! Parsed into `crate::antibot::Antibot` at start (see `AntibotArgs::parse`).

use super::{ConfigError, bad};
use crate::antibot::mode::{Auto, Mode};
use clap::{Args, ValueEnum};
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct AntibotArgs {
    /// When a placement needs a solved proof-of-work challenge (GET /api/pow): off,
    /// first (an identity's first placement), every:N (then every N placements) or auto
    /// (every placement from an address whose rate looks automated; see --pow-auto-*).
    #[arg(long = "pow", env = "RPLACE_POW", default_value = "off")]
    pub pow: String,

    /// Leading zero bits of SHA-256 a solution needs (1 to 32): each bit doubles the
    /// work. 18 takes about 1 s on a phone-class CPU (BENCHMARKS.md, "Issue 9: anti-bot").
    #[arg(long, env = "RPLACE_POW_DIFFICULTY", default_value_t = 18)]
    pub pow_difficulty: u8,

    /// Hex secret (at least 32 bytes) the challenges are signed with; every instance of a
    /// canvas needs the same. Default: derived from the cookie key.
    #[arg(long, env = "RPLACE_POW_KEY", hide_env_values = true)]
    pub pow_key: Option<String>,

    /// `auto`: placements per minute from one address (IPv6: one --ipv6-prefix) before
    /// its placements need proofs.
    #[arg(long, env = "RPLACE_POW_AUTO_PER_MINUTE", default_value_t = 20)]
    pub pow_auto_per_minute: u32,

    /// `auto`: an address whose last 8 intervals between placements (each under a
    /// minute) differ by at most this many ms looks scripted; 0 turns the rule off.
    #[arg(long, env = "RPLACE_POW_AUTO_JITTER_MS", default_value_t = 20)]
    pub pow_auto_jitter_ms: u32,

    /// A third-party captcha whose token (header X-Rplace-Captcha) placements need, as
    /// --captcha-mode says; verified at the provider's siteverify endpoint.
    #[arg(long, env = "RPLACE_CAPTCHA", value_enum)]
    pub captcha: Option<CaptchaProvider>,

    /// The provider's public site key, given to the page's widget.
    #[arg(long, env = "RPLACE_CAPTCHA_SITE_KEY")]
    pub captcha_site_key: Option<String>,

    /// The provider's secret, sent to siteverify only.
    #[arg(long, env = "RPLACE_CAPTCHA_SECRET", hide_env_values = true)]
    pub captcha_secret: Option<String>,

    /// The siteverify URL. Default: Turnstile's
    /// https://challenges.cloudflare.com/turnstile/v0/siteverify or hCaptcha's
    /// https://api.hcaptcha.com/siteverify.
    #[arg(long, env = "RPLACE_CAPTCHA_VERIFY_URL")]
    pub captcha_verify_url: Option<String>,

    /// When a placement needs a captcha token: first, every:N or auto (as --pow).
    #[arg(long, env = "RPLACE_CAPTCHA_MODE", default_value = "first")]
    pub captcha_mode: String,

    /// If set, siteverify's answer must name this hostname (the page's), so a token
    /// solved on another site is refused.
    #[arg(long, env = "RPLACE_CAPTCHA_HOSTNAME")]
    pub captcha_hostname: Option<String>,

    /// How long siteverify may take before the placement gets 503, in ms.
    #[arg(long, env = "RPLACE_CAPTCHA_TIMEOUT_MS", default_value_t = 3000)]
    pub captcha_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CaptchaProvider {
    /// Cloudflare Turnstile.
    Turnstile,
    /// hCaptcha.
    Hcaptcha,
}

impl CaptchaProvider {
    pub fn name(self) -> &'static str {
        match self {
            CaptchaProvider::Turnstile => "turnstile",
            CaptchaProvider::Hcaptcha => "hcaptcha",
        }
    }

    /// The documented siteverify endpoint.
    pub fn default_verify_url(self) -> &'static str {
        match self {
            CaptchaProvider::Turnstile => {
                "https://challenges.cloudflare.com/turnstile/v0/siteverify"
            }
            CaptchaProvider::Hcaptcha => "https://api.hcaptcha.com/siteverify",
        }
    }
}

/// The proof-of-work settings, checked.
#[derive(Debug, Clone)]
pub struct PowSettings {
    /// When a proof is needed.
    pub mode: Mode,
    /// Bits of work a challenge asks.
    pub difficulty: u8,
    /// `--pow-key`'s bytes, if given (else the cookie key is used).
    pub key: Option<Vec<u8>>,
}

/// The captcha settings, checked.
#[derive(Debug, Clone)]
pub struct CaptchaSettings {
    /// Which provider.
    pub provider: CaptchaProvider,
    /// Public, for the widget.
    pub site_key: String,
    /// Private, for siteverify.
    pub secret: String,
    /// Where siteverify is.
    pub verify_url: String,
    /// When a token is needed.
    pub mode: Mode,
    /// The hostname siteverify must report, if any.
    pub hostname: Option<String>,
    /// Deadline of one siteverify call.
    pub timeout: Duration,
}

/// Everything anti-bot, checked.
#[derive(Debug, Clone)]
pub struct AntibotSettings {
    pub pow: PowSettings,
    /// `None`: no captcha.
    pub captcha: Option<CaptchaSettings>,
    /// `auto`'s rule (used when either mode is `auto`).
    pub auto: Auto,
}

impl AntibotArgs {
    pub fn parse(&self) -> Result<AntibotSettings, ConfigError> {
        let mode = self
            .pow
            .parse::<Mode>()
            .map_err(|e| bad("pow", "RPLACE_POW", e))?;
        if !(1..=rplace_domain::pow::MAX_DIFFICULTY).contains(&self.pow_difficulty) {
            return Err(bad(
                "pow-difficulty",
                "RPLACE_POW_DIFFICULTY",
                format!("must be 1 to {} bits", rplace_domain::pow::MAX_DIFFICULTY),
            ));
        }
        let key = match &self.pow_key {
            None => None,
            Some(k) => {
                let bytes = hex::decode(k.trim())
                    .map_err(|e| bad("pow-key", "RPLACE_POW_KEY", format!("not hex: {e}")))?;
                if bytes.len() < 32 {
                    return Err(bad(
                        "pow-key",
                        "RPLACE_POW_KEY",
                        "needs at least 32 bytes (64 hex digits, e.g. `openssl rand -hex 32`)",
                    ));
                }
                Some(bytes)
            }
        };
        if self.pow_auto_per_minute == 0 {
            return Err(bad(
                "pow-auto-per-minute",
                "RPLACE_POW_AUTO_PER_MINUTE",
                "must be at least 1",
            ));
        }
        let captcha = match self.captcha {
            None => None,
            Some(provider) => Some(self.captcha(provider)?),
        };
        Ok(AntibotSettings {
            pow: PowSettings {
                mode,
                difficulty: self.pow_difficulty,
                key,
            },
            captcha,
            auto: Auto {
                per_minute: self.pow_auto_per_minute,
                jitter_ms: self.pow_auto_jitter_ms,
            },
        })
    }

    fn captcha(&self, provider: CaptchaProvider) -> Result<CaptchaSettings, ConfigError> {
        let needed = |v: &Option<String>, name, env| {
            v.clone()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| bad(name, env, "--captcha needs it"))
        };
        let site_key = needed(
            &self.captcha_site_key,
            "captcha-site-key",
            "RPLACE_CAPTCHA_SITE_KEY",
        )?;
        let secret = needed(
            &self.captcha_secret,
            "captcha-secret",
            "RPLACE_CAPTCHA_SECRET",
        )?;
        let verify_url = self
            .captcha_verify_url
            .clone()
            .unwrap_or_else(|| provider.default_verify_url().to_string());
        if !(verify_url.starts_with("https://") || verify_url.starts_with("http://")) {
            return Err(bad(
                "captcha-verify-url",
                "RPLACE_CAPTCHA_VERIFY_URL",
                "must be an http(s) URL",
            ));
        }
        let mode = self
            .captcha_mode
            .parse::<Mode>()
            .map_err(|e| bad("captcha-mode", "RPLACE_CAPTCHA_MODE", e))?;
        if mode == Mode::Off {
            return Err(bad(
                "captcha-mode",
                "RPLACE_CAPTCHA_MODE",
                "off: leave --captcha unset instead",
            ));
        }
        if !(100..=30_000).contains(&self.captcha_timeout_ms) {
            return Err(bad(
                "captcha-timeout-ms",
                "RPLACE_CAPTCHA_TIMEOUT_MS",
                "must be 100 to 30000",
            ));
        }
        Ok(CaptchaSettings {
            provider,
            site_key,
            secret,
            verify_url,
            mode,
            hostname: self.captcha_hostname.clone(),
            timeout: Duration::from_millis(self.captcha_timeout_ms),
        })
    }
}
