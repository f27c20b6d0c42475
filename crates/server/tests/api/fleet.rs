//! Shared mode only (one Redis or the cluster): instances on the same Redis and PostgreSQL
//! are one canvas. (The embedded store is one process by design, so these have no embedded
//! counterpart; the topology test does the same through HAProxy with child processes.)

use crate::helpers::*;
use rplace_domain::wire;
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

contract_test!(
    instances_on_one_shared_store_are_one_canvas,
    ignore_embedded = "one process by design: no second instance"
);
async fn instances_on_one_shared_store_are_one_canvas(backend: Backend) {
    let a = spawn_app_on(backend, &["--cooldown", "60"]).await;
    let b = a.sibling(&["--cooldown", "60"]).await;
    let mut ws_b = b.ws().await;
    hello(&mut ws_b).await;
    a.login(&a.client).await;
    let r = a
        .put_pixel(&a.client, json!({"x": 6, "y": 5, "color": 4}))
        .await;
    assert_eq!(r.status(), 200);
    // The other instance's clients get it live, and its board has it.
    match next_msg(&mut ws_b, Duration::from_secs(10)).await {
        Some(Message::Binary(f)) => {
            let ups = wire::decode_frame(&f).unwrap();
            assert_eq!(
                (ups[0].seq.0, ups[0].coord.x(), ups[0].coord.y()),
                (1, 6, 5)
            );
        }
        other => panic!("expected a frame on the other instance, got {other:?}"),
    }
    let (_, board) = b.board_after(1).await;
    assert_eq!(nibble(&board, 5 * 16 + 6), 4);
    // Same identity (the cookie key is shared), same cooldown, whichever instance.
    let r = b
        .put_pixel(&a.client, json!({"x": 7, "y": 5, "color": 4}))
        .await;
    assert_eq!(r.status(), 429);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "cooldown");
    assert_eq!(b.pixel_after(6, 5, 1).await["color"], 4);
    b.stop().await;
    a.stop().await;
}
