//! `cold-start`: spawns the server binary on a data dir and times it to `/readyz`.

use super::*;

/// Flags of `cold-start`.
#[derive(Debug, Clone, clap::Args)]
pub struct ColdStartArgs {
    /// The server binary.
    #[arg(long, default_value = "target/release/rplace")]
    pub bin: PathBuf,
    /// Data dir the server starts with.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Copy this dir over --data-dir before every start (a start may write a snapshot,
    /// which would make the next start cheaper).
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// Where the server listens (passed as --listen).
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub listen: SocketAddr,
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// More server flags (after `--`).
    #[arg(last = true)]
    pub server_args: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ColdStartReport {
    /// Process start to the first `GET /readyz` that answered 200, each run, ms.
    pub runs_ms: Vec<f64>,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub peak_rss_kib: Vec<u64>,
}

pub(super) fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

pub(super) async fn ready(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let req = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).await.is_ok() && &buf[9..12] == b"200"
}

/// Times process start to ready, `runs` times.
pub async fn cold_start(a: &ColdStartArgs) -> anyhow::Result<ColdStartReport> {
    let mut runs = Vec::new();
    let mut rss = Vec::new();
    for i in 0..a.runs {
        if let Some(t) = &a.template {
            copy_dir(t, &a.data_dir)?;
        }
        // Page the binary and the data in as a restarted machine's second start would.
        let t0 = Instant::now();
        let mut child = tokio::process::Command::new(&a.bin)
            .arg("--listen")
            .arg(a.listen.to_string())
            .arg("--data-dir")
            .arg(&a.data_dir)
            .args(&a.server_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", a.bin.display()))?;
        let pid = child.id().context("server pid")?;
        loop {
            if ready(a.listen).await {
                break;
            }
            if let Some(st) = child.try_wait()? {
                bail!("server exited with {st} before it was ready");
            }
            if t0.elapsed() > Duration::from_secs(600) {
                bail!("server not ready in 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        rss.push(procstat::sample(pid).map_or(0, |s| s.hwm_kib));
        println!("cold-start run {}: ready in {ms:.1} ms", i + 1);
        runs.push(ms);
        terminate(pid);
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    }
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(ColdStartReport {
        median_ms: sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
        min_ms: sorted.first().copied().unwrap_or(0.0),
        max_ms: sorted.last().copied().unwrap_or(0.0),
        runs_ms: runs,
        peak_rss_kib: rss,
    })
}
