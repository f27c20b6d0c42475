//! Roles: admins by configuration, moderators granted by admins, 401/403 on every admin
//! endpoint, and CSRF protection of cookie-authenticated admin requests.

use crate::accounts::*;
use crate::helpers::*;
use serde_json::{Value, json};

async fn status_of(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or_default();
    (status, body["error"].as_str().unwrap_or("").to_string())
}

/// Every admin path, with the methods to try on it.
fn admin_paths() -> Vec<String> {
    let paths: Vec<String> = rplace::routes::paths()
        .into_iter()
        .filter(|p| p.starts_with("/api/admin"))
        .collect();
    assert!(paths.iter().any(|p| p == "/api/admin/moderators"));
    paths
}

const METHODS: [reqwest::Method; 4] = [
    reqwest::Method::GET,
    reqwest::Method::POST,
    reqwest::Method::PUT,
    reqwest::Method::DELETE,
];

contract_test!(admins_from_configuration_grant_and_revoke_moderators);
/// `--admins` names admins by subject and by verified e-mail; an admin grants and
/// revokes the moderator role, which takes effect on the moderator's session at once;
/// a moderator may not manage roles.
async fn admins_from_configuration_grant_and_revoke_moderators(backend: Backend) {
    let LoginApp { app, idp: _idp } = spawn_with_provider(
        backend,
        &["--admins", "local:boss,email:chief@example.test"],
    )
    .await;
    let boss = logged_in(&app, "boss").await;
    assert_eq!(me(&app, &boss).await["account"]["role"], "admin");
    let chief = logged_in(&app, "chief").await;
    assert_eq!(me(&app, &chief).await["account"]["role"], "admin");
    let carol = logged_in(&app, "carol").await;
    let carol_me = me(&app, &carol).await;
    assert_eq!(carol_me["account"]["role"], Value::Null);
    let carol_user = carol_me["account"]["user"].as_str().unwrap().to_string();

    let status = |b: &Browser| b.client.get(app.url("/api/admin/status")).send();
    assert_eq!(status(&boss).await.unwrap().status(), 200);
    assert_eq!(
        status_of(status(&carol).await.unwrap()).await,
        (403, "forbidden".into())
    );

    let origin = app.url("");
    let r = boss
        .client
        .post(app.url("/api/admin/moderators"))
        .header("origin", &origin)
        .json(&json!({ "user": carol_user }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["role"], "moderator");
    assert_eq!(me(&app, &carol).await["account"]["role"], "moderator");
    assert_eq!(status(&carol).await.unwrap().status(), 200);
    // A moderator may moderate, not manage roles.
    let r = carol
        .client
        .get(app.url("/api/admin/moderators"))
        .send()
        .await
        .unwrap();
    assert_eq!(status_of(r).await, (403, "forbidden".into()));

    let list: Value = boss
        .client
        .get(app.url("/api/admin/moderators"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mods = list["moderators"].as_array().unwrap();
    assert_eq!(mods.len(), 1, "{list}");
    assert_eq!(mods[0]["user"], carol_user.as_str());
    assert_eq!(
        list["admins"],
        json!(["local:boss", "email:chief@example.test"])
    );

    // A moderator's placements carry the standing (they may place in protected areas):
    // at least they place as their account.
    let r = app
        .put_pixel(&carol.client, json!({"x": 1, "y": 1, "color": 1}))
        .await;
    assert_eq!(r.status(), 200);

    let r = chief
        .client
        .delete(app.url(&format!("/api/admin/moderators/{carol_user}")))
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(me(&app, &carol).await["account"]["role"], Value::Null);
    assert_eq!(
        status_of(status(&carol).await.unwrap()).await,
        (403, "forbidden".into())
    );

    // Naming nobody's identity is a clear error.
    let r = boss
        .client
        .post(app.url("/api/admin/moderators"))
        .header("origin", &origin)
        .json(&json!({ "user": "00000000000000ff" }))
        .send()
        .await
        .unwrap();
    assert_eq!(status_of(r).await, (422, "invalid_field".into()));
    app.stop().await;
}

contract_test!(every_admin_endpoint_needs_a_role);
/// Every endpoint under `/api/admin/`, with every method: 401 without credentials, 403
/// for an ordinary logged-in user (with the canvas's Origin, so CSRF is not what refuses).
async fn every_admin_endpoint_needs_a_role(backend: Backend) {
    let LoginApp { app, idp: _idp } = spawn_with_provider(backend, &[]).await;
    let plain = logged_in(&app, "plain").await;
    let nobody = reqwest::Client::new();
    let origin = app.url("");
    for path in admin_paths() {
        for m in METHODS {
            let r = nobody
                .request(m.clone(), app.url(&path))
                .send()
                .await
                .unwrap();
            assert!(r.headers().contains_key("www-authenticate"), "{m} {path}");
            assert_eq!(
                status_of(r).await,
                (401, "unauthorized".into()),
                "{m} {path}"
            );
            let r = plain
                .client
                .request(m.clone(), app.url(&path))
                .header("origin", &origin)
                .send()
                .await
                .unwrap();
            assert_eq!(status_of(r).await, (403, "forbidden".into()), "{m} {path}");
        }
    }
    app.stop().await;
}

contract_test!(cookie_authenticated_admin_changes_need_the_origin_or_the_csrf_token);
/// CSRF: an admin's cookie alone does not authorize a change: without `Origin`, or with
/// another site's, it is 403 `csrf`; with the canvas's Origin or the session's
/// X-CSRF-Token it reaches the handler. Reads (GET) and bearer tokens are not subject to
/// it.
async fn cookie_authenticated_admin_changes_need_the_origin_or_the_csrf_token(backend: Backend) {
    let LoginApp { app, idp: _idp } = spawn_with_provider(
        backend,
        &["--admins", "local:boss", "--admin-token", ADMIN_TOKEN],
    )
    .await;
    let boss = logged_in(&app, "boss").await;
    let csrf = me(&app, &boss).await["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let post = || {
        boss.client
            .post(app.url("/api/admin/moderators"))
            .json(&json!({ "user": "00000000000000ff" }))
    };
    assert_eq!(status_of(post().send().await.unwrap()).await.1, "csrf");
    let r = post()
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(status_of(r).await, (403, "csrf".into()));
    let r = post()
        .header("x-csrf-token", "0".repeat(32))
        .send()
        .await
        .unwrap();
    assert_eq!(status_of(r).await, (403, "csrf".into()));
    // Through to the handler, which answers for the unknown user.
    let r = post().header("origin", app.url("")).send().await.unwrap();
    assert_eq!(status_of(r).await, (422, "invalid_field".into()));
    let r = post().header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(status_of(r).await, (422, "invalid_field".into()));
    // GET needs no Origin; the bearer token no CSRF check.
    let r = boss
        .client
        .get(app.url("/api/admin/moderators"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::new()
        .post(app.url("/api/admin/moderators"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "user": "00000000000000ff" }))
        .send()
        .await
        .unwrap();
    assert_eq!(status_of(r).await, (422, "invalid_field".into()));
    app.stop().await;
}
