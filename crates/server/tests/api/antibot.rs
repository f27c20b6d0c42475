//! Anti-bot: the proof of work (`GET /api/pow`, `X-Rplace-Pow`) on both backends where
//! the store spends it, and the captcha against a local stand-in for siteverify
//! (rplace_testsupport::siteverify, speaking the protocol Turnstile and hCaptcha
//! document; their servers cannot be reached from here).

use crate::helpers::*;
use rplace_domain::UserId;
use rplace_domain::pow::{self, Challenge, PowKey};
use rplace_testsupport::siteverify::{self, SiteVerify};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// `--pow-key` of these tests, so that they can sign challenges the server would not
/// issue (expired, too easy).
const POW_KEY: &str = "7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b";
/// Cheap enough for a debug build; the work is the same code at any difficulty.
const BITS: &str = "8";

fn pow_args<'a>(mode: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--pow",
        mode,
        "--pow-difficulty",
        BITS,
        "--pow-key",
        POW_KEY,
    ];
    a.extend_from_slice(extra);
    a
}

fn key() -> PowKey {
    PowKey::derive(&hex::decode(POW_KEY).unwrap())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Solves a challenge as the page's worker does: `<challenge>.<nonce>`.
fn solve(challenge: &Value) -> String {
    let text = challenge["challenge"].as_str().unwrap();
    let bits = challenge["difficulty"].as_u64().unwrap() as u8;
    format!("{text}.{}", pow::solve(text, bits, 0))
}

/// A fresh challenge for `c`'s identity, solved.
async fn solved(app: &TestApp, c: &reqwest::Client) -> String {
    let r = c.get(app.url("/api/pow")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    solve(&r.json().await.unwrap())
}

/// PUTs pixel (x, 1) as `c`, with `proof` as X-Rplace-Pow if given; status and body.
async fn put(app: &TestApp, c: &reqwest::Client, x: u32, proof: Option<&str>) -> (u16, Value) {
    let mut req = c
        .put(app.url("/api/pixel"))
        .json(&json!({"x": x, "y": 1, "color": 3}));
    if let Some(p) = proof {
        req = req.header("x-rplace-pow", p);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

/// A logged-in client and its public id.
async fn visitor(app: &TestApp) -> (reqwest::Client, UserId) {
    let c = client();
    let cfg = app.login(&c).await;
    let id = UserId::parse(cfg["user"]["id"].as_str().unwrap()).unwrap();
    (c, id)
}

#[tokio::test]
async fn a_challenge_has_the_documented_shape() {
    // No store involved: the embedded backend stands for both.
    let app = spawn_app(&pow_args("first", &[])).await;
    let (c, user) = visitor(&app).await;
    let cfg = app.login(&c).await;
    assert_eq!(cfg["pow"], json!({"mode": "first", "difficulty": 8}));
    assert_eq!(cfg["captcha"], Value::Null);
    let r = c.get(app.url("/api/pow")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let ch: Value = r.json().await.unwrap();
    assert_eq!(ch["algorithm"], "SHA-256");
    assert_eq!(ch["difficulty"], 8);
    let expires = ch["expires"].as_i64().unwrap();
    assert!(
        (expires - now_ms() - pow::MAX_TTL_MS).abs() < 10_000,
        "{ch}"
    );
    let parsed = Challenge::decode(ch["challenge"].as_str().unwrap(), &key()).unwrap();
    assert_eq!(parsed.user(), user);
    assert_eq!(parsed.expires_ms(), expires);
    // Each challenge is new.
    let again: Value = app.get_json_as(&c, "/api/pow").await;
    assert_ne!(again["challenge"], ch["challenge"]);
    app.stop().await;

    let off = spawn_app(&[]).await;
    assert_eq!(off.login(&off.client).await["pow"]["mode"], "off");
    let r = off.client.get(off.url("/api/pow")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    off.stop().await;
}

contract_test!(pow_first_asks_once_and_a_solution_places_once);
/// `--pow first`: the first PUT gets 428 with a challenge; its solution places; later
/// placements need none; the same solution again is refused as a replay, and the load
/// generator's token path is not asked.
async fn pow_first_asks_once_and_a_solution_places_once(backend: Backend) {
    let app = spawn_app_on(backend, &pow_args("first", &[])).await;
    let (c, _) = visitor(&app).await;
    let (status, body) = put(&app, &c, 0, None).await;
    assert_eq!(status, 428, "{body}");
    assert_eq!(body["error"], "pow_required");
    assert_eq!(body["challenge"]["algorithm"], "SHA-256");
    let proof = solve(&body["challenge"]);
    let (status, body) = put(&app, &c, 0, Some(&proof)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(put(&app, &c, 1, None).await.0, 200, "covered by the proof");
    let (status, body) = put(&app, &c, 2, Some(&proof)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("pow_replayed"))
    );
    // A fresh identity is asked again; the bench token is not.
    let (other, _) = visitor(&app).await;
    assert_eq!(put(&app, &other, 3, None).await.0, 428);
    app.bench_place(77, 4, 1, 2).await;
    app.stop().await;
}

// Shared mode only: two instances, one store that spends each solution once.
contract_test!(
    a_replayed_solution_is_refused_on_another_instance,
    ignore_embedded = "one process by design: no second instance"
);
async fn a_replayed_solution_is_refused_on_another_instance(backend: Backend) {
    let a = spawn_app_on(backend, &pow_args("every:1", &[])).await;
    let b = a.sibling(&pow_args("every:1", &[])).await;
    let (c, _) = visitor(&a).await;
    let proof = solved(&a, &c).await;
    assert_eq!(put(&a, &c, 0, Some(&proof)).await.0, 200);
    let (status, body) = put(&b, &c, 1, Some(&proof)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("pow_replayed"))
    );
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn refused_proofs_say_why() {
    // Checked before the store is asked: the embedded backend stands for both.
    let app = spawn_app(&pow_args("first", &[])).await;
    let (c, user) = visitor(&app).await;
    let expect = |reason: &'static str| {
        move |(status, body): (u16, Value)| {
            assert_eq!(status, 403, "{body}");
            assert_eq!(body["error"], "pow_invalid", "{body}");
            assert_eq!(body["reason"], reason, "{body}");
            assert!(body["message"].as_str().unwrap().len() > 20);
        }
    };
    let good = solved(&app, &c).await;
    // Another identity's solution.
    let (other, _) = visitor(&app).await;
    expect("wrong_user")(put(&app, &other, 0, Some(&good)).await);
    // A changed MAC.
    let (text, nonce) = good.rsplit_once('.').unwrap();
    let forged = format!("{}0.{nonce}", &text[..text.len() - 1]);
    let forged = if forged == good {
        format!("{}1.{nonce}", &text[..text.len() - 1])
    } else {
        forged
    };
    expect("forged")(put(&app, &c, 0, Some(&forged)).await);
    // Signed with the right key, but expired / easier than the canvas needs.
    let sign = |issued: i64, bits: u8| {
        let ch = Challenge::new(rand_id(), user, issued, 60_000, bits).unwrap();
        let text = ch.encode(&key());
        format!("{text}.{}", pow::solve(&text, bits, 0))
    };
    expect("expired")(put(&app, &c, 0, Some(&sign(now_ms() - 120_000, 8))).await);
    expect("too_easy")(put(&app, &c, 0, Some(&sign(now_ms(), 4))).await);
    // A nonce that does not do the work: find one whose hash has too few zero bits.
    let lazy = (0u64..)
        .find(|n| pow::leading_zero_bits(&pow::work(text, &n.to_string())) < 8)
        .unwrap();
    expect("insufficient_work")(put(&app, &c, 0, Some(&format!("{text}.{lazy}"))).await);
    expect("malformed")(put(&app, &c, 0, Some("not-a-proof")).await);
    // None of it placed anything, and the good one still works.
    assert_eq!(app.board().await.0, 0);
    assert_eq!(put(&app, &c, 0, Some(&good)).await.0, 200);
    app.stop().await;
}

fn rand_id() -> [u8; 16] {
    let n = now_ms() as u128 ^ 0x5eed;
    n.to_le_bytes()
}

contract_test!(pow_every_n_asks_once_every_n_placements);
/// `--pow every:2`: placements 1, 3, 5 need a proof, 2 and 4 do not.
async fn pow_every_n_asks_once_every_n_placements(backend: Backend) {
    let app = spawn_app_on(backend, &pow_args("every:2", &[])).await;
    let (c, _) = visitor(&app).await;
    let mut asked = vec![];
    for x in 0..5 {
        let (status, body) = put(&app, &c, x, None).await;
        asked.push(status == 428);
        if status == 428 {
            let (status, body) = put(&app, &c, x, Some(&solve(&body["challenge"]))).await;
            assert_eq!(status, 200, "{body}");
        } else {
            assert_eq!(status, 200, "{body}");
        }
    }
    assert_eq!(asked, [true, false, true, false, true]);
    app.stop().await;
}

contract_test!(a_refused_placement_does_not_spend_the_proof);
/// A placement refused by the store (cooldown) spends nothing: the same solution places
/// once the cooldown is over.
async fn a_refused_placement_does_not_spend_the_proof(backend: Backend) {
    let app = spawn_app_on(backend, &pow_args("every:1", &["--cooldown", "1"])).await;
    let (c, _) = visitor(&app).await;
    let first = solved(&app, &c).await;
    assert_eq!(put(&app, &c, 0, Some(&first)).await.0, 200);
    let second = solved(&app, &c).await;
    let (status, body) = put(&app, &c, 1, Some(&second)).await;
    assert_eq!((status, body["error"].as_str()), (429, Some("cooldown")));
    let (status, body) = eventually(Duration::from_secs(10), "the cooldown ends", || async {
        let r = put(&app, &c, 1, Some(&second)).await;
        (r.0 != 429).then_some(r)
    })
    .await;
    assert_eq!(status, 200, "the refused attempt did not spend it: {body}");
    app.stop().await;
}

#[tokio::test]
async fn pow_auto_asks_a_fast_address_only() {
    // The counters are per instance (see antibot/mode.rs): the embedded backend stands
    // for both.
    let args = pow_args(
        "auto",
        &[
            "--pow-auto-per-minute",
            "3",
            "--pow-auto-jitter-ms",
            "0",
            "--trusted-proxies",
            "127.0.0.1",
        ],
    );
    let app = spawn_app(&args).await;
    // Three fresh identities from one address place freely; the fourth is asked.
    for x in 0..3 {
        assert_eq!(
            app.put_forwarded("203.0.113.7", x).await,
            (200, String::new())
        );
    }
    assert_eq!(
        app.put_forwarded("203.0.113.7", 3).await,
        (428, "pow_required".to_string())
    );
    // Another address is not; one in the same IPv6 /64 counts with its neighbours.
    assert_eq!(app.put_forwarded("203.0.113.8", 4).await.0, 200);
    for x in 5..8 {
        let xff = format!("2001:db8:0:1::{x}");
        assert_eq!(app.put_forwarded(&xff, x).await.0, 200);
    }
    assert_eq!(app.put_forwarded("2001:db8:0:1::ff", 8).await.0, 428);
    // The asked address places with a proof.
    let c = client();
    app.login(&c).await;
    let r = c
        .put(app.url("/api/pixel"))
        .header("x-forwarded-for", "203.0.113.7")
        .json(&json!({"x": 9, "y": 0, "color": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 428);
    let body: Value = r.json().await.unwrap();
    let r = c
        .put(app.url("/api/pixel"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-rplace-pow", solve(&body["challenge"]))
        .json(&json!({"x": 9, "y": 0, "color": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

// ---- captcha: against the local siteverify stand-in --------------------------------

const SECRET: &str = "test-captcha-secret";

fn captcha_args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--captcha",
        "turnstile",
        "--captcha-site-key",
        "site-key-1",
        "--captcha-secret",
        SECRET,
        "--captcha-verify-url",
        url,
        "--captcha-mode",
        "every:1",
        "--captcha-timeout-ms",
        "500",
    ];
    a.extend_from_slice(extra);
    a
}

async fn put_captcha(app: &TestApp, c: &reqwest::Client, token: Option<&str>) -> (u16, Value) {
    let mut req = c
        .put(app.url("/api/pixel"))
        .json(&json!({"x": 2, "y": 2, "color": 5}));
    if let Some(t) = token {
        req = req.header("x-rplace-captcha", t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_captcha_token_is_verified_at_siteverify_once() {
    // Siteverify decides, not the store: the embedded backend stands for both.
    let sv = SiteVerify::start(SECRET).await;
    let url = sv.url();
    let app = spawn_app(&captcha_args(
        &url,
        &["--captcha-hostname", "canvas.example"],
    ))
    .await;
    let (c, _) = visitor(&app).await;
    let cfg = app.login(&c).await;
    assert_eq!(
        cfg["captcha"],
        json!({"provider": "turnstile", "site_key": "site-key-1", "mode": "every:1"})
    );
    let (status, body) = put_captcha(&app, &c, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (428, Some("captcha_required"))
    );
    assert_eq!(
        body["captcha"],
        json!({"provider": "turnstile", "site_key": "site-key-1"})
    );
    // A good token places, and siteverify got the documented form.
    let token = sv.token("canvas.example");
    let (status, body) = put_captcha(&app, &c, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let req = sv.requests().pop().unwrap();
    assert_eq!(req.fields["secret"], SECRET);
    assert_eq!(req.fields["response"], token);
    assert_eq!(req.fields["remoteip"], "127.0.0.1");
    // Used again: siteverify says timeout-or-duplicate.
    let (status, body) = put_captcha(&app, &c, Some(&token)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("captcha_invalid"))
    );
    assert_eq!(body["error_codes"], json!(["timeout-or-duplicate"]));
    // Made up, or solved on another site.
    let (status, body) = put_captcha(&app, &c, Some("made-up")).await;
    assert_eq!(status, 403);
    assert_eq!(body["error_codes"], json!(["invalid-input-response"]));
    let elsewhere = sv.token("evil.example");
    let (status, body) = put_captcha(&app, &c, Some(&elsewhere)).await;
    assert_eq!(status, 403);
    assert_eq!(body["error_codes"], json!(["hostname-mismatch"]));
    app.stop().await;

    // A wrong secret is the operator's mistake, still a refusal the client sees.
    let app = spawn_app(&captcha_args(&url, &["--captcha-secret", "wrong"])).await;
    let (c, _) = visitor(&app).await;
    let (status, body) = put_captcha(&app, &c, Some(&sv.token("x"))).await;
    assert_eq!(status, 403);
    assert_eq!(body["error_codes"], json!(["invalid-input-secret"]));
    app.stop().await;
}

#[tokio::test]
async fn siteverify_down_or_slow_is_a_clear_503_within_the_timeout() {
    // The embedded backend stands for both: nothing reaches the store.
    let sv = SiteVerify::start(SECRET).await;
    sv.set_delay(Duration::from_secs(5));
    let url = sv.url();
    let closed = siteverify::closed_url();
    for url in [url.as_str(), closed.as_str()] {
        let app = spawn_app(&captcha_args(url, &[])).await;
        let (c, _) = visitor(&app).await;
        let started = Instant::now();
        let (status, body) = put_captcha(&app, &c, Some(&sv.token("x"))).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{url}: {:?}",
            started.elapsed()
        );
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("captcha_unavailable"))
        );
        assert!(body["message"].as_str().unwrap().contains("retry"));
        assert_eq!(app.board().await.0, 0, "nothing was placed");
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_antibot_settings_stop_the_start() {
    for args in [
        &["--pow", "sometimes"][..],
        &["--pow", "every:0"],
        &["--pow-difficulty", "33"],
        &["--pow-key", "abcd"],
        &["--captcha", "hcaptcha", "--captcha-secret", "s"],
        &[
            "--captcha",
            "turnstile",
            "--captcha-site-key",
            "k",
            "--captcha-secret",
            "s",
            "--captcha-mode",
            "off",
        ],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().to_str().unwrap().to_string();
        let config =
            rplace::Config::from_args(args.iter().copied().chain(["--data-dir", dir.as_str()]))
                .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = rplace::run(listener, config, std::future::pending()).await;
        assert!(
            matches!(r, Err(rplace::RunError::Config(_))),
            "{args:?}: {r:?}"
        );
    }
}
