//! Anti-bot: the built-in proof-of-work challenge and the optional third-party captcha
//! (Cloudflare Turnstile or hCaptcha), and when a placement must carry one.
//!
//! - [`pow`]: signed challenges (`GET /api/pow`) and their solutions (`X-Rplace-Pow`).
//! - [`captcha`]: the provider's token (`X-Rplace-Captcha`), checked at its siteverify.
//! - [`mode`]: when either is needed (`off`, `first`, `every:N`, `auto`) and the bounded
//!   per-instance counters behind it.
//! - [`routes`]: `GET /api/pow`.
//!
//! `PUT /api/pixel` calls [`Antibot::check`] before placing and [`Antibot::placed`] after
//! an accepted placement. A solved challenge is spent by the store, atomically with the
//! placement it was sent with (`Standing::once`): a refused placement spends nothing, and
//! a second placement with the same solution gets `403 pow_replayed` on every instance.

pub mod captcha;
pub mod mode;
pub mod pow;
pub mod routes;

use crate::config::antibot::{AntibotSettings, CaptchaProvider};
use crate::config::{Config, ConfigError};
use axum::http::{HeaderMap, StatusCode};
use mode::{AutoTracker, Coverage, Mode};
use rplace_domain::pow::PowError;
use rplace_domain::{AddrKey, OnceToken, UserId};
use serde_json::{Value, json};
use std::net::IpAddr;

/// Why a placement was refused before it reached the store.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A proof of work is needed and none was sent; the answer carries a fresh challenge.
    #[error(
        "this placement needs a proof of work: solve the challenge and send X-Rplace-Pow: <challenge>.<nonce>"
    )]
    PowRequired { challenge: pow::Issued },
    /// The proof sent is not a valid solution of a challenge for this identity.
    #[error("the proof of work was refused: {0}")]
    PowInvalid(PowError),
    /// A captcha token is needed and none was sent.
    #[error("this placement needs a captcha: solve it and send its token as X-Rplace-Captcha")]
    CaptchaRequired {
        provider: CaptchaProvider,
        site_key: String,
    },
    /// The provider's siteverify refused the token.
    #[error("the captcha was refused ({}); solve it again", codes.join(", "))]
    CaptchaInvalid { codes: Vec<String> },
    /// Siteverify did not answer in time (or properly): nothing was placed.
    #[error("the captcha cannot be checked right now; retry in a moment")]
    CaptchaUnavailable,
}

impl Refusal {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Refusal::PowRequired { .. } => (StatusCode::PRECONDITION_REQUIRED, "pow_required"),
            Refusal::PowInvalid(_) => (StatusCode::FORBIDDEN, "pow_invalid"),
            Refusal::CaptchaRequired { .. } => {
                (StatusCode::PRECONDITION_REQUIRED, "captcha_required")
            }
            Refusal::CaptchaInvalid { .. } => (StatusCode::FORBIDDEN, "captcha_invalid"),
            Refusal::CaptchaUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "captcha_unavailable"),
        }
    }

    /// Adds this refusal's fields to the JSON error body.
    pub fn extend(&self, body: &mut Value) {
        match self {
            Refusal::PowRequired { challenge } => body["challenge"] = json!(challenge),
            Refusal::PowInvalid(e) => body["reason"] = json!(pow::reason(e)),
            Refusal::CaptchaRequired { provider, site_key } => {
                body["captcha"] = json!({ "provider": provider.name(), "site_key": site_key })
            }
            Refusal::CaptchaInvalid { codes } => body["error_codes"] = json!(codes),
            Refusal::CaptchaUnavailable => body["retry_after_ms"] = json!(1000),
        }
    }
}

/// The proof of work, enabled.
struct PowGate {
    /// Issues and checks challenges.
    pow: pow::Pow,
    /// When a proof is needed.
    mode: Mode,
    /// `first` / `every:N`: what the last proof still covers.
    coverage: Option<Coverage>,
}

/// The captcha, enabled.
struct CaptchaGate {
    /// The siteverify client.
    captcha: captcha::Captcha,
    /// `first` / `every:N`: what the last token still covers.
    coverage: Option<Coverage>,
}

/// The anti-bot state of one instance: one field of `AppState`.
pub struct Antibot {
    /// `None`: `--pow off`.
    pow: Option<PowGate>,
    /// `None`: no `--captcha`.
    captcha: Option<CaptchaGate>,
    /// Recent placements per address, when either mode is `auto`.
    auto: Option<AutoTracker>,
    /// `--pow`, as `GET /api/config` shows it.
    pow_mode: Mode,
    /// `--pow-difficulty`.
    difficulty: u8,
}

/// What [`Antibot::check`] found: handed to the store (`once`) and back to
/// [`Antibot::placed`] once the placement was accepted.
#[derive(Debug, Clone, Copy)]
pub struct Pass {
    /// The solved challenge to spend with the placement.
    pub once: Option<OnceToken>,
    /// Whether a valid captcha token came with it.
    captcha: bool,
    /// Who placed.
    user: UserId,
    /// From where (the `auto` rule's key).
    addr: AddrKey,
}

impl Antibot {
    /// From the configuration; `cookie_key`: the master key of the cookie jar, which the
    /// challenge key is derived from unless `--pow-key` is given.
    pub fn new(config: &Config, cookie_key: &[u8]) -> Result<Self, ConfigError> {
        let AntibotSettings { pow, captcha, auto } = config.antibot.parse()?;
        let uses_auto =
            pow.mode == Mode::Auto || captcha.as_ref().is_some_and(|c| c.mode == Mode::Auto);
        let pow_gate = (pow.mode != Mode::Off).then(|| PowGate {
            pow: pow::Pow::new(pow.key.as_deref().unwrap_or(cookie_key), pow.difficulty),
            mode: pow.mode,
            coverage: Coverage::new(pow.mode),
        });
        Ok(Self {
            pow: pow_gate,
            captcha: captcha.map(|c| CaptchaGate {
                coverage: Coverage::new(c.mode),
                captcha: captcha::Captcha::new(c),
            }),
            auto: uses_auto.then(|| AutoTracker::new(auto)),
            pow_mode: pow.mode,
            difficulty: pow.difficulty,
        })
    }

    /// `GET /api/config`'s `pow` and `captcha` members.
    pub fn public_config(&self) -> (Value, Value) {
        let pow = json!({ "mode": self.pow_mode.to_string(), "difficulty": self.difficulty });
        let captcha = self.captcha.as_ref().map_or(Value::Null, |c| {
            let s = c.captcha.settings();
            json!({ "provider": s.provider.name(), "site_key": s.site_key, "mode": s.mode.to_string() })
        });
        (pow, captcha)
    }

    /// A fresh challenge for `user`, or `None` with `--pow off`.
    pub fn issue(&self, user: UserId, now_ms: i64) -> Option<pow::Issued> {
        self.pow.as_ref().map(|g| g.pow.issue(user, now_ms))
    }

    /// Whether a placement from `addr` needs a proof under `mode` with `coverage`.
    fn needed(&self, mode: Mode, coverage: Option<&Coverage>, pass: &Pass, now_ms: i64) -> bool {
        match mode {
            Mode::Off => false,
            Mode::First | Mode::Every(_) => coverage.is_some_and(|c| c.needs_proof(pass.user)),
            Mode::Auto => self
                .auto
                .as_ref()
                .is_some_and(|a| a.needs_proof(pass.addr, now_ms)),
        }
    }

    /// Checks the proofs a placement by `user` from `ip` carries and whether it needs
    /// them. Any proof sent is checked, needed or not; a missing one that is needed is a
    /// `428` (with a fresh challenge for the proof of work).
    pub async fn check(
        &self,
        user: UserId,
        ip: IpAddr,
        addr: AddrKey,
        headers: &HeaderMap,
        now_ms: i64,
    ) -> Result<Pass, Refusal> {
        let mut pass = Pass {
            once: None,
            captcha: false,
            user,
            addr,
        };
        if let Some(g) = &self.pow {
            match header(headers, pow::HEADER) {
                Some(solution) => {
                    let c = g.pow.verify(solution, user, now_ms).map_err(|e| {
                        outcome("pow", "invalid");
                        Refusal::PowInvalid(e)
                    })?;
                    outcome("pow", "valid");
                    pass.once = Some(c.id());
                }
                None if self.needed(g.mode, g.coverage.as_ref(), &pass, now_ms) => {
                    outcome("pow", "required");
                    return Err(Refusal::PowRequired {
                        challenge: g.pow.issue(user, now_ms),
                    });
                }
                None => {}
            }
        }
        if let Some(g) = &self.captcha {
            let s = g.captcha.settings();
            match header(headers, captcha::HEADER) {
                Some(token) => match g.captcha.verify(token, ip).await {
                    Ok(captcha::Verdict::Valid) => {
                        outcome("captcha", "valid");
                        pass.captcha = true;
                    }
                    Ok(captcha::Verdict::Invalid(codes)) => {
                        outcome("captcha", "invalid");
                        return Err(Refusal::CaptchaInvalid { codes });
                    }
                    Err(e) => {
                        outcome("captcha", "unavailable");
                        tracing::warn!(error = %e, "captcha siteverify failed");
                        return Err(Refusal::CaptchaUnavailable);
                    }
                },
                None if self.needed(s.mode, g.coverage.as_ref(), &pass, now_ms) => {
                    outcome("captcha", "required");
                    return Err(Refusal::CaptchaRequired {
                        provider: s.provider,
                        site_key: s.site_key.clone(),
                    });
                }
                None => {}
            }
        }
        Ok(pass)
    }

    /// The placement `pass` came with was accepted at `now_ms`: count it.
    pub fn placed(&self, pass: &Pass, now_ms: i64) {
        if let Some(c) = self.pow.as_ref().and_then(|g| g.coverage.as_ref()) {
            c.placed(pass.user, pass.once.is_some());
        }
        if let Some(c) = self.captcha.as_ref().and_then(|g| g.coverage.as_ref()) {
            c.placed(pass.user, pass.captcha);
        }
        if let Some(a) = &self.auto {
            a.placed(pass.addr, now_ms);
        }
    }
}

/// A header's value, if sent ("" if it is not visible ASCII: refused as malformed).
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).map(|v| v.to_str().unwrap_or(""))
}

fn outcome(kind: &'static str, outcome: &'static str) {
    metrics::counter!("rplace_antibot_checks_total", "kind" => kind, "outcome" => outcome)
        .increment(1);
}
