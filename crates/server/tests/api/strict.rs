//! Strict HTTP: JSON for every API error (the framework's own included), one valid Host,
//! duplicate JSON keys, the Secure cookie, the metrics token and listener, websocket
//! origins, the admin token, and an OpenAPI document that matches the router.

use crate::helpers::*;
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod admin;

pub(crate) const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123";
const METRICS_TOKEN: &str = "test-metrics-token-0123";

const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
];

/// Asserts a JSON error answer and returns its body (`Null` for HEAD, which has none).
pub(crate) async fn json_error(r: reqwest::Response, what: &str) -> Value {
    let status = r.status();
    assert!(status.as_u16() >= 400, "{what}: {status}");
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(
        ctype.as_deref(),
        Some("application/json"),
        "{what}: {status}"
    );
    let text = r.text().await.unwrap();
    if text.is_empty() {
        return Value::Null;
    }
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
    assert!(
        body["error"].as_str().is_some_and(|s| !s.is_empty()),
        "{what}: {body}"
    );
    assert!(
        body["message"].as_str().is_some_and(|s| !s.is_empty()),
        "{what}: {body}"
    );
    body
}

#[tokio::test]
async fn every_route_answers_every_method_it_does_not_serve_with_json_405_and_allow() {
    let app = spawn_app(&["--admin-token", ADMIN_TOKEN]).await;
    let client = reqwest::Client::new();
    let paths = rplace::routes::paths();
    assert!(paths.len() >= 11, "{paths:?}");
    for path in &paths {
        let mut allowed_somewhere = false;
        for method in METHODS {
            let r = client
                .request(method.clone(), app.url(path))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            let what = format!("{method} {path}");
            if r.status() == 405 {
                let allow = r
                    .headers()
                    .get("allow")
                    .unwrap_or_else(|| panic!("{what}: no Allow"))
                    .to_str()
                    .unwrap()
                    .to_string();
                assert!(!allow.is_empty(), "{what}: empty Allow");
                assert!(
                    !allow.split(',').any(|m| m.trim() == method.as_str()),
                    "{what}: Allow {allow} lists the refused method"
                );
                let body = json_error(r, &what).await;
                if method != Method::HEAD {
                    assert_eq!(body["error"], "method_not_allowed", "{what}: {body}");
                    // The body names what the Allow header lists (POST-only admin
                    // actions too).
                    assert!(
                        allow
                            .split(',')
                            .filter(|m| *m != "HEAD")
                            .all(|m| body["allowed"].as_str().unwrap().contains(m.trim())),
                        "{what}: {body}"
                    );
                }
            } else {
                allowed_somewhere = true;
                if r.status().as_u16() >= 400 && (path.starts_with("/api") || path == "/ws") {
                    json_error(r, &what).await;
                }
            }
        }
        assert!(allowed_somewhere, "{path} serves no method");
    }
    // The one answer with two methods.
    let r = client.delete(app.url("/api/pixel")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET,HEAD,PUT");
    app.stop().await;
}

#[tokio::test]
async fn unknown_api_paths_and_framework_rejections_are_json() {
    let app = spawn_app(&[]).await;
    let client = reqwest::Client::new();
    for (method, path) in [
        (Method::GET, "/api"),
        (Method::GET, "/api/"),
        (Method::GET, "/api/nope"),
        (Method::DELETE, "/api/nope/deeper"),
        (Method::POST, "/api"),
    ] {
        let r = client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
        let body = json_error(r, path).await;
        assert_eq!(body["error"], "not_found");
    }
    // A websocket handshake that is not one: the framework's rejection, as JSON.
    let r = client.get(app.url("/ws")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(json_error(r, "GET /ws").await["error"], "bad_request");
    // A query string that is not UTF-8.
    let r = client
        .get(app.url("/api/pixel?x=%ff&y=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r, "bad query").await["error"], "invalid_query");
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_json_key_is_refused_naming_it() {
    let app = spawn_app(&[]).await;
    app.login(&app.client).await;
    for body in [
        r#"{"x":1,"y":0,"color":1,"x":2}"#,
        r#"{"x":1,"y":0,"color":1,"color":1}"#,
        r#"{"x":1,"y":0,"color":1,"\u0079":3}"#,
    ] {
        let r = app
            .client
            .put(app.url("/api/pixel"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let err = json_error(r, body).await;
        assert_eq!(err["error"], "invalid_json");
        assert!(
            err["message"].as_str().unwrap().contains("more than once"),
            "{err}"
        );
    }
    let (seq, board) = app.board().await;
    assert_eq!(seq, 0);
    assert!(board.iter().all(|b| *b == 0));
    app.stop().await;
}

/// Sends `head` on a fresh connection and reads the whole answer (it asks to close).
async fn raw(app: &TestApp, head: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the server answers and closes")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_request_without_host_or_with_two_gets_400_json() {
    let app = spawn_app(&[]).await;
    let bad = [
        "GET /api/config HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /api/config HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: user@a.example\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
    ];
    for head in bad {
        let answer = raw(&app, head).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{head:?} -> {answer}");
        assert!(
            answer.contains("\"error\":\"invalid_host\""),
            "{head:?} -> {answer}"
        );
    }
    let good = [
        "GET /healthz HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n",
        // HTTP/1.0 does not need a Host.
        "GET /healthz HTTP/1.0\r\n\r\n",
    ];
    for head in good {
        let answer = raw(&app, head).await;
        assert!(answer.starts_with("HTTP/1."), "{head:?} -> {answer}");
        assert!(answer.contains(" 200 OK"), "{head:?} -> {answer}");
    }
    app.stop().await;
}

fn set_cookie(r: &reqwest::Response) -> String {
    r.headers()["set-cookie"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn the_identity_cookie_is_secure_when_the_public_url_is_https() {
    let app = spawn_app(&["--public-url", "https://place.example"]).await;
    let r = reqwest::get(app.url("/api/config")).await.unwrap();
    let c = set_cookie(&r);
    assert!(c.contains("; Secure"), "{c}");
    assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax"), "{c}");
    let r = reqwest::get(app.url("/")).await.unwrap();
    assert!(set_cookie(&r).contains("; Secure"));
    app.stop().await;

    let app = spawn_app(&["--public-url", "http://place.example"]).await;
    let r = reqwest::get(app.url("/api/config")).await.unwrap();
    assert!(!set_cookie(&r).contains("Secure"));
    app.stop().await;
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_set() {
    let app = spawn_app(&["--metrics-token", METRICS_TOKEN]).await;
    let client = reqwest::Client::new();
    for token in [None, Some("wrong"), Some(&METRICS_TOKEN[1..])] {
        let mut req = client.get(app.url("/metrics"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{token:?}");
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        assert_eq!(json_error(r, "metrics").await["error"], "unauthorized");
    }
    let r = client
        .get(app.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("rplace_"));
    app.stop().await;
}

#[tokio::test]
async fn metrics_listen_moves_metrics_to_their_own_listener() {
    // A free port for the second listener (the server binds it itself).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let app = spawn_app(&["--metrics-listen", &listen]).await;
    let r = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(r.status(), 404, "/metrics left the main listener");
    let r = reqwest::get(format!("http://{listen}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("rplace_"));
    let r = reqwest::get(format!("http://{listen}/api/config"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the metrics listener serves nothing else");
    app.stop().await;
}

/// Opens `/ws` with `origin` (`None`: no Origin header); `Ok` with the hello's seq, or
/// `Err` with the refusal's status and body.
async fn ws_with_origin(app: &TestApp, origin: Option<&str>) -> Result<u64, (u16, Value)> {
    let mut req = format!("ws://{}/ws", app.addr)
        .into_client_request()
        .unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    } else {
        req.headers_mut().remove("origin");
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, _)) => Ok(hello(&mut ws).await),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            let body = r.body().as_deref().unwrap_or_default();
            Err((
                r.status().as_u16(),
                serde_json::from_slice(body).unwrap_or(Value::Null),
            ))
        }
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn websocket_origins_are_checked() {
    let app = spawn_app(&[]).await;
    let same = format!("http://{}", app.addr);
    assert!(
        ws_with_origin(&app, None).await.is_ok(),
        "no Origin: not a browser"
    );
    assert!(ws_with_origin(&app, Some(&same)).await.is_ok());
    for bad in ["http://evil.example", "null", "https://127.0.0.1", "junk"] {
        let (status, body) = ws_with_origin(&app, Some(bad)).await.unwrap_err();
        assert_eq!(status, 403, "{bad}");
        assert_eq!(body["error"], "origin_not_allowed", "{bad}: {body}");
    }
    app.stop().await;

    let app = spawn_app(&[
        "--allowed-origins",
        "https://place.example,http://b.example:81",
    ])
    .await;
    assert!(
        ws_with_origin(&app, Some("https://place.example"))
            .await
            .is_ok()
    );
    assert!(
        ws_with_origin(&app, Some("http://b.example:81"))
            .await
            .is_ok()
    );
    let same = format!("http://{}", app.addr);
    assert_eq!(ws_with_origin(&app, Some(&same)).await.unwrap_err().0, 403);
    app.stop().await;

    let app = spawn_app(&["--allowed-origins", "*"]).await;
    assert!(
        ws_with_origin(&app, Some("http://evil.example"))
            .await
            .is_ok()
    );
    app.stop().await;

    let app = spawn_app(&["--public-url", "https://place.example"]).await;
    assert!(
        ws_with_origin(&app, Some("https://place.example"))
            .await
            .is_ok()
    );
    assert_eq!(
        ws_with_origin(&app, Some("http://place.example"))
            .await
            .unwrap_err()
            .0,
        403
    );
    app.stop().await;
}
