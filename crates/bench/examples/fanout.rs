//! The floor under websocket fan-out on this machine: a minimal tokio-tungstenite server
//! that sends the same update frame to every connected client each tick, with nothing else
//! (no HTTP, no store, one unsplit socket per task, no per-send timer).
//!
//! ```sh
//! cargo run --release -p rplace-bench --example fanout -- 127.0.0.1:18095 250 250 40 &
//! rplace-bench idle-memory --addr 127.0.0.1:18095 -c 15000 --settle 30 --token x \
//!     --server-pid $!
//! ```
//! Arguments: listen address, tick ms, placements per frame, seconds to run. It prints,
//! per second, the ticks' fan-out time (broadcast to the last client's write done) and at
//! the end its CPU per client-frame. Clients get a valid hello and valid frames with
//! contiguous seqs, so `rplace-bench` clients read them like a real server's.

use futures_util::SinkExt;
use futures_util::StreamExt;
use rplace_bench::procstat;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(1).map_or("127.0.0.1:18095", String::as_str);
    let tick_ms: u64 = args.get(2).map_or(Ok(250), |s| s.parse())?;
    let per_frame: u64 = args.get(3).map_or(Ok(250), |s| s.parse())?;
    let seconds: u64 = args.get(4).map_or(Ok(40), |s| s.parse())?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let (tx, _) = broadcast::channel::<(bytes_t::Frame, Instant)>(64);
    let clients = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let last_done_ns = Arc::new(AtomicU64::new(0));
    let origin = Instant::now();
    {
        let (tx, clients, done, last) = (
            tx.clone(),
            clients.clone(),
            done.clone(),
            last_done_ns.clone(),
        );
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let mut rx = tx.subscribe();
                let (clients, done, last) = (clients.clone(), done.clone(), last.clone());
                tokio::spawn(async move {
                    let _ = sock.set_nodelay(true);
                    let Ok(mut ws) = tokio_tungstenite::accept_async(sock).await else {
                        return;
                    };
                    let hello = r#"{"type":"hello","seq":0,"tick_ms":250}"#;
                    if ws.send(Message::Text(hello.into())).await.is_err() {
                        return;
                    }
                    clients.fetch_add(1, Ordering::Relaxed);
                    loop {
                        tokio::select! {
                            m = rx.recv() => match m {
                                Ok((frame, _)) => {
                                    if ws.send(Message::Binary(frame.0)).await.is_err() { break; }
                                    done.fetch_add(1, Ordering::Relaxed);
                                    last.fetch_max(origin.elapsed().as_nanos() as u64, Ordering::Relaxed);
                                }
                                Err(_) => break,
                            },
                            m = ws.next() => if !matches!(m, Some(Ok(_))) { break },
                        }
                    }
                    clients.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
    }
    // Wait for an audience that stops growing, then tick.
    let mut seen = 0;
    let give_up = Instant::now() + Duration::from_secs(300);
    loop {
        anyhow::ensure!(
            Instant::now() < give_up,
            "no clients connected in 5 minutes"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let n = clients.load(Ordering::Relaxed);
        if n > 0 && n == seen {
            break;
        }
        seen = n;
    }
    let n = clients.load(Ordering::Relaxed);
    println!("fanout: {n} clients, tick {tick_ms} ms, {per_frame} placements a frame");
    let cpu0 = procstat::own().cpu_s;
    let sent0 = done.load(Ordering::Relaxed);
    let mut seq = 1u64;
    let mut spreads = Vec::new();
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        let mut f = Vec::with_capacity(13 + 5 * per_frame as usize);
        f.push(1u8);
        f.extend_from_slice(&seq.to_le_bytes());
        f.extend_from_slice(&(per_frame as u32).to_le_bytes());
        for i in 0..per_frame {
            f.extend_from_slice(&((i % 1000) as u16).to_le_bytes());
            f.extend_from_slice(&((i / 1000) as u16).to_le_bytes());
            f.push((i % 16) as u8);
        }
        seq += per_frame;
        let before = done.load(Ordering::Relaxed);
        let t0 = origin.elapsed().as_nanos() as u64;
        let _ = tx.send((bytes_t::Frame(f.into()), Instant::now()));
        tokio::time::sleep(Duration::from_millis(tick_ms)).await;
        let delivered = done.load(Ordering::Relaxed) - before;
        let spread = last_done_ns.load(Ordering::Relaxed).saturating_sub(t0) as f64 / 1e6;
        if delivered >= n {
            spreads.push(spread);
        }
    }
    let cpu = procstat::own().cpu_s - cpu0;
    let sent = done.load(Ordering::Relaxed) - sent0;
    spreads.sort_by(f64::total_cmp);
    let q = |p: f64| {
        spreads
            .get(((spreads.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "fanout: {sent} client-frames in {seconds} s ({:.0}/s), cpu {cpu:.2} s = {:.1} µs a client-frame; \
         time from broadcast to the last client's write: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} complete ticks)",
        sent as f64 / seconds as f64,
        cpu * 1e6 / sent.max(1) as f64,
        q(0.5),
        q(0.99),
        q(1.0),
        spreads.len()
    );
    Ok(())
}

/// The frame type the broadcast carries (cheap to clone).
mod bytes_t {
    #[derive(Clone)]
    pub struct Frame(pub tokio_tungstenite::tungstenite::Bytes);
}
