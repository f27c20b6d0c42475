//! The optional third-party captcha (Cloudflare Turnstile or hCaptcha): the page's widget
//! gives a token, the placement carries it in `X-Rplace-Captcha`, and the server asks the
//! provider's siteverify endpoint whether it is good.
//!
//! Both providers document the same request: a form-encoded POST of `secret`, `response`
//! (the token) and `remoteip`, answered by JSON with `success`, `error-codes` and
//! `hostname`. A token verifies once: siteverify itself answers a reused one with
//! `timeout-or-duplicate`, so no replay table is kept here.

use crate::config::antibot::{CaptchaProvider, CaptchaSettings};
use serde::Deserialize;
use std::net::IpAddr;

/// The request header that carries the widget's token.
pub const HEADER: &str = "x-rplace-captcha";
/// Longest token sent on (Turnstile documents at most 2048 characters).
pub const MAX_TOKEN_LEN: usize = 4096;

/// What siteverify said about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Solved, for this site.
    Valid,
    /// Refused, with the provider's error codes (e.g. `invalid-input-response`,
    /// `timeout-or-duplicate`) or ours (`hostname-mismatch`, `token-too-long`).
    Invalid(Vec<String>),
}

/// Siteverify could not be asked or did not answer properly in time.
#[derive(Debug, thiserror::Error)]
#[error("siteverify {url}: {reason}")]
pub struct Unreachable {
    /// Which endpoint.
    url: String,
    /// What went wrong (logged, never sent to the client).
    reason: String,
}

/// The answer's fields that matter.
#[derive(Debug, Deserialize)]
struct Answer {
    /// Whether the token is valid.
    success: bool,
    /// Why not.
    #[serde(rename = "error-codes", default)]
    error_codes: Vec<String>,
    /// The site the widget was solved on.
    #[serde(default)]
    hostname: Option<String>,
}

/// A siteverify client for one provider.
pub struct Captcha {
    /// The settings (provider, keys, URL, hostname, timeout).
    settings: CaptchaSettings,
    /// Pooled connections, with the timeout on every request.
    http: reqwest::Client,
}

impl Captcha {
    pub fn new(settings: CaptchaSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .pool_max_idle_per_host(8)
            .build()
            .expect("an HTTP client with a timeout builds");
        Self { settings, http }
    }

    pub fn settings(&self) -> &CaptchaSettings {
        &self.settings
    }

    /// Asks siteverify about `token`, sent from `ip`.
    pub async fn verify(&self, token: &str, ip: IpAddr) -> Result<Verdict, Unreachable> {
        if token.is_empty() {
            return Ok(Verdict::Invalid(vec!["missing-input-response".into()]));
        }
        if token.len() > MAX_TOKEN_LEN {
            return Ok(Verdict::Invalid(vec!["token-too-long".into()]));
        }
        let s = &self.settings;
        let ip = ip.to_string();
        let mut form = vec![
            ("secret", s.secret.as_str()),
            ("response", token),
            ("remoteip", ip.as_str()),
        ];
        if s.provider == CaptchaProvider::Hcaptcha {
            // hCaptcha checks that the token was issued for this site key.
            form.push(("sitekey", s.site_key.as_str()));
        }
        let unreachable = |reason: String| Unreachable {
            url: s.verify_url.clone(),
            reason,
        };
        let resp = self
            .http
            .post(&s.verify_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| unreachable(crate_error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(unreachable(format!("HTTP {}", resp.status())));
        }
        let answer: Answer = resp
            .json()
            .await
            .map_err(|e| unreachable(crate_error_chain(&e)))?;
        if !answer.success {
            let codes = if answer.error_codes.is_empty() {
                vec!["unsuccessful".into()]
            } else {
                answer.error_codes
            };
            return Ok(Verdict::Invalid(codes));
        }
        if let Some(want) = &s.hostname
            && answer.hostname.as_deref() != Some(want.as_str())
        {
            return Ok(Verdict::Invalid(vec!["hostname-mismatch".into()]));
        }
        Ok(Verdict::Valid)
    }
}

/// An error with its sources, for the log.
fn crate_error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
