//! Open-loop placements over keep-alive HTTP/1.1 connections.
//!
//! Placement `j` of the run is due at `j / rate` seconds and goes out on connection
//! `j mod conns`; a connection sends what is due as soon as its previous answer is in, so
//! the schedule does not slow down when the server does (it falls behind, which
//! [`PlacerReport::behind_ms`] shows). The requests are written by hand: the generator
//! shares the machine's cores with the server and a general-purpose client costs several
//! times more per request.

use crate::clock::now_ns;
use crate::report::{HistogramData, Latency, PlacerReport, new_histogram};
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What to place and how fast.
#[derive(Debug, Clone)]
pub struct PlacerConfig {
    pub addr: SocketAddr,
    /// The server's `--bench-token`.
    pub token: String,
    /// Placements per second, all connections together.
    pub rate: f64,
    pub duration: Duration,
    /// Keep-alive connections.
    pub conns: usize,
    pub width: u64,
    pub height: u64,
    pub colors: u64,
    /// Distinct identities placements are spread over.
    pub users: u64,
    /// Where placements land; uniform over the canvas by default.
    pub spread: Spread,
}

/// Where placements land on the canvas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spread {
    /// Uniformly over every pixel.
    Uniform,
    /// This fraction of placements in a square block of 1% of the tiles at the canvas's
    /// centre (as real events concentrate on a few pictures), the rest uniformly.
    HotSpot(f64),
    /// Uniformly over this many tiles scattered over the canvas (a world canvas painted
    /// here and there).
    Tiles(u64),
}

impl Spread {
    /// A pixel for random bits `r`.
    fn pick(self, r: u64, width: u64, height: u64) -> (u64, u64) {
        let uniform = (r % width, (r >> 16) % height);
        let tile = u64::from(rplace_domain::tile::TILE_SIZE);
        let fraction = match self {
            Spread::Uniform => return uniform,
            Spread::HotSpot(f) => f,
            Spread::Tiles(n) => {
                let (across, down) = (width.div_ceil(tile), height.div_ceil(tile));
                // Tile j of the n is a fixed pseudo-random tile of the canvas.
                let j = (r >> 32) % n.max(1);
                let h = (j + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
                let k = h % (across * down);
                let (x0, y0) = ((k % across) * tile, (k / across) * tile);
                let x = (x0 + r % tile).min(width - 1);
                let y = (y0 + (r >> 8) % tile).min(height - 1);
                return (x, y);
            }
        };
        // Bits 48..64 decide hot or not; bits 0..48 place the pixel.
        if ((r >> 48) as f64 / 65_536.0) >= fraction {
            return uniform;
        }
        let (across, down) = (width.div_ceil(tile), height.div_ceil(tile));
        let side = ((across * down) as f64 * 0.01).sqrt().ceil().max(1.0) as u64;
        let (bw, bh) = ((side * tile).min(width), (side * tile).min(height));
        let (x0, y0) = ((width - bw) / 2, (height - bh) / 2);
        (x0 + r % bw, y0 + (r >> 20) % bh)
    }
}

/// The placer's result: the report and every ack as (seq, ns since the epoch).
pub struct Placed {
    pub report: PlacerReport,
    pub acks: Vec<(u64, u64)>,
    /// When each acked placement's request was written, as (seq, ns since the epoch):
    /// where send-to-receipt latency starts.
    pub sent: Vec<(u64, u64)>,
    /// The tile of each acked placement, as (seq, `TileId::key`): what a client viewing
    /// only some tiles should receive.
    pub tiles: Vec<(u64, u64)>,
}

struct ConnResult {
    acks: Vec<(u64, u64)>,
    /// (seq, instant its request was written) of every ack.
    sent: Vec<(u64, u64)>,
    /// (seq, tile key) of every ack.
    tiles: Vec<(u64, u64)>,
    /// From writing a request to reading its whole answer.
    answer: HistogramData,
    errors: u64,
    samples: Vec<String>,
    lateness: HistogramData,
}

/// Runs the schedule to its end and waits for every answer.
pub async fn run(cfg: PlacerConfig) -> anyhow::Result<Placed> {
    let total = (cfg.rate * cfg.duration.as_secs_f64()).floor() as u64;
    let conns = (cfg.conns.max(1) as u64).min(total.max(1));
    // Connect first so the schedule does not start with a burst of handshakes.
    let mut streams = Vec::with_capacity(conns as usize);
    for _ in 0..conns {
        streams.push(open(cfg.addr).await?);
    }
    let start_ns = now_ns() + 20_000_000;
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(k, s)| {
            let cfg = cfg.clone();
            tokio::spawn(conn_loop(cfg, k as u64, conns, total, s, start, start_ns))
        })
        .collect();
    let mut acks = Vec::with_capacity(total as usize);
    let mut sent = Vec::with_capacity(total as usize);
    let mut tiles = Vec::with_capacity(total as usize);
    let mut errors = 0;
    let mut error_samples = Vec::new();
    let mut late = new_histogram();
    let mut answer = new_histogram();
    for t in tasks {
        let r = t.await?;
        acks.extend(r.acks);
        sent.extend(r.sent);
        tiles.extend(r.tiles);
        errors += r.errors;
        error_samples.extend(r.samples);
        r.lateness.add_to(&mut late);
        r.answer.add_to(&mut answer);
    }
    error_samples.truncate(5);
    acks.sort_unstable();
    let last_ack = acks.iter().map(|a| a.1).max().unwrap_or(start_ns);
    let span = (last_ack.saturating_sub(start_ns)) as f64 / 1e9;
    let end_ns = start_ns + cfg.duration.as_nanos() as u64;
    let report = PlacerReport {
        rate: cfg.rate,
        duration_s: cfg.duration.as_secs_f64(),
        scheduled: total,
        acked: acks.len() as u64,
        errors,
        error_samples,
        ack_rate: if span > 0.0 {
            acks.len() as f64 / span.max(cfg.duration.as_secs_f64())
        } else {
            0.0
        },
        behind_ms: last_ack.saturating_sub(end_ns) as f64 / 1e6,
        ack_latency: Latency::of(&late),
        put_latency: Latency::of(&answer),
        first_seq: acks.first().map_or(0, |a| a.0),
        last_seq: acks.last().map_or(0, |a| a.0),
    };
    Ok(Placed {
        report,
        acks,
        sent,
        tiles,
    })
}

async fn open(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A small fast generator for coordinates and identities; quality does not matter.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn conn_loop(
    cfg: PlacerConfig,
    k: u64,
    conns: u64,
    total: u64,
    mut stream: TcpStream,
    start: tokio::time::Instant,
    start_ns: u64,
) -> ConnResult {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (k + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut out = ConnResult {
        acks: Vec::with_capacity((total / conns + 1) as usize),
        sent: Vec::with_capacity((total / conns + 1) as usize),
        tiles: Vec::with_capacity((total / conns + 1) as usize),
        answer: HistogramData::default(),
        errors: 0,
        samples: Vec::new(),
        lateness: HistogramData::default(),
    };
    let mut late = new_histogram();
    let mut answer = new_histogram();
    let mut req = Vec::with_capacity(512);
    let mut buf = Vec::with_capacity(4096);
    let ns_per = 1e9 / cfg.rate;
    let mut j = k;
    while j < total {
        let due_ns = (j as f64 * ns_per) as u64;
        let due = start + Duration::from_nanos(due_ns);
        if tokio::time::Instant::now() < due {
            tokio::time::sleep_until(due).await;
        }
        let user = (j % cfg.users.max(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let r = rng.next();
        let (x, y) = cfg.spread.pick(r, cfg.width, cfg.height);
        let tile =
            rplace_domain::TileId::of(rplace_domain::Coord::new_unchecked(x as u32, y as u32));
        let color = (r >> 40) % cfg.colors;
        let body = format!("{{\"x\":{x},\"y\":{y},\"color\":{color}}}");
        req.clear();
        req.extend_from_slice(
            format!(
                "PUT /api/pixel HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
                 X-Rplace-User: {user:016x}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                cfg.addr,
                cfg.token,
                body.len()
            )
            .as_bytes(),
        );
        let sent_ns = now_ns();
        match exchange(&mut stream, &req, &mut buf).await {
            Ok((200, body)) => match parse_seq(&body) {
                Some(seq) => {
                    let at = now_ns();
                    out.acks.push((seq, at));
                    out.sent.push((seq, sent_ns));
                    out.tiles.push((seq, tile.key()));
                    answer.saturating_record((at.saturating_sub(sent_ns) / 1000).max(1));
                    late.saturating_record((at.saturating_sub(start_ns + due_ns) / 1000).max(1));
                }
                None => {
                    out.errors += 1;
                    out.samples.push(format!(
                        "200 without seq: {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
            },
            Ok((status, body)) => {
                out.errors += 1;
                if out.samples.len() < 3 {
                    out.samples
                        .push(format!("{status}: {}", String::from_utf8_lossy(&body)));
                }
            }
            Err(e) => {
                out.errors += 1;
                if out.samples.len() < 3 {
                    out.samples.push(format!("{e:#}"));
                }
                buf.clear();
                match open(cfg.addr).await {
                    Ok(s) => stream = s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        j += conns;
    }
    out.lateness = HistogramData::from_histogram(&late);
    out.answer = HistogramData::from_histogram(&answer);
    out
}

/// Writes one request and reads one response: (status, body).
async fn exchange(
    stream: &mut TcpStream,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    stream.write_all(req).await?;
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("server closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not UTF-8")?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let mut len = None;
    let mut close = false;
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("connection") && v.trim() == "close" {
                close = true;
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                bail!("chunked responses are not expected from PUT /api/pixel");
            }
        }
    }
    let len = len.context("response without Content-Length")?;
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("server closed the connection inside a body");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    if close {
        bail!("server closed the connection after {status}");
    }
    Ok((status, body))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `seq` of `{"seq":123,...}` without a JSON parser.
fn parse_seq(body: &[u8]) -> Option<u64> {
    let i = find(body, b"\"seq\":")? + 6;
    let digits: Vec<u8> = body[i..]
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_is_read_from_the_answer() {
        assert_eq!(parse_seq(br#"{"seq":1235,"at":1,"next_at":2}"#), Some(1235));
        assert_eq!(parse_seq(br#"{"at":1}"#), None);
    }

    #[test]
    fn spreads_stay_on_the_canvas_and_where_they_say() {
        let mut rng = XorShift(7);
        let (w, h) = (65_536, 65_536);
        let mut hot = 0;
        let mut tiles = std::collections::HashSet::new();
        for _ in 0..20_000 {
            let r = rng.next();
            let (x, y) = Spread::HotSpot(0.9).pick(r, w, h);
            assert!(x < w && y < h);
            // 1% of 256² tiles is a 26-tile square at the centre.
            let c = 13 * 256;
            if (32_768 - c..32_768 + c).contains(&x) && (32_768 - c..32_768 + c).contains(&y) {
                hot += 1;
            }
            let (x, y) = Spread::Tiles(50).pick(r, w, h);
            assert!(x < w && y < h);
            tiles.insert((x / 256, y / 256));
            let (x, y) = Spread::Uniform.pick(r, 1000, 3);
            assert!(x < 1000 && y < 3);
        }
        assert!(hot > 17_000, "{hot} of 20,000 in the hot spot");
        assert!(
            tiles.len() <= 50 && tiles.len() > 40,
            "{} tiles",
            tiles.len()
        );
    }
}
