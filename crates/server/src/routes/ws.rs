//! `GET /ws`: live update frames. The server only writes; what the client sends is read
//! only to notice a close.
//!
//! [`pump`] is generic over the socket (a `Sink` and `Stream` of messages) so that its
//! back-pressure rules (bounded queue, close 4000 on lag, 1001 on shutdown) are tested
//! without one. The socket is not split: a split costs a lock on every send and memory on
//! every idle connection.

use crate::app::AppState;
use crate::error::ApiError;
use crate::hub::Outgoing;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::json;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

/// A client that does not take a frame within this time is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code for "you fell behind: reconnect and catch up".
pub const CLOSE_LAGGING: u16 = 4000;
/// Close code for "server going away".
pub const CLOSE_GOING_AWAY: u16 = 1001;

pub async fn upgrade(
    State(app): State<AppState>,
    peer: axum::extract::ConnectInfo<crate::serve::Peer>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // Open through the drain (only readiness fails then); refused once websockets close.
    if app.stop.is_cancelled() {
        return ApiError::ShuttingDown.into_response();
    }
    if app.hub.clients() >= app.config.max_connections {
        return ApiError::TooManyConnections.into_response();
    }
    // Held for the socket's life: one address cannot take every websocket slot.
    let permit = match crate::serve::ws_permit(&app, peer.0.0, &headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    // Small buffers: tungstenite's defaults (128 KiB read buffer) would cost ~100 KiB per
    // idle connection. Clients send nothing but control frames.
    ws.read_buffer_size(256)
        .write_buffer_size(0)
        .max_write_buffer_size(4 << 20)
        .max_message_size(4096)
        .max_frame_size(4096)
        .on_upgrade(move |socket| {
            let tasks = app.ws_tasks.clone();
            tasks.track_future(async move {
                let _permit = permit;
                let (frames, seq) = app.hub.subscribe();
                app.hub.client_connected();
                let hello = json!({ "type": "hello", "seq": seq.0, "tick_ms": app.hub.tick_ms() });
                let end = pump(
                    socket,
                    frames,
                    Message::Text(hello.to_string().into()),
                    app.stop.clone(),
                )
                .await;
                if end == End::Lagged {
                    metrics::counter!("rplace_ws_lagged_total").increment(1);
                }
                app.hub.client_disconnected();
            })
        })
}

/// Why a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The client closed or the connection failed.
    Client,
    /// The client fell more than the queue behind and was told to reconnect.
    Lagged,
    /// The server is shutting down.
    Shutdown,
}

/// Sends one message. A send that completes at once (the usual case: the socket buffer has
/// room) costs no timer; one that has to wait gets [`SEND_TIMEOUT`].
async fn send<S: Sink<Message> + Unpin>(tx: &mut S, msg: Message) -> bool {
    let mut fut = std::pin::pin!(tx.send(msg));
    match futures_util::poll!(fut.as_mut()) {
        std::task::Poll::Ready(r) => r.is_ok(),
        std::task::Poll::Pending => {
            matches!(tokio::time::timeout(SEND_TIMEOUT, fut).await, Ok(Ok(())))
        }
    }
}

async fn close<S: Sink<Message> + Unpin>(tx: &mut S, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ =
        tokio::time::timeout(Duration::from_secs(1), tx.send(Message::Close(Some(frame)))).await;
}

/// Sends `hello`, then every broadcast message, until the client leaves, lags or the server
/// stops.
pub async fn pump<S, E>(
    mut socket: S,
    mut frames: broadcast::Receiver<Outgoing>,
    hello: Message,
    stop: CancellationToken,
) -> End
where
    S: Sink<Message> + Stream<Item = Result<Message, E>> + Unpin,
{
    let tx = &mut socket;
    if !send(tx, hello).await {
        return End::Client;
    }
    loop {
        let sent = tokio::select! {
            _ = stop.cancelled() => {
                close(tx, CLOSE_GOING_AWAY, "server shutting down").await;
                return End::Shutdown;
            }
            msg = frames.recv() => match msg {
                Ok(Outgoing::Frame(frame)) => send(tx, Message::Binary(frame)).await,
                Ok(Outgoing::Resync) => {
                    send(tx, Message::Text(json!({ "type": "resync" }).to_string().into())).await
                }
                Ok(Outgoing::Ping) => send(tx, Message::Ping(Default::default())).await,
                Err(RecvError::Lagged(_)) => {
                    close(tx, CLOSE_LAGGING, "too slow: reconnect and catch up").await;
                    return End::Lagged;
                }
                Err(RecvError::Closed) => {
                    close(tx, CLOSE_GOING_AWAY, "server shutting down").await;
                    return End::Shutdown;
                }
            },
            incoming = tx.next() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return End::Client,
                Some(Ok(_)) => true,
            },
        };
        if !sent {
            return End::Client;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures_channel::mpsc;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A socket made of two channels: what the server sends, and what the client sends.
    struct Duplex {
        tx: mpsc::Sender<Message>,
        rx: mpsc::Receiver<Result<Message, ()>>,
    }

    impl Sink<Message> for Duplex {
        type Error = mpsc::SendError;
        fn poll_ready(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.tx).poll_ready(cx)
        }
        fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            Pin::new(&mut self.tx).start_send(item)
        }
        fn poll_flush(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.tx).poll_flush(cx)
        }
        fn poll_close(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.tx).poll_close(cx)
        }
    }

    impl Stream for Duplex {
        type Item = Result<Message, ()>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Pin::new(&mut self.rx).poll_next(cx)
        }
    }

    fn frame(i: u8) -> Outgoing {
        Outgoing::Frame(Bytes::from(vec![i]))
    }

    /// Runs the pump over channels, with "hi" as the hello.
    fn spawn_pump(
        sink: mpsc::Sender<Message>,
        incoming: mpsc::Receiver<Result<Message, ()>>,
        frames: broadcast::Receiver<Outgoing>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<End> {
        tokio::spawn(pump(
            Duplex {
                tx: sink,
                rx: incoming,
            },
            frames,
            Message::Text("hi".into()),
            stop,
        ))
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_told_to_reconnect() {
        let (btx, brx) = broadcast::channel(4);
        // A sink with no room: every send waits until the test reads.
        let (sink, mut client_side) = mpsc::channel::<Message>(0);
        let (_keep, incoming) = mpsc::channel::<Result<Message, ()>>(1);
        let task = spawn_pump(sink, incoming, brx, CancellationToken::new());
        for i in 0..20 {
            btx.send(frame(i)).unwrap();
        }
        // The broadcast ring kept at most 4 frames for it: memory stayed bounded.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut got = Vec::new();
        while let Some(m) = client_side.next().await {
            let end = matches!(m, Message::Close(_));
            got.push(m);
            if end {
                break;
            }
        }
        assert_eq!(task.await.unwrap(), End::Lagged);
        match got.last() {
            Some(Message::Close(Some(f))) => assert_eq!(f.code, CLOSE_LAGGING),
            other => panic!("expected close 4000, got {other:?}"),
        }
        assert!(
            got.len() < 20,
            "a lagging client got {} messages",
            got.len()
        );
    }

    #[tokio::test]
    async fn a_reading_client_gets_everything_then_1001_on_shutdown() {
        let (btx, brx) = broadcast::channel(4);
        let (sink, mut client_side) = mpsc::channel::<Message>(64);
        let (_keep, incoming) = mpsc::channel::<Result<Message, ()>>(1);
        let stop = CancellationToken::new();
        let task = spawn_pump(sink, incoming, brx, stop.clone());
        assert_eq!(client_side.next().await, Some(Message::Text("hi".into())));
        for i in 0..20 {
            btx.send(frame(i)).unwrap();
            assert_eq!(
                client_side.next().await,
                Some(Message::Binary(Bytes::from(vec![i])))
            );
        }
        stop.cancel();
        assert_eq!(task.await.unwrap(), End::Shutdown);
        match client_side.next().await {
            Some(Message::Close(Some(f))) => assert_eq!(f.code, CLOSE_GOING_AWAY),
            other => panic!("expected close 1001, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_client_close_ends_the_pump() {
        let (_btx, brx) = broadcast::channel::<Outgoing>(4);
        let (sink, _client_side) = mpsc::channel::<Message>(64);
        let (mut client_tx, incoming) = mpsc::channel::<Result<Message, ()>>(1);
        let task = spawn_pump(sink, incoming, brx, CancellationToken::new());
        client_tx.send(Ok(Message::Close(None))).await.unwrap();
        assert_eq!(task.await.unwrap(), End::Client);
    }
}
