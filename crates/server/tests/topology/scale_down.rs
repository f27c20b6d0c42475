//! Scaling down under load: a SIGTERMed instance drains (only readiness fails), HAProxy
//! moves traffic away, no placement is refused and its followers get 1001.

use super::*;

/// How a follower's websocket ended.
#[derive(Debug, PartialEq)]
enum Ending {
    /// Still open when the test stopped watching.
    Open,
    /// A close frame with this code.
    Closed(u16),
    /// Dropped without a close frame (what a client reports as 1006).
    Cut,
}

on_each_redis!(a_scale_down_refuses_no_placement_and_followers_see_1001);
async fn a_scale_down_refuses_no_placement_and_followers_see_1001(kind: RedisKind) {
    // Through HAProxy with PROXY v2, so that the header is also tested against the real one.
    let mut t = start_with(kind, &["--drain", "3"], false, true);
    let port = t.haproxy.port;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Six followers, two on each instance (round robin).
    let mut followers = Vec::new();
    for _ in 0..6 {
        let mut w = ws(port).await;
        let mut stop = stop_rx.clone();
        followers.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => return Ending::Open,
                    m = w.next() => match m {
                        Some(Ok(Message::Close(Some(f)))) => return Ending::Closed(f.code.into()),
                        Some(Ok(Message::Close(None))) => return Ending::Closed(1005),
                        Some(Ok(_)) => continue,
                        Some(Err(_)) | None => return Ending::Cut,
                    }
                }
            }
        }));
    }
    // Four writers place through HAProxy all along.
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let stop = stop_rx.clone();
        writers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let (mut placed, mut refused) = (0u32, Vec::new());
            let mut k = 0u32;
            while !*stop.borrow() {
                let (x, y) = ((w as u32 * 8 + k % 8) % 32, k / 8 % 32);
                match http
                    .put(url(port, "/api/pixel"))
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .header("x-rplace-user", format!("{:016x}", w + 1))
                    .json(&json!({"x": x, "y": y, "color": 1 + k % 15}))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => placed += 1,
                    Ok(r) => refused.push(format!("{}: {}", r.status(), r.text().await.unwrap())),
                    Err(e) => refused.push(e.to_string()),
                }
                k = k.wrapping_add(1);
            }
            (placed, refused)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Scale down: SIGTERM one instance and wait for its exit (drain, then 1001, flush).
    let mut gone = t.nodes.remove(0);
    tokio::task::spawn_blocking(move || gone.terminate())
        .await
        .unwrap();
    // Placements go on on the others for a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_tx.send(true).unwrap();
    let (mut placed, mut refused) = (0, Vec::new());
    for w in writers {
        let (p, r) = w.await.unwrap();
        placed += p;
        refused.extend(r);
    }
    assert!(placed > 0);
    assert!(
        refused.is_empty(),
        "{} of {} placements refused: {:?}",
        refused.len(),
        placed as usize + refused.len(),
        &refused[..refused.len().min(5)]
    );
    let mut endings = Vec::new();
    for f in followers {
        endings.push(f.await.unwrap());
    }
    assert!(!endings.contains(&Ending::Cut), "{endings:?}");
    assert!(endings.contains(&Ending::Closed(1001)), "{endings:?}");
    assert!(
        endings
            .iter()
            .all(|e| matches!(e, Ending::Open | Ending::Closed(1001))),
        "{endings:?}"
    );
}
