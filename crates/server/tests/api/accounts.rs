//! Accounts against a real OpenID Connect provider (npm `oidc-provider`, started by
//! rplace-testsupport): the whole login round trip over HTTP, following the redirects and
//! submitting the provider's login and consent forms as a browser would.

use crate::helpers::*;
use reqwest::cookie::{CookieStore, Jar};
use rplace_testsupport::{OidcProvider, free_port};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub const CLIENT_ID: &str = "rplace-test";
pub const CLIENT_SECRET: &str = "rplace-test-secret";

/// An app with the provider `local`, and the provider.
pub struct LoginApp {
    pub app: TestApp,
    pub idp: OidcProvider,
}

/// Starts the provider's port choice, the app configured with it plus `args`, then the
/// provider with the app's redirect URI.
pub async fn spawn_with_provider(backend: Backend, args: &[&str]) -> LoginApp {
    let port = free_port();
    let spec = format!(
        "id=local;name=Local;issuer={};client_id={CLIENT_ID};client_secret={CLIENT_SECRET}",
        OidcProvider::issuer_on(port)
    );
    let mut all = vec!["--oidc-provider", spec.as_str()];
    all.extend_from_slice(args);
    let app = spawn_app_on(backend, &all).await;
    let redirect = app.url("/auth/callback/local");
    let idp = tokio::task::spawn_blocking(move || {
        OidcProvider::start(port, CLIENT_ID, CLIENT_SECRET, &[redirect])
    })
    .await
    .unwrap();
    LoginApp { app, idp }
}

/// A browser-like client: a cookie jar (readable by the test) and redirects followed.
pub struct Browser {
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
}

impl Browser {
    pub fn new() -> Browser {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Browser { client, jar }
    }

    /// The value of cookie `name` this client sends to `app`.
    pub fn cookie(&self, app: &TestApp, name: &str) -> Option<String> {
        let url: reqwest::Url = app.url("/").parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
    }
}

fn form_encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of `attr="..."` in the first tag of `html` that has it after `from`.
fn attr<'a>(html: &'a str, from: &str, attr: &str) -> Option<&'a str> {
    let start = html.find(from)?;
    let rest = &html[start..];
    let a = rest.find(&format!("{attr}=\""))? + attr.len() + 2;
    let end = rest[a..].find('"')?;
    Some(&rest[a..a + end])
}

/// Logs `browser` in at the provider as `username`: starts at the app's login URL,
/// submits the provider's login and consent forms (whichever it shows), and returns the
/// page the app finally redirected to.
pub async fn login(app: &TestApp, browser: &Browser, username: &str) -> reqwest::Response {
    let mut resp = browser
        .client
        .get(app.url("/auth/login/local"))
        .send()
        .await
        .unwrap();
    for _ in 0..4 {
        let at_app = resp.url().port() == Some(app.addr.port());
        if at_app {
            return resp;
        }
        let page = resp.url().clone();
        let status = resp.status();
        let html = resp.text().await.unwrap();
        assert_eq!(status, 200, "the provider's page {page}: {html}");
        let action = attr(&html, "<form", "action")
            .unwrap_or_else(|| panic!("no form on the provider's page {page}: {html}"));
        let action = page.join(&action.replace("&amp;", "&")).unwrap();
        let prompt = attr(&html, "name=\"prompt\"", "value")
            .or_else(|| {
                // The hidden input may put value before name.
                html.contains("value=\"login\"").then_some("login")
            })
            .unwrap_or("consent");
        let body = if prompt == "login" {
            form_encode(&[
                ("prompt", "login"),
                ("login", username),
                ("password", "any"),
            ])
        } else {
            form_encode(&[("prompt", "consent")])
        };
        resp = browser
            .client
            .post(action)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
    }
    panic!("the login did not come back to the app");
}

/// Logs a new browser in as `username` (after it got an anonymous identity); checks
/// that the round trip ended on the canvas's page.
pub async fn logged_in(app: &TestApp, username: &str) -> Browser {
    let b = Browser::new();
    app.login(&b.client).await;
    let page = login(app, &b, username).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.url().path(), "/");
    b
}

pub async fn me(app: &TestApp, b: &Browser) -> Value {
    app.get_json_as(&b.client, "/api/me").await
}

/// `PUT /api/me/name` from the canvas's own page (its Origin).
pub async fn set_name(app: &TestApp, b: &Browser, name: &str) -> reqwest::Response {
    b.client
        .put(app.url("/api/me/name"))
        .header("origin", app.url(""))
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap()
}

async fn error_of(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or_default();
    (status, body["error"].as_str().unwrap_or("").to_string())
}

contract_test!(login_makes_an_account_that_keeps_the_visitors_identity);
/// The first login adopts the anonymous identity: the account places as it, its
/// cooldown carries over, and the config and `/api/me` show the account.
async fn login_makes_an_account_that_keeps_the_visitors_identity(backend: Backend) {
    let LoginApp { app, idp } = spawn_with_provider(backend, &["--cooldown", "60"]).await;
    let config = app.get_json("/api/config").await;
    assert_eq!(config["login"]["mode"], "optional");
    assert_eq!(config["login"]["providers"][0]["id"], "local");
    assert_eq!(config["login"]["providers"][0]["name"], "Local");
    assert_eq!(
        config["login"]["providers"][0]["login_url"],
        "/auth/login/local"
    );
    assert_eq!(config["account"], Value::Null);

    let b = Browser::new();
    let anon = app.login(&b.client).await["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .put_pixel(&b.client, json!({"x": 1, "y": 1, "color": 2}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(me(&app, &b).await["account"], Value::Null);

    let page = login(&app, &b, "alice").await;
    assert_eq!(page.url().path(), "/", "{}", idp.log());
    let me = me(&app, &b).await;
    let account = &me["account"];
    assert_eq!(account["user"], anon.as_str(), "{me}");
    assert_eq!(account["provider"], "local");
    assert_eq!(account["name"], Value::Null);
    assert_eq!(account["role"], Value::Null);
    assert!(me["csrf_token"].as_str().unwrap().len() >= 16);
    let config = app.get_json_as(&b.client, "/api/config").await;
    assert_eq!(config["account"]["user"], anon.as_str());

    // The account is the anonymous identity: still in its cooldown.
    let (status, code) = error_of(
        app.put_pixel(&b.client, json!({"x": 2, "y": 1, "color": 2}))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (429, "cooldown"));

    // A second login of the same account (same device) is the same account.
    login(&app, &b, "alice").await;
    assert_eq!(
        crate::accounts::me(&app, &b).await["account"]["id"],
        account["id"]
    );
    app.stop().await;
}

contract_test!(a_second_device_links_its_identity_and_its_cooldown);
/// A login from another device links that device's identity to the account (admins
/// find the account by it) and carries its cooldown: the account may not place before
/// either identity could.
async fn a_second_device_links_its_identity_and_its_cooldown(backend: Backend) {
    let LoginApp { app, idp: _idp } =
        spawn_with_provider(backend, &["--cooldown", "60", "--admin-token", ADMIN_TOKEN]).await;
    let first = logged_in(&app, "bob").await;
    let account_user = me(&app, &first).await["account"]["user"]
        .as_str()
        .unwrap()
        .to_string();

    // Device two places anonymously, then logs in as bob.
    let second = Browser::new();
    let device = app.login(&second.client).await["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(device, account_user);
    let r = app
        .put_pixel(&second.client, json!({"x": 3, "y": 3, "color": 1}))
        .await;
    assert_eq!(r.status(), 200);
    login(&app, &second, "bob").await;
    assert_eq!(
        me(&app, &second).await["account"]["user"],
        account_user.as_str()
    );

    // The first device had not placed, yet the account now waits for the second's
    // cooldown.
    let (status, code) = error_of(
        app.put_pixel(&first.client, json!({"x": 4, "y": 3, "color": 1}))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (429, "cooldown"));

    // The device's identity names the account.
    let r = reqwest::Client::new()
        .post(app.url("/api/admin/moderators"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "user": device }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let granted: Value = r.json().await.unwrap();
    assert_eq!(granted["user"], account_user.as_str());
    assert_eq!(granted["role"], "moderator");
    app.stop().await;
}

pub const ADMIN_TOKEN: &str = "accounts-admin-token-0123456789abcdef";

contract_test!(display_names_are_unique_limited_and_checked_against_the_deny_list);
/// Names: 3 to 24 of the allowed characters, unique case-insensitively, changeable, not
/// reserved and not containing a word of `--name-deny-list`.
async fn display_names_are_unique_limited_and_checked_against_the_deny_list(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("deny.txt");
    std::fs::write(&list, "# test words\nbadword\n").unwrap();
    let LoginApp { app, idp: _idp } =
        spawn_with_provider(backend, &["--name-deny-list", list.to_str().unwrap()]).await;
    let alice = logged_in(&app, "alice").await;
    let bob = logged_in(&app, "bob").await;

    let r = set_name(&app, &alice, "Alice").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["account"]["name"], "Alice");
    assert_eq!(me(&app, &alice).await["account"]["name"], "Alice");

    for (name, status, code) in [
        ("alice", 409, "name_taken"),
        ("ALICE", 409, "name_taken"),
        ("al", 422, "invalid_field"),
        ("a name", 422, "invalid_field"),
        (&"x".repeat(25), 422, "invalid_field"),
        ("admin", 422, "invalid_field"),
        ("4dm1n", 422, "invalid_field"),
        ("xBadWordx", 422, "invalid_field"),
        ("b4dw0rd", 422, "invalid_field"),
    ] {
        let got = error_of(set_name(&app, &bob, name).await).await;
        assert_eq!(got, (status, code.to_string()), "{name}");
    }
    assert_eq!(me(&app, &bob).await["account"]["name"], Value::Null);

    // Renaming frees the old name.
    assert_eq!(set_name(&app, &alice, "Alice_2").await.status(), 200);
    assert_eq!(set_name(&app, &bob, "alice").await.status(), 200);
    assert_eq!(me(&app, &bob).await["account"]["name"], "alice");

    // Without a session there is nothing to name.
    let anon = client();
    app.login(&anon).await;
    let r = anon
        .put(app.url("/api/me/name"))
        .header("origin", app.url(""))
        .json(&json!({"name": "carol"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (401, "not_logged_in".into()));
    app.stop().await;
}

contract_test!(logout_ends_the_session_on_the_server);
/// Logout (CSRF-checked) ends the session in the store: the old cookie, replayed, is
/// anonymous.
async fn logout_ends_the_session_on_the_server(backend: Backend) {
    let LoginApp { app, idp: _idp } = spawn_with_provider(backend, &[]).await;
    let b = logged_in(&app, "dora").await;
    let token = b.cookie(&app, "rplace_session").expect("a session cookie");
    let replay = |token: String| {
        let app_url = app.url("/api/me");
        async move {
            reqwest::Client::new()
                .get(app_url)
                .header("cookie", format!("rplace_session={token}"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_ne!(replay(token.clone()).await["account"], Value::Null);

    let r = b.client.post(app.url("/auth/logout")).send().await.unwrap();
    assert_eq!(error_of(r).await, (403, "csrf".into()));
    let r = b
        .client
        .post(app.url("/auth/logout"))
        .header("origin", app.url(""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(me(&app, &b).await["account"], Value::Null);
    assert_eq!(replay(token).await["account"], Value::Null);
    app.stop().await;
}

contract_test!(login_required_refuses_anonymous_placing);
/// `--login required`: anonymous visitors watch but may not place; an account places as
/// its identity.
async fn login_required_refuses_anonymous_placing(backend: Backend) {
    let LoginApp { app, idp: _idp } = spawn_with_provider(backend, &["--login", "required"]).await;
    let anon = client();
    let config = app.login(&anon).await;
    assert_eq!(config["login"]["mode"], "required");
    let r = app
        .put_pixel(&anon, json!({"x": 0, "y": 0, "color": 1}))
        .await;
    assert_eq!(error_of(r).await, (401, "login_required".into()));
    app.board().await;

    let b = logged_in(&app, "erin").await;
    let user = me(&app, &b).await["account"]["user"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .put_pixel(&b.client, json!({"x": 5, "y": 2, "color": 3}))
        .await;
    assert_eq!(r.status(), 200);
    let seq = r.json::<Value>().await.unwrap()["seq"].as_u64().unwrap();
    assert_eq!(app.pixel_after(5, 2, seq).await["user"], user.as_str());
    app.stop().await;
}

contract_test!(login_off_hides_login);
/// `--login off`: no providers shown, the login URL is not served, and a placement is
/// anonymous.
async fn login_off_hides_login(backend: Backend) {
    let LoginApp { app, idp: _idp } = spawn_with_provider(backend, &["--login", "off"]).await;
    let config = app.get_json("/api/config").await;
    assert_eq!(config["login"]["mode"], "off");
    assert_eq!(config["login"]["providers"], json!([]));
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/auth/login/local"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await;
}

contract_test!(a_forged_or_foreign_callback_is_refused);
/// The callback takes only the login this browser started: a callback without the
/// pending-login cookie, or with another state, starts no session.
async fn a_forged_or_foreign_callback_is_refused(backend: Backend) {
    let LoginApp { app, idp: _idp } = spawn_with_provider(backend, &[]).await;
    let no_redirects = || {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    let c = no_redirects();
    let r = c
        .get(app.url("/auth/callback/local?code=abc&state=xyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (400, "login_failed".into()));

    // Started here, but the state that comes back is not the one sent.
    let r = c.get(app.url("/auth/login/local")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.contains("code_challenge_method=S256"), "{to}");
    assert!(to.contains("nonce="), "{to}");
    let r = c
        .get(app.url("/auth/callback/local?code=abc&state=not-the-state"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (400, "login_failed".into()));
    app.stop().await;
}

#[tokio::test]
/// A provider that is down does not keep the canvas from starting; its login answers
/// 503 until it is up.
async fn a_provider_that_is_down_does_not_stop_the_canvas() {
    let port = free_port();
    let spec = format!(
        "id=local;name=Local;issuer={};client_id=c;client_secret=s",
        OidcProvider::issuer_on(port)
    );
    let app = spawn_app(&["--oidc-provider", &spec]).await;
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/auth/login/local"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (503, "unavailable".into()));
    app.stop().await;
}

contract_test!(an_identity_belongs_to_one_account);
/// Two accounts on one browser: the second does not take over the identity the first
/// adopted (its placements stay the first's), it gets a fresh one.
async fn an_identity_belongs_to_one_account(backend: Backend) {
    let LoginApp { app, idp: _idp } = spawn_with_provider(backend, &[]).await;
    let b = logged_in(&app, "first").await;
    let first = me(&app, &b).await["account"].clone();
    let r = b
        .client
        .post(app.url("/auth/logout"))
        .header("origin", app.url(""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // The same device (its identity cookie), without the provider's session for "first".
    let again = Browser::new();
    let url: reqwest::Url = app.url("/").parse().unwrap();
    let id = b.cookie(&app, "rplace_id").expect("an identity cookie");
    again.jar.add_cookie_str(&format!("rplace_id={id}"), &url);
    let page = login(&app, &again, "second").await;
    assert_eq!(page.url().path(), "/");
    let second = me(&app, &again).await["account"].clone();
    assert_ne!(second["id"], first["id"]);
    assert_ne!(second["user"], first["user"], "{first} {second}");
    app.stop().await;
}
