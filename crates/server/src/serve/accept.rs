//! What the accept loop does when `accept(2)` fails, above all when the process is out of
//! file descriptors (EMFILE, ENFILE): the pending connection stays in the backlog, so
//! accepting again at once fails again at once and the loop would spin at 100% CPU.
//!
//! The classic answer (libev, Netty): keep one descriptor in reserve; when descriptors run
//! out, give it back, accept the connection at the head of the backlog and close it at
//! once (the client learns now instead of waiting on a backlog that does not move), take
//! the reserve again and pause briefly. Connections already open keep being served, and
//! every closed one frees a descriptor for the next accept.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// Pause after descriptors ran out, so that the loop does not spin while none is free.
const EXHAUSTED_PAUSE: Duration = Duration::from_millis(20);
/// Pause after another accept error that is not about the accepted connection itself.
const ERROR_PAUSE: Duration = Duration::from_millis(5);

/// The spare descriptor.
pub struct Reserve(
    /// `/dev/null`, open while not needed.
    Option<File>,
);

impl Default for Reserve {
    fn default() -> Self {
        Reserve(File::open("/dev/null").ok())
    }
}

fn fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(c) if c == rustix::io::Errno::MFILE.raw_os_error() || c == rustix::io::Errno::NFILE.raw_os_error())
}

/// Errors that concern only the connection being accepted (it was reset or aborted
/// before it was taken): the next accept is fine.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Seconds since the Unix epoch of the last warning, so that a flood logs once a second.
static LAST_WARNING: AtomicU64 = AtomicU64::new(0);

fn warn_once_a_second(e: &io::Error) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if LAST_WARNING.swap(now, Ordering::Relaxed) != now {
        tracing::warn!(error = %e, "accept failed; shedding and pausing");
    }
}

/// Handles one failed accept; returns when accepting may be tried again.
pub async fn recover(e: io::Error, listener: &TcpListener, reserve: &mut Reserve) {
    if per_connection(&e) {
        return;
    }
    warn_once_a_second(&e);
    if fd_exhaustion(&e) {
        metrics::counter!("rplace_accept_exhausted_total").increment(1);
        if reserve.0.take().is_some() {
            use futures_util::FutureExt;
            if let Some(Ok((stream, _))) = listener.accept().now_or_never() {
                metrics::counter!("rplace_connections_refused_total", "reason" => "descriptors")
                    .increment(1);
                drop(stream);
            }
            *reserve = Reserve::default();
        }
        tokio::time::sleep(EXHAUSTED_PAUSE).await;
    } else {
        tokio::time::sleep(ERROR_PAUSE).await;
    }
}
