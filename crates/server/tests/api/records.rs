//! Reports (`POST /api/reports`, `/api/admin/reports`) and the audit log
//! (`/api/admin/audit`), on both backends.

use crate::helpers::*;
use crate::strict::ADMIN_TOKEN;
use serde_json::{Value, json};

/// The admin token's identity, as the audit log and resolutions name it.
const OPERATOR: &str = "0000000000000000";

fn admin(app: &TestApp, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(method, app.url(path))
        .bearer_auth(ADMIN_TOKEN)
}

async fn admin_get(app: &TestApp, path: &str) -> Value {
    let r = admin(app, reqwest::Method::GET, path).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

async fn report(app: &TestApp, client: &reqwest::Client, body: Value) -> reqwest::Response {
    client
        .post(app.url("/api/reports"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Files a report as `client`, which must succeed; its id.
async fn file(app: &TestApp, client: &reqwest::Client, x: u32, y: u32, reason: &str) -> i64 {
    let r = report(app, client, json!({"x": x, "y": y, "reason": reason})).await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

async fn resolve(app: &TestApp, id: i64, body: Value) -> reqwest::Response {
    admin(
        app,
        reqwest::Method::POST,
        &format!("/api/admin/reports/{id}/resolve"),
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

contract_test!(a_report_keeps_what_was_reported_and_is_resolved_once_and_audited);
/// A report records the reporter and the pixel as it was (color, last placement);
/// moderators list it, inspect it with the pixel's history, and resolve it once, which
/// the audit log records.
async fn a_report_keeps_what_was_reported_and_is_resolved_once_and_audited(backend: Backend) {
    let app = spawn_app_on(backend, &["--admin-token", ADMIN_TOKEN]).await;
    let griefer = 0x00ab_cdef_0123_4567u64;
    app.bench_place(griefer, 3, 2, 4).await;
    let seq = app.bench_place(griefer, 3, 2, 5).await;
    app.pixel_after(3, 2, seq).await;
    let reporter = client();
    let me = app.login(&reporter).await["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = report(
        &app,
        &reporter,
        json!({"x": 3, "y": 2, "reason": "  a rude word  ", "rect": {"x": 1, "y": 1, "w": 4, "h": 3}}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();

    // Painted over after the report: the report still shows what was reported.
    app.bench_place(7, 3, 2, 9).await;
    let list = admin_get(&app, "/api/admin/reports").await;
    let reports = list["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 1, "{list}");
    let r = &reports[0];
    assert_eq!(r["id"], id);
    assert_eq!(r["reporter"], me.as_str());
    assert_eq!(r["addr"], "127.0.0.1");
    assert_eq!((r["x"].clone(), r["y"].clone()), (json!(3), json!(2)));
    assert_eq!(r["rect"], json!({"x": 1, "y": 1, "w": 4, "h": 3}));
    assert_eq!(r["reason"], "a rude word");
    assert_eq!(r["color"], 5);
    assert_eq!(r["last_seq"], seq);
    assert_eq!(r["last_user"], format!("{griefer:016x}"));
    assert_eq!(r["status"], "open");
    assert_eq!(r["resolved"], Value::Null);
    assert!(r["at"].as_i64().unwrap() > 0);
    assert_eq!(list["next_before"], Value::Null);

    let seen = eventually(
        std::time::Duration::from_secs(10),
        "the inspection shows the newer placement",
        || async {
            let v = admin_get(&app, &format!("/api/admin/reports/{id}")).await;
            (v["history"].as_array().unwrap().len() == 3).then_some(v)
        },
    )
    .await;
    assert_eq!(seen["report"]["id"], id);
    assert_eq!(seen["color"], 9);
    let colors: Vec<_> = seen["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["color"].as_u64().unwrap())
        .collect();
    assert_eq!(colors, [9, 5, 4], "newest first: {seen}");
    assert_eq!(seen["history"][1]["user"], format!("{griefer:016x}"));

    let r = resolve(
        &app,
        id,
        json!({"resolution": "rolled back", "note": "raid"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["status"], "resolved");
    assert_eq!(done["resolved"]["by"], OPERATOR);
    assert_eq!(done["resolved"]["by_name"], "operator (admin token)");
    assert_eq!(done["resolved"]["resolution"], "rolled back");
    assert_eq!(done["resolved"]["note"], "raid");
    assert!(done["resolved"]["at"].as_i64().unwrap() >= done["at"].as_i64().unwrap());

    // Once: a second resolution changes nothing and is not audited.
    let again = resolve(&app, id, json!({"resolution": "no action"})).await;
    assert_eq!(again.status(), 409);
    assert_eq!(
        again.json::<Value>().await.unwrap()["error"],
        "already_resolved"
    );
    let missing = resolve(&app, id + 1000, json!({"resolution": "x"})).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"], "not_found");
    for path in ["/api/admin/reports/999999", "/api/admin/reports/nope"] {
        let r = admin(&app, reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }

    assert_eq!(
        admin_get(&app, "/api/admin/reports").await["reports"],
        json!([])
    );
    let resolved = admin_get(&app, "/api/admin/reports?status=resolved").await;
    assert_eq!(
        resolved["reports"][0]["resolved"]["resolution"],
        "rolled back"
    );
    let all = admin_get(&app, "/api/admin/reports?status=all").await;
    assert_eq!(all["reports"].as_array().unwrap().len(), 1);

    let audit = admin_get(&app, "/api/admin/audit").await;
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    let e = &entries[0];
    assert_eq!(e["kind"], "resolve_report");
    assert_eq!(e["actor"], OPERATOR);
    assert_eq!(e["actor_name"], "operator (admin token)");
    assert_eq!(e["reason"], "rolled back");
    assert_eq!(e["pixels"], 0);
    assert_eq!(e["detail"]["report"], id);
    assert_eq!(e["detail"]["x"], 3);
    assert_eq!(e["detail"]["note"], "raid");
    assert!(e["at"].as_i64().unwrap() >= done["resolved"]["at"].as_i64().unwrap());
    app.stop().await;
}

contract_test!(a_report_needs_an_identity_and_a_valid_body);
/// No identity cookie: 401. Bodies that are not a report say what is wrong.
async fn a_report_needs_an_identity_and_a_valid_body(backend: Backend) {
    let app = spawn_app_on(backend, &["--admin-token", ADMIN_TOKEN]).await;
    let anonymous = reqwest::Client::new();
    let r = report(&app, &anonymous, json!({"x": 1, "y": 1, "reason": "spam"})).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthorized");

    let c = client();
    app.login(&c).await;
    let long = "x".repeat(501);
    for (body, status, error, field) in [
        (json!({"x": 1, "y": 1}), 422, "missing_field", "reason"),
        (
            json!({"x": 1, "y": 1, "reason": "   "}),
            422,
            "invalid_field",
            "reason",
        ),
        (
            json!({"x": 1, "y": 1, "reason": long}),
            422,
            "invalid_field",
            "reason",
        ),
        (
            json!({"x": 1, "y": 1, "reason": 5}),
            422,
            "invalid_field",
            "reason",
        ),
        (json!({"y": 1, "reason": "r"}), 422, "missing_field", "x"),
        (
            json!({"x": 16, "y": 1, "reason": "r"}),
            422,
            "invalid_field",
            "x",
        ),
        (
            json!({"x": 1, "y": 8, "reason": "r"}),
            422,
            "invalid_field",
            "y",
        ),
        (
            json!({"x": 1, "y": 1, "reason": "r", "rect": {"x": 10, "y": 0, "w": 7, "h": 1}}),
            422,
            "invalid_field",
            "rect",
        ),
        (
            json!({"x": 1, "y": 1, "reason": "r", "rect": [0, 0, 1, 1]}),
            422,
            "invalid_field",
            "rect",
        ),
        (json!([1, 2]), 400, "invalid_json", ""),
    ] {
        let r = report(&app, &c, body.clone()).await;
        assert_eq!(r.status(), status, "{body}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error"], error, "{body}: {b}");
        if !field.is_empty() {
            assert_eq!(b["field"], field, "{body}: {b}");
        }
    }
    let r = c
        .post(app.url("/api/reports"))
        .body(r#"{"x":1,"y":1,"reason":"r"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // 500 characters (not bytes) is the limit.
    let r = report(&app, &c, json!({"x": 1, "y": 1, "reason": "é".repeat(500)})).await;
    assert_eq!(r.status(), 201);
    // Nothing refused was stored.
    let list = admin_get(&app, "/api/admin/reports?status=all").await;
    assert_eq!(list["reports"].as_array().unwrap().len(), 1, "{list}");
    app.stop().await;
}

contract_test!(reports_are_limited_per_identity_and_per_address);
/// Five reports in ten minutes per identity and per address; the sixth answers 429 with
/// when to retry, and stores nothing.
async fn reports_are_limited_per_identity_and_per_address(backend: Backend) {
    let app = spawn_app_on(
        backend,
        &[
            "--admin-token",
            ADMIN_TOKEN,
            "--trusted-proxies",
            "127.0.0.1",
        ],
    )
    .await;
    let from = |c: &reqwest::Client, xff: &'static str| {
        c.post(app.url("/api/reports"))
            .header("x-forwarded-for", xff)
            .json(&json!({"x": 0, "y": 0, "reason": "bots"}))
    };
    let a = client();
    app.login(&a).await;
    for i in 0..5 {
        let r = from(&a, "10.0.0.1").send().await.unwrap();
        assert_eq!(r.status(), 201, "report {i}");
    }
    let r = from(&a, "10.0.0.1").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"], "rate_limited");
    let retry = b["retry_after_ms"].as_i64().unwrap();
    assert!(retry > 9 * 60 * 1000 && retry <= 10 * 60 * 1000, "{b}");
    assert!(b["message"].as_str().unwrap().contains("report"), "{b}");

    // The same identity from another address, and another identity from the same one.
    let r = from(&a, "10.0.0.2").send().await.unwrap();
    assert_eq!(r.status(), 429, "per identity");
    let fresh = client();
    app.login(&fresh).await;
    let r = from(&fresh, "10.0.0.1").send().await.unwrap();
    assert_eq!(r.status(), 429, "per address");
    // Someone else, elsewhere, is not affected.
    let r = from(&fresh, "10.0.0.3").send().await.unwrap();
    assert_eq!(r.status(), 201);

    let list = admin_get(&app, "/api/admin/reports?status=all&limit=200").await;
    assert_eq!(list["reports"].as_array().unwrap().len(), 6);
    app.stop().await;
}

contract_test!(the_audit_log_lists_newest_first_in_pages_and_filters);
/// `GET /api/admin/audit`: newest first, `limit` and `before` page through it,
/// `kind` and `actor` filter; invalid parameters say what is allowed. Reports page the
/// same way.
async fn the_audit_log_lists_newest_first_in_pages_and_filters(backend: Backend) {
    let app = spawn_app_on(backend, &["--admin-token", ADMIN_TOKEN]).await;
    let c = client();
    app.login(&c).await;
    let mut ids = Vec::new();
    for x in 0..3 {
        ids.push(file(&app, &c, x, 0, "grief").await);
    }
    for (i, id) in ids.iter().enumerate() {
        let r = resolve(&app, *id, json!({"resolution": format!("done {i}")})).await;
        assert_eq!(r.status(), 200);
    }
    let all = admin_get(&app, "/api/admin/audit").await;
    let reasons: Vec<_> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons, ["done 2", "done 1", "done 0"], "{all}");
    assert_eq!(all["next_before"], Value::Null);
    let entry_ids: Vec<i64> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(entry_ids.windows(2).all(|w| w[0] > w[1]), "{entry_ids:?}");

    let page = admin_get(&app, "/api/admin/audit?limit=2").await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_before"], entry_ids[1]);
    let rest = admin_get(
        &app,
        &format!("/api/admin/audit?limit=2&before={}", entry_ids[1]),
    )
    .await;
    assert_eq!(rest["entries"].as_array().unwrap().len(), 1);
    assert_eq!(rest["entries"][0]["id"], entry_ids[2]);
    assert_eq!(rest["next_before"], Value::Null);

    for (query, n) in [
        ("kind=resolve_report", 3),
        ("kind=ban", 0),
        (&format!("actor={OPERATOR}") as &str, 3),
        ("actor=00000000000000ff", 0),
        ("kind=resolve_report&actor=0000000000000000&limit=1", 1),
    ] {
        let v = admin_get(&app, &format!("/api/admin/audit?{query}")).await;
        assert_eq!(v["entries"].as_array().unwrap().len(), n, "{query}: {v}");
    }
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("before=x", "before"),
        ("kind=Drop%20table", "kind"),
        ("actor=12", "actor"),
    ] {
        let r = admin(
            &app,
            reqwest::Method::GET,
            &format!("/api/admin/audit?{query}"),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error"], "invalid_query", "{query}");
        assert_eq!(b["field"], field, "{query}");
    }

    let page = admin_get(&app, "/api/admin/reports?status=all&limit=2").await;
    let got: Vec<i64> = page["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [ids[2], ids[1]]);
    assert_eq!(page["next_before"], ids[1]);
    let rest = admin_get(
        &app,
        &format!("/api/admin/reports?status=all&before={}", ids[1]),
    )
    .await;
    assert_eq!(rest["reports"][0]["id"], ids[0]);
    for query in ["status=closed", "limit=201"] {
        let r = admin(
            &app,
            reqwest::Method::GET,
            &format!("/api/admin/reports?{query}"),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 400, "{query}");
    }
    app.stop().await;
}

contract_test!(the_records_admin_endpoints_need_credentials);
/// Without the admin token (or with a wrong one) every records endpoint answers 401 and
/// changes nothing.
async fn the_records_admin_endpoints_need_credentials(backend: Backend) {
    let app = spawn_app_on(backend, &["--admin-token", ADMIN_TOKEN]).await;
    let c = client();
    app.login(&c).await;
    let id = file(&app, &c, 1, 1, "grief").await;
    let plain = reqwest::Client::new();
    for token in [None, Some("not-the-admin-token-0123456789abcdef")] {
        for (method, path) in [
            (reqwest::Method::GET, "/api/admin/reports".to_string()),
            (reqwest::Method::GET, format!("/api/admin/reports/{id}")),
            (
                reqwest::Method::POST,
                format!("/api/admin/reports/{id}/resolve"),
            ),
            (reqwest::Method::GET, "/api/admin/audit".to_string()),
        ] {
            let mut req = plain
                .request(method.clone(), app.url(&path))
                .json(&json!({"resolution": "x"}));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} with {token:?}");
            assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthorized");
        }
    }
    // The identity cookie of a visitor is no credential either.
    let r = c.get(app.url("/api/admin/reports")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let open = admin_get(&app, "/api/admin/reports").await;
    assert_eq!(open["reports"][0]["status"], "open");
    assert_eq!(
        admin_get(&app, "/api/admin/audit").await["entries"],
        json!([])
    );
    app.stop().await;
}
