//! `board`: `GET /api/board` (or any other path, e.g. one tile) with wrk, beside nginx
//! serving the same bytes.

use super::*;

/// Flags of `board`.
#[derive(Debug, Clone, clap::Args)]
pub struct BoardArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// nginx worker processes (the server uses every core).
    #[arg(long, default_value_t = 2)]
    pub nginx_workers: u32,
    /// Rounds of (server, nginx) pairs; who goes first alternates, and the ratios are the
    /// medians of the rounds, so that a noisy machine drifting during a run cancels out.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// What to fetch: the board, or e.g. `/api/tiles/8192/8192` for one tile.
    #[arg(long, default_value = "/api/board")]
    pub path: String,
}

#[derive(Debug, Serialize)]
pub struct WrkRun {
    pub round: u32,
    pub target: String,
    pub encoding: String,
    pub body_bytes: usize,
    pub requests_per_s: f64,
    pub transfer: String,
    pub latency_p99: String,
    pub non_2xx: u64,
}

#[derive(Debug, Serialize)]
pub struct BoardReport {
    pub runs: Vec<WrkRun>,
    /// Server requests/s over nginx requests/s, uncompressed: the median of the rounds.
    pub ratio_raw: f64,
    /// The same with `Accept-Encoding: gzip`.
    pub ratio_gzip: f64,
    /// Each round's ratio, raw.
    pub rounds_raw: Vec<f64>,
    /// Each round's ratio, gzip.
    pub rounds_gzip: Vec<f64>,
}

pub(super) async fn fetch(
    addr: SocketAddr,
    path: &str,
    gzip: bool,
) -> anyhow::Result<(Vec<u8>, Option<String>)> {
    let mut req = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .no_zstd()
        .no_proxy()
        .build()?
        .get(format!("http://{addr}{path}"));
    if gzip {
        req = req.header("accept-encoding", "gzip");
    }
    let r = req.send().await?.error_for_status()?;
    let enc = r
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((r.bytes().await?.to_vec(), enc))
}

pub(super) fn wrk(
    a: &BoardArgs,
    url: &str,
    gzip: bool,
) -> anyhow::Result<(f64, String, String, u64)> {
    let mut cmd = std::process::Command::new("wrk");
    cmd.arg(format!("-t{}", a.threads))
        .arg(format!("-c{}", a.connections))
        .arg(format!("-d{}s", a.duration))
        .arg("--latency");
    if gzip {
        cmd.arg("-H").arg("Accept-Encoding: gzip");
    }
    let out = cmd
        .arg(url)
        .output()
        .context("run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |key: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or("")
            .to_string()
    };
    let rps = field("Requests/sec:").parse().unwrap_or(0.0);
    let non2xx = field("Non-2xx or 3xx responses:").parse().unwrap_or(0);
    if rps == 0.0 {
        bail!("wrk said: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((rps, field("Transfer/sec:"), field("99%"), non2xx))
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `GET /api/board` with wrk against the server and against nginx serving the same bytes.
pub async fn board(a: &BoardArgs) -> anyhow::Result<BoardReport> {
    use std::os::unix::fs::PermissionsExt;
    if !a.path.starts_with("/api/") || a.path.contains("..") {
        bail!("--path must be a path under /api/, got {:?}", a.path);
    }
    let (raw, _) = fetch(a.addr, &a.path, false).await?;
    let (gz, enc) = fetch(a.addr, &a.path, true).await?;
    if enc.as_deref() != Some("gzip") {
        bail!("the server answered Accept-Encoding: gzip with {enc:?}");
    }
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("www").join(a.path.trim_start_matches('/'));
    let parent = file.parent().context("a path with a folder")?;
    std::fs::create_dir_all(parent)?;
    std::fs::write(&file, &raw)?;
    let mut gz_file = file.clone().into_os_string();
    gz_file.push(".gz");
    std::fs::write(&gz_file, &gz)?;
    // nginx runs as nobody: every folder on the way must be readable.
    let mut p = parent.to_path_buf();
    while p.starts_with(dir.path()) {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
        if !p.pop() {
            break;
        }
    }
    let port = free_port()?;
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes {w};\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  default_type application/octet-stream;\n  \
             sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n  \
             client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  \
             fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n  \
             server {{\n    listen 127.0.0.1:{port};\n    root {d}/www;\n    \
             location /api/ {{ gzip_static on; }}\n  }}\n}}\n",
            w = a.nginx_workers,
            d = dir.path().display(),
        ),
    )?;
    let mut nginx = tokio::process::Command::new("nginx")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .kill_on_drop(true)
        .spawn()
        .context("start nginx (apt-get install nginx)")?;
    let nginx_addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let t0 = Instant::now();
    while tokio::net::TcpStream::connect(nginx_addr).await.is_err() {
        if t0.elapsed() > Duration::from_secs(5) {
            bail!(
                "nginx did not start: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let result = async {
        let (n_raw, _) = fetch(nginx_addr, &a.path, false).await?;
        let (n_gz, n_enc) = fetch(nginx_addr, &a.path, true).await?;
        if n_raw != raw || n_gz != gz || n_enc.as_deref() != Some("gzip") {
            bail!("nginx does not serve the same bytes as the server");
        }
        let mut runs = Vec::new();
        let (mut rounds_raw, mut rounds_gzip) = (Vec::new(), Vec::new());
        for round in 0..a.rounds.max(1) {
            for (gzip, body) in [(false, raw.len()), (true, gz.len())] {
                let mut pair = [("rplace", a.addr, 0.0), ("nginx", nginx_addr, 0.0)];
                if round % 2 == 1 {
                    pair.reverse();
                }
                for (target, addr, rps_out) in &mut pair {
                    let (rps, transfer, p99, non2xx) =
                        wrk(a, &format!("http://{addr}{}", a.path), gzip)?;
                    println!(
                        "board round {round} {target} {}: {rps:.0} req/s, {transfer}/s, p99 {p99}",
                        if gzip { "gzip" } else { "raw" }
                    );
                    *rps_out = rps;
                    runs.push(WrkRun {
                        round,
                        target: target.to_string(),
                        encoding: if gzip { "gzip" } else { "identity" }.into(),
                        body_bytes: body,
                        requests_per_s: rps,
                        transfer,
                        latency_p99: p99,
                        non_2xx: non2xx,
                    });
                }
                let rps = |name: &str| pair.iter().find(|p| p.0 == name).map_or(0.0, |p| p.2);
                let ratio = rps("rplace") / rps("nginx");
                if gzip {
                    rounds_gzip.push(ratio);
                } else {
                    rounds_raw.push(ratio);
                }
            }
        }
        Ok(BoardReport {
            ratio_raw: median(&rounds_raw),
            ratio_gzip: median(&rounds_gzip),
            rounds_raw,
            rounds_gzip,
            runs,
        })
    }
    .await;
    if let Some(pid) = nginx.id() {
        terminate(pid);
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), nginx.wait()).await;
    result
}

pub(super) fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
