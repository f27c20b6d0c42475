//! Timelapse export: an animated PNG of a region over a time range, rendered in the
//! background (`POST /api/timelapse`, then poll `GET /api/timelapse/{id}`, then download
//! `GET /api/timelapse/{id}/file`; routes in `crate::routes::timelapse`).
//!
//! - [`spec`]: the request and its limits.
//! - [`render`]: the replay of the log into the region and the APNG encoder.
//! - [`jobs`]: the jobs' states, the bounded queue, the per-user limit and the bounded
//!   directory of finished files. Jobs do not survive a restart.
//!
//! A job reads the whole log in seq order through the dataset export's
//! [`rplace_store::export::Export`] (a page of [`EXPORT_PAGE`] rows at a time, up to the
//! head taken when it starts, the next page read while this one is replayed on a
//! blocking thread), so rendering never blocks the async threads and memory stays a page
//! plus the region. Rollbacks and fills are placements in that log, so a frame shows them
//! from their time on.

pub mod jobs;
pub mod render;
pub mod spec;

use crate::app::AppState;
use jobs::{Jobs, Limits};
use render::{Frames, RenderError, Renderer};
use rplace_domain::{Placement, Seq};
use rplace_store::StoreError;
use rplace_store::export::{EXPORT_PAGE, Export};
use std::io::BufWriter;

/// The flags of the timelapse export.
#[derive(Debug, Clone, clap::Args)]
pub struct TimelapseArgs {
    /// Timelapses rendered at once (each keeps about one core busy); 0 turns them off.
    #[arg(long, env = "RPLACE_TIMELAPSE_CONCURRENCY", default_value_t = 1)]
    pub timelapse_concurrency: usize,

    /// Timelapses that may wait for a renderer; more get 503 `busy`.
    #[arg(long, env = "RPLACE_TIMELAPSE_QUEUE", default_value_t = 8)]
    pub timelapse_queue: usize,

    /// MiB that finished timelapse files may take on disk together (least recently
    /// downloaded go first); one file is capped at a quarter of it.
    #[arg(long, env = "RPLACE_TIMELAPSE_DISK_MB", default_value_t = 1024)]
    pub timelapse_disk_mb: u64,
}

impl TimelapseArgs {
    /// The jobs, their files in `<data-dir>/timelapse` (embedded) or a temporary
    /// directory (shared mode: instances do not share a data dir).
    pub fn jobs(&self, config: &crate::Config) -> std::io::Result<Jobs> {
        let disk_bytes = self.timelapse_disk_mb.max(1) << 20;
        let limits = Limits {
            concurrency: self.timelapse_concurrency,
            queue: self.timelapse_queue,
            disk_bytes,
            file_bytes: disk_bytes / 4,
        };
        let shared = config.redis_url.is_some() && config.database_url.is_some();
        let dir = (!shared).then(|| config.data_dir.join("timelapse"));
        Jobs::new(dir.as_deref(), limits)
    }
}

/// Why a job failed; [`JobError::user_message`] is what the user sees.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("reading the log: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("writing the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server is shutting down")]
    Stopped,
    #[error("a rendering thread panicked")]
    Panicked,
}

impl JobError {
    fn user_message(&self) -> String {
        match self {
            JobError::Render(RenderError::TooLarge { max_bytes }) => format!(
                "the animation would be larger than {} MiB, the most this server keeps; choose fewer frames, a smaller region or a smaller scale",
                max_bytes >> 20
            ),
            JobError::Stopped => "the server restarted while rendering; ask again".into(),
            _ => "the timelapse could not be rendered; try again later".into(),
        }
    }
}

/// Queues nothing itself: runs job `id` (already submitted) in the background, waiting
/// for a rendering slot first.
pub fn spawn(app: AppState, id: String, req: spec::Request) {
    tokio::spawn(async move {
        let jobs = app.timelapses.clone();
        let _slot = tokio::select! {
            s = jobs.slot() => s,
            _ = app.stop.cancelled() => {
                jobs.fail(&id, JobError::Stopped.user_message());
                return;
            }
        };
        jobs.update(&id, |j| j.state = jobs::State::Rendering);
        let result = tokio::select! {
            r = run(&app, &id, req) => r,
            _ = app.stop.cancelled() => Err(JobError::Stopped),
        };
        match result {
            Ok(bytes) => jobs.finish(&id, bytes),
            Err(e) => {
                tracing::warn!(job = %id, error = %rplace_store::Chain(&e), "timelapse failed");
                jobs.fail(&id, e.user_message());
            }
        }
    });
}

/// Renders job `id` into its file; returns the file's size.
async fn run(app: &AppState, id: &str, req: spec::Request) -> Result<u64, JobError> {
    let store = &app.store;
    let jobs = &app.timelapses;
    let head = store.export_head().await?;
    let first = store.export_page(Seq(0), head, EXPORT_PAGE).await?;
    let now = rplace_store::now_ms();
    let from_ms = req
        .from_ms
        .or_else(|| first.first().map(|p| p.at_ms))
        .unwrap_or(now);
    let last_ms = match head.0 {
        0 => None,
        h => store
            .export_page(Seq(h - 1), head, 1)
            .await?
            .first()
            .map(|p| p.at_ms),
    };
    let to_ms = req.to_ms.or(last_ms).unwrap_or(now).max(from_ms);
    let spec = Frames {
        x: req.x,
        y: req.y,
        w: req.w,
        h: req.h,
        from_ms,
        to_ms,
        frames: req.frames,
        fps: req.fps,
        scale: req.scale,
    };
    jobs.update(id, |j| j.spec = spec);
    let path = jobs.path(id);
    let cap = jobs.limits().file_bytes;
    let palette = app.settings.palette.clone();
    let mut renderer = blocking(move || {
        let file = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
        Ok::<_, JobError>(Renderer::new(file, cap, spec, &palette)?)
    })
    .await??;
    let mut page: Result<Vec<Placement>, StoreError> = Ok(first);
    loop {
        let rows = page?;
        let Some(last) = rows.last().map(|p| p.seq) else {
            break;
        };
        // The next page is read while this one is replayed and encoded off the async
        // threads, so the store and the encoder overlap (as the dataset export does).
        let (next, done) = tokio::join!(
            store.export_page(last, head, EXPORT_PAGE),
            blocking(move || {
                let r = renderer.page(&rows);
                (renderer, r)
            })
        );
        let (r, finished) = done?;
        renderer = r;
        let all_cut = finished?;
        let (frames_done, bytes) = (renderer.frames_done(), renderer.bytes());
        let read = last.0 as f64 / head.0.max(1) as f64;
        jobs.update(id, |j| {
            j.frames_done = frames_done;
            j.bytes = bytes;
            // Reading the log is most of the work; frames are cut as time passes.
            j.progress = (0.5 * read + 0.5 * frames_done as f64 / spec.frames as f64).min(0.99);
        });
        if all_cut {
            break;
        }
        page = next;
    }
    let path = jobs.path(id);
    blocking(move || {
        renderer.finish()?;
        Ok::<_, JobError>(std::fs::metadata(path)?.len())
    })
    .await?
}

/// `f` on a blocking thread; a panic there fails the job instead of the task.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| JobError::Panicked)
}
