//! The charges cooldown model end to end over HTTP, on both backends: a pool of N
//! placements per user, one regained every T, a new user starting full.

use crate::helpers::*;
use serde_json::{Value, json};
use std::time::Duration;

/// A pool of 3 regaining one every 0.3 s.
const POOL: &[&str] = &[
    "--cooldown-model",
    "charges",
    "--charges-max",
    "3",
    "--charge-every",
    "0.3",
];

/// A pool of 3 that does not regain within a test (one charge an hour).
const SLOW_POOL: &[&str] = &[
    "--cooldown-model",
    "charges",
    "--charges-max",
    "3",
    "--charge-every",
    "3600",
];

async fn put(app: &TestApp, c: &reqwest::Client, x: u32) -> (u16, Value) {
    let r = app.put_pixel(c, json!({"x": x, "y": 2, "color": 5})).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

contract_test!(a_new_user_has_a_full_pool_and_spends_it_down);
/// `/api/config` says the model and a new user's full pool; N placements in a row are
/// accepted, each answer saying what is left, then the next is a cooldown refusal that
/// says when the next charge arrives, and spends nothing.
async fn a_new_user_has_a_full_pool_and_spends_it_down(backend: Backend) {
    let app = spawn_app_on(backend, SLOW_POOL).await;
    let c = client();
    let config = app.login(&c).await;
    assert_eq!(config["cooldown_model"], "charges");
    assert_eq!(config["charges_max"], 3);
    assert_eq!(config["charge_every_ms"], 3_600_000);
    assert_eq!(config["cooldown_ms"], 0);
    assert_eq!(config["user"]["charges"], 3, "{config}");
    assert_eq!(config["user"]["next_charge_at"], Value::Null);
    assert_eq!(config["user"]["next_at"], Value::Null);
    let mut first_at = 0;
    for (i, left) in [2, 1, 0].into_iter().enumerate() {
        let (status, body) = put(&app, &c, i as u32).await;
        assert_eq!(status, 200, "placement {i}: {body}");
        assert_eq!(body["charges"], left, "{body}");
        let at = body["at"].as_i64().unwrap();
        if i == 0 {
            first_at = at;
        }
        // The first spent charge is the next to come back.
        assert_eq!(
            body["next_charge_at"],
            json!(first_at + 3_600_000),
            "{body}"
        );
        let next_at = body["next_at"].as_i64().unwrap();
        if left > 0 {
            assert_eq!(next_at, at, "a charge is left: may place now");
        } else {
            assert_eq!(next_at, first_at + 3_600_000);
        }
    }
    let (status, body) = put(&app, &c, 3).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "cooldown");
    assert_eq!(body["charges"], 0);
    assert_eq!(body["next_charge_at"], json!(first_at + 3_600_000));
    assert_eq!(body["next_at"], json!(first_at + 3_600_000));
    assert!(body["retry_after_ms"].as_i64().unwrap() > 3_000_000);
    // The config agrees, and the refusal spent nothing.
    let config = app.get_json_as(&c, "/api/config").await;
    assert_eq!(config["user"]["charges"], 0, "{config}");
    assert_eq!(
        config["user"]["next_charge_at"],
        json!(first_at + 3_600_000)
    );
    assert_eq!(config["user"]["next_at"], json!(first_at + 3_600_000));
    // Another user has their own full pool.
    let d = client();
    assert_eq!(app.login(&d).await["user"]["charges"], 3);
    assert_eq!(put(&app, &d, 5).await.0, 200);
    app.stop().await;
}

contract_test!(a_charge_comes_back_after_its_period);
/// After emptying the pool, one charge is back after T (and one placement with it), and
/// the pool fills up to N, never past it.
async fn a_charge_comes_back_after_its_period(backend: Backend) {
    let app = spawn_app_on(backend, POOL).await;
    let c = client();
    app.login(&c).await;
    // Spend all three; each refill takes 0.3 s, so retry until three were accepted.
    let mut accepted = 0;
    let mut x = 0;
    while accepted < 3 {
        if put(&app, &c, x).await.0 == 200 {
            accepted += 1;
        }
        x = (x + 1) % 16;
    }
    let empty = eventually(Duration::from_secs(10), "an empty pool", || async {
        let (status, body) = put(&app, &c, 9).await;
        (status == 429).then_some(body)
    })
    .await;
    let next_charge = empty["next_charge_at"].as_i64().unwrap();
    assert_eq!(empty["charges"], 0);
    // The charge comes back: /api/config shows it, and a placement is accepted.
    eventually(Duration::from_secs(10), "a charge back", || async {
        let config = app.get_json_as(&c, "/api/config").await;
        (config["user"]["charges"].as_u64().unwrap() >= 1).then_some(())
    })
    .await;
    assert!(
        rplace_store::now_ms() >= next_charge - 5,
        "not before its time"
    );
    let (status, body) = put(&app, &c, 10).await;
    assert_eq!(status, 200, "{body}");
    // Left alone, the pool fills to exactly N.
    let config = eventually(Duration::from_secs(10), "a full pool", || async {
        let config = app.get_json_as(&c, "/api/config").await;
        config["user"]["next_charge_at"].is_null().then_some(config)
    })
    .await;
    assert_eq!(config["user"]["charges"], 3, "{config}");
    assert_eq!(config["user"]["next_at"], Value::Null);
    app.stop().await;
}

contract_test!(the_fixed_model_answers_as_before);
/// Without the charges model nothing changes but the model's name in the config.
async fn the_fixed_model_answers_as_before(backend: Backend) {
    let app = spawn_app_on(backend, &["--cooldown", "60"]).await;
    let c = client();
    let config = app.login(&c).await;
    assert_eq!(config["cooldown_model"], "fixed");
    assert_eq!(config["charges_max"], Value::Null);
    assert!(config["user"].get("charges").is_none(), "{config}");
    let (status, body) = put(&app, &c, 0).await;
    assert_eq!(status, 200);
    assert!(body.get("charges").is_none(), "{body}");
    let (status, body) = put(&app, &c, 1).await;
    assert_eq!(status, 429);
    assert!(body.get("next_charge_at").is_none(), "{body}");
    app.stop().await;
}

contract_test!(a_replayed_placement_answers_the_pool_as_it_is);
/// A repeat of an Idempotency-Key spends no charge; its answer shows the pool now.
async fn a_replayed_placement_answers_the_pool_as_it_is(backend: Backend) {
    let app = spawn_app_on(backend, SLOW_POOL).await;
    let c = client();
    app.login(&c).await;
    let keyed = || {
        c.put(app.url("/api/pixel"))
            .header("idempotency-key", "charge-1")
            .json(&json!({"x": 1, "y": 1, "color": 2}))
            .send()
    };
    let first: Value = keyed().await.unwrap().json().await.unwrap();
    assert_eq!(first["charges"], 2, "{first}");
    let again = keyed().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["seq"], first["seq"]);
    assert_eq!(again["charges"], 2, "{again}");
    assert_eq!(
        app.get_json_as(&c, "/api/config").await["user"]["charges"],
        2
    );
    app.stop().await;
}

contract_test!(
    concurrent_placements_across_instances_spend_exactly_the_pool,
    ignore_embedded = "one process by design: no second instance"
);
/// Shared mode: two instances, one user with N charges placing concurrently through both:
/// exactly N are accepted, the rest refused as cooldown.
async fn concurrent_placements_across_instances_spend_exactly_the_pool(backend: Backend) {
    const N: usize = 5;
    let args = [
        "--cooldown-model",
        "charges",
        "--charges-max",
        "5",
        "--charge-every",
        "3600",
    ];
    let a = spawn_app_on(backend, &args).await;
    let b = a.sibling(&args).await;
    let c = client();
    assert_eq!(a.login(&c).await["user"]["charges"], N);
    let attempts = (0..4 * N as u32).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        let c = &c;
        async move { put(app, c, i % 16).await }
    });
    let results = futures_util::future::join_all(attempts).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<_> = results.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(ok, N, "{results:?}");
    assert_eq!(refused.len(), 3 * N, "{results:?}");
    assert!(refused.iter().all(|(_, b)| b["error"] == "cooldown"));
    let mut left: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b["charges"].as_u64().unwrap())
        .collect();
    left.sort_unstable();
    assert_eq!(left, [0, 1, 2, 3, 4], "each charge spent once");
    assert_eq!(b.get_json_as(&c, "/api/config").await["user"]["charges"], 0);
    b.stop().await;
    a.stop().await;
}

contract_test!(the_pool_survives_a_restart);
/// A restart keeps the pools: the embedded store recomputes them from its log, the
/// shared one keeps them in Redis.
async fn the_pool_survives_a_restart(backend: Backend) {
    let app = spawn_app_on(backend, SLOW_POOL).await;
    let c = client();
    app.login(&c).await;
    for x in 0..2 {
        assert_eq!(put(&app, &c, x).await.0, 200);
    }
    let app = app.restart(SLOW_POOL).await;
    let config = app.get_json_as(&c, "/api/config").await;
    assert_eq!(config["user"]["charges"], 1, "{config}");
    assert_eq!(put(&app, &c, 2).await.0, 200);
    assert_eq!(put(&app, &c, 3).await.0, 429);
    app.stop().await;
}

contract_test!(an_empty_pool_says_so_in_its_message);
/// The refusal of an empty pool names charges, not "moments ago".
async fn an_empty_pool_says_so_in_its_message(backend: Backend) {
    let one = [
        "--cooldown-model",
        "charges",
        "--charges-max",
        "1",
        "--charge-every",
        "3600",
    ];
    let app = spawn_app_on(backend, &one).await;
    let c = client();
    app.login(&c).await;
    assert_eq!(put(&app, &c, 0).await.0, 200);
    let (status, body) = put(&app, &c, 1).await;
    assert_eq!(status, 429);
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("no charges left"), "{message}");
    app.stop().await;
}
