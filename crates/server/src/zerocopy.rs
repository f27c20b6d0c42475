//! Zero-copy sending of the large shared bodies (the board in every encoding) with
//! `sendfile(2)`, the way nginx serves static files.
//!
//! hyper writes a body from memory with `writev`, so the kernel copies the 500 KB board
//! into the socket for every request; nginx serving the same bytes from a file copies
//! nothing and was 1.3–1.4× faster (BENCHMARKS.md, c). hyper cannot be handed a file, so
//! this works underneath it:
//! - [`Bodies::offer`] writes a body once into an unlinked temporary file and registers
//!   it, holding a clone of the `Bytes` so that its address cannot be reused while it is
//!   registered;
//! - every connection's socket is a [`ZcStream`]. When hyper asks it to write a slice that
//!   lies inside a registered body, it sends that range from the file with `sendfile`; the
//!   response head before it goes out with `MSG_MORE`, so that head and body leave in
//!   full packets (nginx's `tcp_nopush`; without it the head went alone and the run was
//!   slower than `writev`). Every other write (small responses, websocket frames) goes to
//!   the socket as it is.
//!
//! The bytes on the wire are the same either way: a body that is not (or no longer)
//! registered simply goes out by `writev`.

use bytes::Bytes;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Slices shorter than this are written as they are: `sendfile` pays off only for large
/// bodies, and the check stays off the path of small writes such as websocket frames.
pub const MIN_LEN: usize = 64 * 1024;
/// Bodies registered at once (two board versions in four encodings); the oldest goes
/// first, since versions only move forward.
const KEEP: usize = 8;

/// One registered body.
struct Entry {
    /// Keeps the memory (and so its address range) alive while registered.
    bytes: Bytes,
    /// The same bytes in a file, the source of `sendfile`.
    file: Arc<File>,
}

/// The bodies that go out by `sendfile`. Cheap to clone. Off unless `--sendfile`: the
/// write is matched to its body by the address of the slice hyper hands the socket, which
/// holds for hyper 1's vectored writes of `Bytes` bodies but is not a promise of its API.
#[derive(Clone, Default)]
pub struct Bodies {
    /// Registered bodies, newest last.
    all: Arc<Mutex<Vec<Entry>>>,
    /// Held while a file is written, so that the requests that come meanwhile for the same
    /// body (a new board version is asked for by many at once) wait for it instead of
    /// writing it again.
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Whether bodies are registered at all; when not, every write goes to the socket as it
    /// is and no lookup is made.
    enabled: bool,
}

impl Bodies {
    /// Registered bodies go out by `sendfile` when `enabled`; otherwise none is registered.
    pub fn new(enabled: bool) -> Self {
        Bodies {
            all: Arc::default(),
            writer: Arc::default(),
            enabled,
        }
    }

    /// Registers `body` if it is large and not registered yet. The file is written on a
    /// blocking thread (a 500 KB write must not stall an async worker); until it is
    /// registered, and if no file can be made, the body is written the usual way.
    pub async fn offer(&self, body: &Bytes) {
        if !self.enabled || body.len() < MIN_LEN || self.holds(body) {
            return;
        }
        let _writing = self.writer.lock().await;
        if self.holds(body) {
            return;
        }
        let bytes = body.clone();
        let file = match tokio::task::spawn_blocking(move || file_with(&bytes)).await {
            Ok(Ok(f)) => Arc::new(f),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot make a file for sendfile; using writev");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the sendfile file writer failed; using writev");
                return;
            }
        };
        let mut all = self.all.lock().expect("bodies lock");
        if all.len() >= KEEP {
            all.remove(0);
        }
        all.push(Entry {
            bytes: body.clone(),
            file,
        });
    }

    fn holds(&self, body: &Bytes) -> bool {
        let all = self.all.lock().expect("bodies lock");
        all.iter().any(|e| same(&e.bytes, body))
    }

    /// The file and offset holding `slice`, if it lies inside a registered body.
    fn find(&self, slice: &[u8]) -> Option<(Arc<File>, u64)> {
        if !self.enabled {
            return None;
        }
        let start = slice.as_ptr() as usize;
        let all = self.all.lock().expect("bodies lock");
        all.iter().find_map(|e| {
            let base = e.bytes.as_ptr() as usize;
            (start >= base && start + slice.len() <= base + e.bytes.len())
                .then(|| (e.file.clone(), (start - base) as u64))
        })
    }
}

fn same(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// An unlinked temporary file holding `body`: page cache, like the file nginx serves.
fn file_with(body: &[u8]) -> io::Result<File> {
    let mut file = tempfile::tempfile()?;
    file.write_all(body)?;
    Ok(file)
}

/// A TCP connection that sends registered bodies with `sendfile`.
pub struct ZcStream {
    /// The socket.
    inner: TcpStream,
    /// Where registered bodies are looked up.
    bodies: Bodies,
}

impl ZcStream {
    pub fn new(inner: TcpStream, bodies: Bodies) -> Self {
        ZcStream { inner, bodies }
    }

    /// Runs one non-blocking socket call once the socket is writable, again if it would
    /// block.
    fn poll_io(
        &mut self,
        cx: &mut Context<'_>,
        mut f: impl FnMut(&TcpStream) -> rustix::io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.inner.poll_write_ready(cx))?;
            match self.inner.try_io(Interest::WRITABLE, || {
                f(&self.inner).map_err(io::Error::from)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    /// Sends `len` bytes of `file` from `offset`.
    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        file: &File,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let sent = ready!(self.poll_io(cx, |sock| {
            let mut off = offset;
            rustix::fs::sendfile(sock, file, Some(&mut off), len)
        }))?;
        metrics::counter!("rplace_sendfile_bytes_total").increment(sent as u64);
        Poll::Ready(Ok(sent))
    }

    /// Sends what precedes a registered body (the response head), held back by `MSG_MORE`
    /// until the body follows it.
    fn poll_send_more(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_io(cx, |sock| {
            rustix::net::send(sock, buf, rustix::net::SendFlags::MORE)
        })
    }
}

impl AsyncRead for ZcStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZcStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.len() >= MIN_LEN
            && let Some((file, offset)) = self.bodies.find(buf)
        {
            return self.poll_sendfile(cx, &file, offset, buf.len());
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let body = bufs
            .iter()
            .position(|b| b.len() >= MIN_LEN)
            .and_then(|i| self.bodies.find(&bufs[i]).map(|(f, off)| (i, f, off)));
        match body {
            // The head first (hyper comes back for the rest), then the body from the file.
            Some((i, _, _)) if i > 0 => self.poll_send_more(cx, &bufs[0]),
            Some((_, file, offset)) => self.poll_sendfile(cx, &file, offset, bufs[0].len()),
            None => Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slices_inside_a_registered_body_are_found_and_the_oldest_is_dropped() {
        let bodies = Bodies::new(true);
        let small = Bytes::from(vec![1u8; MIN_LEN - 1]);
        bodies.offer(&small).await;
        assert!(bodies.find(&small).is_none());
        let all: Vec<Bytes> = (0..=KEEP as u8)
            .map(|i| Bytes::from(vec![i; MIN_LEN * 2]))
            .collect();
        for b in &all {
            bodies.offer(b).await;
            bodies.offer(b).await; // once only
        }
        assert_eq!(bodies.all.lock().unwrap().len(), KEEP);
        assert!(bodies.find(&all[0]).is_none(), "the oldest was dropped");
        let last = &all[KEEP];
        let (file, offset) = bodies.find(&last[100..MIN_LEN + 100]).unwrap();
        assert_eq!(offset, 100);
        let mut back = vec![0u8; 10];
        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut back, offset).unwrap();
        assert_eq!(back, vec![KEEP as u8; 10]);
        // A copy of the same bytes elsewhere in memory is not the registered body.
        let copy = last.to_vec();
        assert!(bodies.find(&copy).is_none());
    }

    #[tokio::test]
    async fn off_registers_nothing() {
        let bodies = Bodies::new(false);
        let big = Bytes::from(vec![1u8; MIN_LEN * 2]);
        bodies.offer(&big).await;
        assert!(bodies.find(&big).is_none());
    }
}
