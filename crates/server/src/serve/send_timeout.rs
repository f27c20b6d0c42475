//! A socket whose writes fail once the peer has taken no byte for a while: a client that
//! asks for answers (a 500 KB board, pipelined) and never reads them would otherwise hold
//! its connection and the buffered answer forever, since hyper has no write timeout.
//!
//! Only writes are watched. The read side is bounded elsewhere: the request head by hyper's
//! header timeout (also the keep-alive idle time), a body by the body timeout where it is
//! read (hyper closes a connection whose body a handler left unread), and an upgraded
//! websocket, where a silent client is normal, by the websocket's own liveness checks.
//! The timer exists only while a write waits, so an idle websocket pays 16 bytes for this.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `T` with a bound on how long one write may wait.
pub struct SendTimeout<T> {
    /// The socket.
    inner: T,
    /// How long a write may wait for the peer to take a byte, in milliseconds (small: it
    /// is kept by every connection).
    timeout_ms: u32,
    /// Armed when a write starts waiting; dropped as soon as a write goes through.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<T> SendTimeout<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        SendTimeout {
            inner,
            timeout_ms: timeout.as_millis().clamp(1, u32::MAX as u128) as u32,
            timer: None,
        }
    }

    /// Records the outcome of a write: a transfer disarms the timer, a wait arms it (once
    /// per wait) and fails past the deadline.
    fn track<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match poll {
            Poll::Pending => {
                let ms = u64::from(self.timeout_ms);
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(ms))));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the peer took nothing for too long",
                    )));
                }
                Poll::Pending
            }
            done => {
                self.timer = None;
                done
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for SendTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SendTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_fails_the_write_and_one_that_reads_does_not() {
        let (a, mut b) = tokio::io::duplex(16);
        let mut w = SendTimeout::new(a, Duration::from_secs(10));
        // A slow reader that keeps taking bytes (every 6 s, under the timeout) is fine.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(6)).await;
                b.read_exact(&mut buf).await.unwrap();
            }
            b // then it stops reading, keeping the pipe open
        });
        w.write_all(&[1u8; 16 * 5]).await.unwrap();
        let t0 = tokio::time::Instant::now();
        let e = w.write_all(&[2u8; 32]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t0.elapsed() >= Duration::from_secs(10));
        assert!(w.timer.is_some());
        drop(reader);
    }
}
