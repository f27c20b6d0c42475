use crate::helpers::*;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Expects a close frame with 1001 within `within`, past any update frames.
async fn closes_with_1001(ws: &mut Ws, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next_msg(ws, left).await {
            Some(Message::Close(Some(frame))) => return assert_eq!(u16::from(frame.code), 1001),
            Some(Message::Binary(_) | Message::Text(_)) => continue,
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
}

contract_test!(during_the_drain_only_readiness_fails_then_websockets_close_with_1001);
async fn during_the_drain_only_readiness_fails_then_websockets_close_with_1001(backend: Backend) {
    // Long enough for the checks below on a slow machine; the test waits for the end.
    let mut app = spawn_app_on(backend, &["--drain", "6"]).await;
    let mut before = app.ws().await;
    hello(&mut before).await;
    app.begin_shutdown();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while reqwest::get(app.url("/readyz")).await.unwrap().status() != 503 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Everything else keeps working: placements, board reads, new websockets.
    let seq = app.bench_place(1, 2, 3, 4).await;
    app.board_after(seq).await;
    app.login(&app.client).await;
    let r = app
        .put_pixel(&app.client, json!({"x": 1, "y": 1, "color": 2}))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let mut during = app.ws().await;
    hello(&mut during).await;
    assert_eq!(
        reqwest::get(app.url("/readyz")).await.unwrap().status(),
        503,
        "the drain ended before the checks: lengthen it"
    );
    // Then both websockets get 1001 and the server stops.
    closes_with_1001(&mut before, Duration::from_secs(20)).await;
    closes_with_1001(&mut during, Duration::from_secs(5)).await;
    app.stop().await;
}

contract_test!(restart_restores_board_seq_and_cooldowns);
async fn restart_restores_board_seq_and_cooldowns(backend: Backend) {
    let app = spawn_app_on(backend, &["--cooldown", "60", "--snapshot-every", "3"]).await;
    app.login(&app.client).await;
    assert_eq!(
        app.put_pixel(&app.client, json!({"x": 9, "y": 4, "color": 7}))
            .await
            .status(),
        200
    );
    for i in 0..5 {
        app.bench_place(100 + i, i as u32, 0, 2).await;
    }
    let before = app.board_after(6).await;
    let client = app.client.clone();
    let app = app
        .restart(&["--cooldown", "60", "--snapshot-every", "3"])
        .await;
    assert_eq!(app.board().await, before);
    let r = app
        .put_pixel(&client, json!({"x": 0, "y": 1, "color": 1}))
        .await;
    assert_eq!(r.status(), 429, "the cooldown survived the restart");
    app.stop().await;
}

// The tests below are about the embedded store only: they kill -9 or SIGTERM the binary
// and restart it on its data dir (a shared-mode instance keeps nothing of its own; the
// topology test kills those).

/// The binary as a child process, so the test can `kill -9` it.
struct Proc {
    child: Child,
    addr: String,
}

/// A test that fails leaves no server behind.
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_proc(dir: &std::path::Path, sync: &str) -> Proc {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_rplace"))
        .args([
            "--listen",
            &addr,
            "--data-dir",
            dir.to_str().unwrap(),
            "--width",
            "64",
            "--height",
            "64",
        ])
        .args([
            "--cooldown",
            "0",
            "--ip-rate",
            "0",
            "--board-ttl",
            "0",
            "--sync",
            sync,
            "--snapshot-every",
            "500",
        ])
        .args(["--bench-token", BENCH_TOKEN])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc { child, addr };
    let readyz = format!("http://{}/readyz", proc.addr);
    eventually(
        Duration::from_secs(30),
        "the child server is ready",
        || async {
            let r = reqwest::get(&readyz).await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    proc
}

#[tokio::test]
async fn kill_9_loses_no_acknowledged_placement() {
    for sync in ["normal", "full"] {
        let dir = tempfile::tempdir().unwrap();
        let mut proc = start_proc(dir.path(), sync).await;
        let http = reqwest::Client::new();
        // 16 writers place on distinct pixels while the process is killed under them.
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u64, u32, u32, u8)>::new()));
        let mut writers = Vec::new();
        for w in 0..16u32 {
            let (http, addr, acked) = (http.clone(), proc.addr.clone(), acked.clone());
            writers.push(tokio::spawn(async move {
                for k in 0..256u32 {
                    let (x, y, color) = (w * 4 + k % 4, k / 4, ((w + k) % 15 + 1) as u8);
                    let r = http
                        .put(format!("http://{addr}/api/pixel"))
                        .header("authorization", format!("Bearer {BENCH_TOKEN}"))
                        .header("x-rplace-user", format!("{:016x}", w + 1))
                        .json(&json!({"x": x, "y": y, "color": color}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            let v: serde_json::Value = match r.json().await {
                                Ok(v) => v,
                                Err(_) => return,
                            };
                            acked
                                .lock()
                                .unwrap()
                                .push((v["seq"].as_u64().unwrap(), x, y, color));
                        }
                        _ => return,
                    }
                }
            }));
        }
        // Let placements flow, then kill without warning.
        eventually(
            Duration::from_secs(60),
            "300 placements acknowledged",
            || async { (acked.lock().unwrap().len() >= 300).then_some(()) },
        )
        .await;
        proc.child.kill().unwrap(); // SIGKILL
        proc.child.wait().unwrap();
        for w in writers {
            w.await.unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        assert!(acked.len() >= 300);

        let mut proc = start_proc(dir.path(), sync).await;
        let r = reqwest::get(format!("http://{}/api/board", proc.addr))
            .await
            .unwrap();
        let seq: u64 = r.headers()["x-board-seq"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let board = r.bytes().await.unwrap();
        let max_acked = acked.iter().map(|a| a.0).max().unwrap();
        assert!(
            seq >= max_acked,
            "{sync}: board seq {seq} < acknowledged {max_acked}"
        );
        for (s, x, y, color) in &acked {
            let got = nibble(&board, *y as usize * 64 + *x as usize);
            assert_eq!(
                got, *color,
                "{sync}: acknowledged seq {s} at ({x},{y}) lost"
            );
        }
        // And it takes placements again, continuing the sequence.
        let r = http
            .put(format!("http://{}/api/pixel", proc.addr))
            .header("authorization", format!("Bearer {BENCH_TOKEN}"))
            .header("x-rplace-user", "00000000000000ff")
            .json(&json!({"x": 63, "y": 63, "color": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["seq"], seq + 1);
        proc.child.kill().unwrap();
        proc.child.wait().unwrap();
    }
}

#[tokio::test]
async fn sigterm_exits_zero_after_flushing() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = start_proc(dir.path(), "full").await;
    let http = reqwest::Client::new();
    for i in 0..10u32 {
        let r = http
            .put(format!("http://{}/api/pixel", proc.addr))
            .header("authorization", format!("Bearer {BENCH_TOKEN}"))
            .header("x-rplace-user", "0000000000000001")
            .json(&json!({"x": i, "y": 0, "color": 3}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let status = Command::new("kill")
        .args(["-TERM", &proc.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = proc.child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    let proc = start_proc(dir.path(), "full").await;
    let r = reqwest::get(format!("http://{}/api/board", proc.addr))
        .await
        .unwrap();
    assert_eq!(r.headers()["x-board-seq"], "10");
    drop(proc);
}

/// An idempotency key's first answer survives `kill -9` and a restart: a retry of a PUT
/// whose answer was lost in the crash learns the placement was made, and places nothing.
#[tokio::test]
async fn an_idempotency_key_is_answered_the_same_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let put = |addr: String| async move {
        reqwest::Client::new()
            .put(format!("http://{addr}/api/pixel"))
            .header("authorization", format!("Bearer {BENCH_TOKEN}"))
            .header("x-rplace-user", "00000000000000aa")
            .header("idempotency-key", "survives-kill-9")
            .json(&json!({"x": 5, "y": 6, "color": 7}))
            .send()
            .await
            .unwrap()
    };
    let mut proc = start_proc(dir.path(), "normal").await;
    let first = put(proc.addr.clone()).await;
    assert_eq!(first.status(), 200);
    let first: serde_json::Value = first.json().await.unwrap();
    proc.child.kill().unwrap(); // SIGKILL
    proc.child.wait().unwrap();
    let mut proc = start_proc(dir.path(), "normal").await;
    let again = put(proc.addr.clone()).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<serde_json::Value>().await.unwrap(), first);
    let r = reqwest::get(format!("http://{}/api/board", proc.addr))
        .await
        .unwrap();
    assert_eq!(
        r.headers()["x-board-seq"],
        first["seq"].to_string().as_str()
    );
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
}
