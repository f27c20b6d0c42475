//! `GET /ws`: live update frames. The server only writes; what the client sends is read
//! only to notice a close.
//!
//! [`pump`] is generic over the sink and stream halves so that its back-pressure rules
//! (bounded queue, close 4000 on lag, 1001 on shutdown) are tested without a socket.

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

pub async fn upgrade(State(app): State<AppState>, ws: WebSocketUpgrade) -> Response {
    if app.is_draining() {
        return ApiError::ShuttingDown.into_response();
    }
    if app.hub.clients() >= app.config.max_connections {
        return ApiError::TooManyConnections.into_response();
    }
    // Small buffers: tungstenite's defaults (128 KiB read buffer) would cost ~100 KiB per
    // idle connection. Clients send nothing but control frames.
    ws.read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(4 << 20)
        .max_message_size(4096)
        .max_frame_size(4096)
        .on_upgrade(move |socket| {
            let tasks = app.ws_tasks.clone();
            tasks.track_future(async move {
                let (frames, seq) = app.hub.subscribe();
                app.hub.client_connected();
                let hello = json!({ "type": "hello", "seq": seq.0, "tick_ms": app.hub.tick_ms() });
                let (tx, rx) = socket.split();
                let end = pump(
                    tx,
                    rx,
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

async fn send<S: Sink<Message> + Unpin>(tx: &mut S, msg: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, tx.send(msg)).await,
        Ok(Ok(()))
    )
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
pub async fn pump<S, R, E>(
    mut tx: S,
    mut rx: R,
    mut frames: broadcast::Receiver<Outgoing>,
    hello: Message,
    stop: CancellationToken,
) -> End
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    if !send(&mut tx, hello).await {
        return End::Client;
    }
    loop {
        let sent = tokio::select! {
            _ = stop.cancelled() => {
                close(&mut tx, CLOSE_GOING_AWAY, "server shutting down").await;
                return End::Shutdown;
            }
            msg = frames.recv() => match msg {
                Ok(Outgoing::Frame(frame)) => send(&mut tx, Message::Binary(frame)).await,
                Ok(Outgoing::Resync) => {
                    send(&mut tx, Message::Text(json!({ "type": "resync" }).to_string().into())).await
                }
                Ok(Outgoing::Ping) => send(&mut tx, Message::Ping(Default::default())).await,
                Err(RecvError::Lagged(_)) => {
                    close(&mut tx, CLOSE_LAGGING, "too slow: reconnect and catch up").await;
                    return End::Lagged;
                }
                Err(RecvError::Closed) => {
                    close(&mut tx, CLOSE_GOING_AWAY, "server shutting down").await;
                    return End::Shutdown;
                }
            },
            incoming = rx.next() => match incoming {
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

    fn frame(i: u8) -> Outgoing {
        Outgoing::Frame(Bytes::from(vec![i]))
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_told_to_reconnect() {
        let (btx, brx) = broadcast::channel(4);
        // A sink with no room: every send waits until the test reads.
        let (sink, mut client_side) = mpsc::channel::<Message>(0);
        let (_keep, incoming) = mpsc::channel::<Result<Message, ()>>(1);
        let task = tokio::spawn(pump(
            sink,
            incoming,
            brx,
            Message::Text("hi".into()),
            CancellationToken::new(),
        ));
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
        let task = tokio::spawn(pump(
            sink,
            incoming,
            brx,
            Message::Text("hi".into()),
            stop.clone(),
        ));
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
        let task = tokio::spawn(pump(
            sink,
            incoming,
            brx,
            Message::Text("hi".into()),
            CancellationToken::new(),
        ));
        client_tx.send(Ok(Message::Close(None))).await.unwrap();
        assert_eq!(task.await.unwrap(), End::Client);
    }
}
