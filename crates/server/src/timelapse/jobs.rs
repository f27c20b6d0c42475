//! The timelapse jobs of this instance: their states, the bounded queue, the per-user
//! limit and the bounded directory of finished files.
//!
//! Everything is in memory and in one directory that is emptied at start: jobs do not
//! survive a restart (a client polling one gets 404 and may ask again). Bounds:
//! - at most `concurrency` jobs render at once and `queue` more wait; beyond that a new
//!   job is refused (503 `busy`), so neither CPU nor memory grows with demand;
//! - at most [`PER_USER`] unfinished jobs per identity;
//! - finished files take at most `disk_bytes` together: when a job finishes, the least
//!   recently downloaded files go until the rest fits; each file is also capped while it
//!   is written, so the directory holds at most `disk_bytes` plus one file per rendering
//!   job. Files and failures expire after [`KEEP`]; at most [`FINISHED_MAX`] finished jobs
//!   are remembered.

use super::render::Frames;
use rplace_domain::UserId;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Unfinished (queued or rendering) jobs one identity may have.
pub const PER_USER: usize = 2;
/// How long a finished file (or a failure) is kept after it finished.
pub const KEEP: Duration = Duration::from_secs(3600);
/// Finished jobs remembered at most (the oldest are forgotten first).
pub const FINISHED_MAX: usize = 256;

/// A job's id: 128 random bits in hex, so that ids cannot be guessed and may be shared.
pub type JobId = String;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Rendering,
    Done,
    Failed,
}

/// One job, as `GET /api/timelapse/{id}` reports it.
#[derive(Debug, Clone)]
pub struct Job {
    /// Who asked, for the per-user limit.
    pub owner: UserId,
    /// What to render; `from_ms`/`to_ms` are final once rendering starts.
    pub spec: Frames,
    /// Where it is.
    pub state: State,
    /// 0.0 to 1.0.
    pub progress: f64,
    /// Frames written so far.
    pub frames_done: u32,
    /// The file's size so far (rendering) or in the end (done).
    pub bytes: u64,
    /// Why it failed, for the user.
    pub error: Option<String>,
    /// When it finished (expiry).
    finished: Option<Instant>,
    /// When its file was last downloaded, or it finished (eviction order).
    used: Instant,
}

/// Why a job was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{active} timelapses are queued or rendering, as many as this server takes")]
    Busy { active: usize },
    #[error("you have {max} timelapses queued or rendering; wait until one is done")]
    PerUser { max: usize },
}

/// Limits of the queue and the directory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Jobs rendering at once.
    pub concurrency: usize,
    /// Jobs waiting beyond those.
    pub queue: usize,
    /// Bytes all finished files may take together.
    pub disk_bytes: u64,
    /// Bytes one file may take.
    pub file_bytes: u64,
}

/// The jobs and their directory; cheap to clone.
#[derive(Clone)]
pub struct Jobs(Arc<Shared>);

struct Shared {
    /// Held for short map updates only, never across an `.await` (a std mutex).
    map: Mutex<HashMap<JobId, Job>>,
    /// One permit per job that may render.
    render_slots: Arc<Semaphore>,
    /// The limits.
    limits: Limits,
    /// Where the files are.
    dir: PathBuf,
    /// Keeps a temporary directory alive (shared mode); removed on drop.
    _temp: Option<tempfile::TempDir>,
}

impl Jobs {
    /// Jobs whose files live in `dir` (emptied now: nothing survives a restart), or in a
    /// new temporary directory if `dir` is `None`.
    pub fn new(dir: Option<&Path>, limits: Limits) -> std::io::Result<Self> {
        let (dir, temp) = match dir {
            Some(d) => {
                match std::fs::remove_dir_all(d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                std::fs::create_dir_all(d)?;
                (d.to_path_buf(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("rplace-timelapse")
                    .tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        Ok(Self(Arc::new(Shared {
            map: Mutex::new(HashMap::new()),
            render_slots: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            limits,
            dir,
            _temp: temp,
        })))
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.0.limits
    }

    /// Whether timelapses are served at all (`--timelapse-concurrency 0`: not).
    pub fn enabled(&self) -> bool {
        self.0.limits.concurrency > 0
    }

    /// The file of job `id`.
    pub fn path(&self, id: &str) -> PathBuf {
        self.0.dir.join(format!("{id}.png"))
    }

    /// A rendering slot; waits while `concurrency` jobs render.
    pub async fn slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.0
            .render_slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Job>> {
        // A panic while holding it leaves a consistent map (each update is one step).
        self.0.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a job for `owner`, or says why not.
    pub fn submit(&self, owner: UserId, spec: Frames) -> Result<JobId, Refused> {
        let mut map = self.lock();
        self.sweep(&mut map);
        let unfinished = |j: &&Job| matches!(j.state, State::Queued | State::Rendering);
        let active = map.values().filter(unfinished).count();
        if active >= self.0.limits.concurrency + self.0.limits.queue {
            return Err(Refused::Busy { active });
        }
        let mine = map
            .values()
            .filter(unfinished)
            .filter(|j| j.owner == owner)
            .count();
        if mine >= PER_USER {
            return Err(Refused::PerUser { max: PER_USER });
        }
        let id = hex::encode(rand::random::<[u8; 16]>());
        let now = Instant::now();
        map.insert(
            id.clone(),
            Job {
                owner,
                spec,
                state: State::Queued,
                progress: 0.0,
                frames_done: 0,
                bytes: 0,
                error: None,
                finished: None,
                used: now,
            },
        );
        Ok(id)
    }

    /// The job, if it is known (and not expired).
    pub fn get(&self, id: &str) -> Option<Job> {
        let mut map = self.lock();
        self.sweep(&mut map);
        map.get(id).cloned()
    }

    /// Marks a done job's file as used now (it is evicted last) and returns the job.
    pub fn touch(&self, id: &str) -> Option<Job> {
        let mut map = self.lock();
        let job = map.get_mut(id)?;
        job.used = Instant::now();
        Some(job.clone())
    }

    /// Updates a job in place; nothing if it is gone.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut Job)) {
        if let Some(j) = self.lock().get_mut(id) {
            f(j);
        }
    }

    /// Ends a job as done with a file of `bytes`, then evicts the least recently used
    /// files until all fit in `disk_bytes`.
    pub fn finish(&self, id: &str, bytes: u64) {
        let mut map = self.lock();
        if let Some(j) = map.get_mut(id) {
            let now = Instant::now();
            j.state = State::Done;
            j.progress = 1.0;
            j.frames_done = j.spec.frames;
            j.bytes = bytes;
            j.finished = Some(now);
            j.used = now;
        }
        let mut done: Vec<(Instant, JobId, u64)> = map
            .iter()
            .filter(|(_, j)| j.state == State::Done)
            .map(|(k, j)| (j.used, k.clone(), j.bytes))
            .collect();
        let mut total: u64 = done.iter().map(|d| d.2).sum();
        done.sort();
        for (_, k, b) in done {
            if total <= self.0.limits.disk_bytes {
                break;
            }
            self.forget(&mut map, &k);
            total -= b;
        }
    }

    /// Ends a job as failed with `message` for the user; removes its partial file.
    pub fn fail(&self, id: &str, message: String) {
        let _ = std::fs::remove_file(self.path(id));
        self.update(id, |j| {
            j.state = State::Failed;
            j.error = Some(message);
            j.finished = Some(Instant::now());
        });
    }

    /// Forgets expired jobs, and the oldest finished ones beyond [`FINISHED_MAX`].
    fn sweep(&self, map: &mut HashMap<JobId, Job>) {
        let expired: Vec<JobId> = map
            .iter()
            .filter(|(_, j)| j.finished.is_some_and(|t| t.elapsed() >= KEEP))
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            self.forget(map, &k);
        }
        let mut finished: Vec<(Instant, JobId)> = map
            .iter()
            .filter_map(|(k, j)| Some((j.finished?, k.clone())))
            .collect();
        if finished.len() > FINISHED_MAX {
            finished.sort();
            let extra = finished.len() - FINISHED_MAX;
            for (_, k) in finished.into_iter().take(extra) {
                self.forget(map, &k);
            }
        }
    }

    fn forget(&self, map: &mut HashMap<JobId, Job>, id: &str) {
        map.remove(id);
        // A download in progress keeps reading: the open file outlives its name.
        let _ = std::fs::remove_file(self.path(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Frames {
        Frames {
            x: 0,
            y: 0,
            w: 1,
            h: 1,
            from_ms: 0,
            to_ms: 0,
            frames: 1,
            fps: 1,
            scale: 1,
        }
    }

    fn jobs(disk_bytes: u64) -> Jobs {
        Jobs::new(
            None,
            Limits {
                concurrency: 1,
                queue: 2,
                disk_bytes,
                file_bytes: disk_bytes,
            },
        )
        .unwrap()
    }

    #[test]
    fn the_queue_and_each_user_are_bounded() {
        let j = jobs(100);
        let a = j.submit(UserId(1), spec()).unwrap();
        j.submit(UserId(1), spec()).unwrap();
        assert!(matches!(
            j.submit(UserId(1), spec()),
            Err(Refused::PerUser { max: 2 })
        ));
        j.submit(UserId(2), spec()).unwrap();
        assert!(matches!(
            j.submit(UserId(3), spec()),
            Err(Refused::Busy { active: 3 })
        ));
        j.finish(&a, 1);
        j.submit(UserId(3), spec()).unwrap();
        assert_eq!(j.get(&a).unwrap().state, State::Done);
    }

    #[test]
    fn finished_files_are_evicted_least_recently_used_first() {
        let j = jobs(100);
        let ids: Vec<JobId> = (1..=3)
            .map(|u| j.submit(UserId(u), spec()).unwrap())
            .collect();
        for id in &ids {
            std::fs::write(j.path(id), [0; 40]).unwrap();
        }
        j.finish(&ids[0], 40);
        j.finish(&ids[1], 40);
        j.touch(&ids[0]);
        // 120 > 100: the least recently used (ids[1]) goes.
        j.finish(&ids[2], 40);
        assert!(j.get(&ids[0]).is_some());
        assert!(j.get(&ids[1]).is_none());
        assert!(!j.path(&ids[1]).exists());
        assert!(j.path(&ids[2]).exists());
    }
}
