//! A local stand-in for a captcha provider's `siteverify` endpoint (Cloudflare Turnstile,
//! hCaptcha), speaking their documented protocol, because their servers cannot be reached
//! from tests. It is not their service: it implements the request and answer their
//! documentation describes, so that the server's client is tested over real HTTP.
//!
//! - Request: `POST` with a form-encoded body of `secret`, `response` (the widget's
//!   token) and optional `remoteip` (and, for hCaptcha, `sitekey`).
//! - Answer: JSON `{"success": bool, "error-codes": [...], "hostname": ..,
//!   "challenge_ts": ..}`. Codes: `missing-input-secret`, `invalid-input-secret`,
//!   `missing-input-response`, `invalid-input-response` (unknown token),
//!   `timeout-or-duplicate` (a token verified before, or older than 300 s).
//!
//! Tokens are minted with [`SiteVerify::token`], as the widget would give one to the
//! page; each verifies once. [`SiteVerify::set_delay`] makes answers slow (an overloaded
//! provider); a server that is down is a URL nobody listens on ([`closed_url`]).

use axum::extract::{Form, State};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a token is valid (Turnstile: 300 s).
pub const TOKEN_TTL: Duration = Duration::from_secs(300);

/// One siteverify request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The form's fields.
    pub fields: HashMap<String, String>,
}

/// The stand-in's state, shared with its handler.
#[derive(Default)]
struct Inner {
    /// The secret the site must send.
    secret: String,
    /// Tokens minted and not yet verified, with their hostname and when they were made.
    tokens: HashMap<String, (String, Instant)>,
    /// Tokens verified once: a second use is `timeout-or-duplicate`.
    spent: HashSet<String>,
    /// Every request, oldest first.
    requests: Vec<Request>,
    /// Wait this long before answering.
    delay: Duration,
    /// Numbers the tokens.
    next: u64,
}

/// A running stand-in; stops when dropped.
pub struct SiteVerify {
    /// Where it listens.
    addr: SocketAddr,
    /// The state.
    inner: Arc<Mutex<Inner>>,
    /// The server task.
    task: tokio::task::JoinHandle<()>,
}

impl SiteVerify {
    /// Starts on a free port of 127.0.0.1, accepting `secret`.
    pub async fn start(secret: &str) -> SiteVerify {
        let inner = Arc::new(Mutex::new(Inner {
            secret: secret.to_string(),
            ..Default::default()
        }));
        let app = Router::new()
            .route("/siteverify", post(verify))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SiteVerify { addr, inner, task }
    }

    /// The siteverify URL.
    pub fn url(&self) -> String {
        format!("http://{}/siteverify", self.addr)
    }

    /// A fresh token, as the widget gives one after a solved challenge on `hostname`.
    pub fn token(&self, hostname: &str) -> String {
        let mut s = self.inner.lock().unwrap();
        s.next += 1;
        let t = format!("0.test-token-{}-{}", s.next, rand_suffix(s.next));
        s.tokens
            .insert(t.clone(), (hostname.to_string(), Instant::now()));
        t
    }

    /// Answers after `delay` from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.inner.lock().unwrap().delay = delay;
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().unwrap().requests.clone()
    }
}

impl Drop for SiteVerify {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A URL on which nothing listens: a provider that is down.
pub fn closed_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/siteverify")
}

/// Not a secret, just tokens that do not look sequential.
fn rand_suffix(n: u64) -> String {
    format!("{:016x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

async fn verify(
    State(inner): State<Arc<Mutex<Inner>>>,
    Form(fields): Form<HashMap<String, String>>,
) -> Json<Value> {
    let delay = {
        let mut s = inner.lock().unwrap();
        s.requests.push(Request {
            fields: fields.clone(),
        });
        s.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let fail = |code: &str| Json(json!({ "success": false, "error-codes": [code] }));
    let mut s = inner.lock().unwrap();
    match fields.get("secret").map(String::as_str) {
        None | Some("") => return fail("missing-input-secret"),
        Some(secret) if secret != s.secret => return fail("invalid-input-secret"),
        Some(_) => {}
    }
    let Some(token) = fields.get("response").filter(|t| !t.is_empty()) else {
        return fail("missing-input-response");
    };
    if s.spent.contains(token) {
        return fail("timeout-or-duplicate");
    }
    let Some((hostname, made)) = s.tokens.remove(token) else {
        return fail("invalid-input-response");
    };
    s.spent.insert(token.clone());
    if made.elapsed() > TOKEN_TTL {
        return fail("timeout-or-duplicate");
    }
    Json(json!({
        "success": true,
        "error-codes": [],
        "hostname": hostname,
        "challenge_ts": "2026-01-01T00:00:00Z",
    }))
}
