//! `GET /ws`: live update frames. The server only writes frames; what the client sends is
//! read for control: a close ends the connection, and any message (a pong, normally)
//! answers the last ping. Every `--ws-ping-interval` the server pings; a client that sends
//! nothing within `--ws-pong-timeout` after a ping is closed with 4001, so a dead peer
//! does not hold a connection (and a queue position) forever.
//!
//! The connection's task runs on the websocket runtime (`crate::ws_runtime`), not on the
//! threads that answer HTTP requests.
//!
//! [`pump`] is generic over the socket (a `Sink` and `Stream` of messages) so that its
//! back-pressure rules (bounded queue, close 4000 on lag, 1001 on shutdown) are tested
//! without one. The socket is not split: a split costs a lock on every send and memory on
//! every idle connection.

use crate::app::AppState;
use crate::error::ApiError;
use crate::hub::Outgoing;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
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
/// Close code for "you did not answer a ping in time".
pub const CLOSE_NO_PONG: u16 = 4001;

/// When to ping and how long to wait for the answer.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    /// Time between pings; `None`: never ping.
    pub ping_every: Option<Duration>,
    /// Time the client has to send anything after a ping.
    pub pong_within: Duration,
}

impl Liveness {
    fn from_settings(s: &crate::config::WsSettings) -> Self {
        Self {
            ping_every: s.ping_interval,
            pong_within: s.pong_timeout,
        }
    }
}

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
        .on_upgrade(move |socket| async move {
            // Off the request threads: see `crate::ws_runtime`.
            let tasks = app.ws_tasks.clone();
            let rt = app.ws_runtime.handle().clone();
            rt.spawn(tasks.track_future(session(app, socket, permit)));
        })
}

/// One upgraded connection, from `hello` to its end. `permit` is the address's websocket
/// slot, given back when the session ends.
async fn session(app: AppState, socket: WebSocket, permit: crate::serve::per_ip::Permit) {
    let _permit = permit;
    let (frames, seq) = app.hub.subscribe();
    app.hub.client_connected();
    let hello = json!({ "type": "hello", "seq": seq.0, "tick_ms": app.hub.tick_ms() });
    let end = pump(
        socket,
        frames,
        Message::Text(hello.to_string().into()),
        app.stop.clone(),
        Liveness::from_settings(&app.settings.ws),
    )
    .await;
    match end {
        End::Lagged => metrics::counter!("rplace_ws_lagged_total").increment(1),
        End::Unresponsive => metrics::counter!("rplace_ws_unresponsive_total").increment(1),
        End::Client | End::Shutdown => {}
    }
    app.hub.client_disconnected();
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
    /// The client did not answer a ping in time.
    Unresponsive,
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

/// Sends `hello`, then every broadcast message, until the client leaves, lags, stops
/// answering pings or the server stops.
pub async fn pump<S, E>(
    mut socket: S,
    mut frames: broadcast::Receiver<Outgoing>,
    hello: Message,
    stop: CancellationToken,
    liveness: Liveness,
) -> End
where
    S: Sink<Message> + Stream<Item = Result<Message, E>> + Unpin,
{
    let tx = &mut socket;
    if !send(tx, hello).await {
        return End::Client;
    }
    // One timer per connection: the next ping, or, while a ping is unanswered, its deadline.
    let far = Duration::from_secs(86_400 * 365);
    let every = liveness.ping_every.unwrap_or(far);
    let timer = tokio::time::sleep(every);
    tokio::pin!(timer);
    let mut ping_sent: Option<tokio::time::Instant> = None;
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
                Some(Ok(_)) => {
                    // Any message proves the client is there; the next ping is due one
                    // interval after the last.
                    if let Some(at) = ping_sent.take() {
                        timer.as_mut().reset(at + every);
                    }
                    true
                }
            },
            _ = &mut timer, if liveness.ping_every.is_some() => {
                if ping_sent.is_some() {
                    close(tx, CLOSE_NO_PONG, "no answer to ping in time").await;
                    return End::Unresponsive;
                }
                let now = tokio::time::Instant::now();
                ping_sent = Some(now);
                timer.as_mut().reset(now + liveness.pong_within);
                send(tx, Message::Ping(Default::default())).await
            }
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
            Liveness {
                ping_every: Some(Duration::from_secs(3600)),
                pong_within: Duration::from_secs(3600),
            },
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
        // All 20 are sent before the client reads anything; the broadcast ring kept at
        // most 4 for it, so memory stayed bounded and it is told to reconnect.
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

    fn pump_with(
        sink: mpsc::Sender<Message>,
        incoming: mpsc::Receiver<Result<Message, ()>>,
        frames: broadcast::Receiver<Outgoing>,
        liveness: Liveness,
    ) -> tokio::task::JoinHandle<End> {
        tokio::spawn(pump(
            Duplex {
                tx: sink,
                rx: incoming,
            },
            frames,
            Message::Text("hi".into()),
            CancellationToken::new(),
            liveness,
        ))
    }

    #[tokio::test]
    async fn a_client_that_does_not_answer_pings_is_closed_with_4001() {
        let (_btx, brx) = broadcast::channel::<Outgoing>(4);
        let (sink, mut client_side) = mpsc::channel::<Message>(64);
        let (_keep, incoming) = mpsc::channel::<Result<Message, ()>>(1);
        let task = pump_with(
            sink,
            incoming,
            brx,
            Liveness {
                ping_every: Some(Duration::from_millis(20)),
                pong_within: Duration::from_millis(50),
            },
        );
        assert_eq!(client_side.next().await, Some(Message::Text("hi".into())));
        assert!(matches!(client_side.next().await, Some(Message::Ping(_))));
        match client_side.next().await {
            Some(Message::Close(Some(f))) => assert_eq!(f.code, CLOSE_NO_PONG),
            other => panic!("expected close 4001, got {other:?}"),
        }
        assert_eq!(task.await.unwrap(), End::Unresponsive);
    }

    #[tokio::test]
    async fn a_client_that_answers_pings_is_kept() {
        let (_btx, brx) = broadcast::channel::<Outgoing>(4);
        let (sink, mut client_side) = mpsc::channel::<Message>(64);
        let (mut client_tx, incoming) = mpsc::channel::<Result<Message, ()>>(8);
        let task = pump_with(
            sink,
            incoming,
            brx,
            Liveness {
                ping_every: Some(Duration::from_millis(10)),
                pong_within: Duration::from_secs(30),
            },
        );
        assert_eq!(client_side.next().await, Some(Message::Text("hi".into())));
        for _ in 0..5 {
            match client_side.next().await {
                Some(Message::Ping(p)) => client_tx.send(Ok(Message::Pong(p))).await.unwrap(),
                other => panic!("expected a ping, got {other:?}"),
            }
        }
        assert!(!task.is_finished());
        client_tx.send(Ok(Message::Close(None))).await.unwrap();
        assert_eq!(task.await.unwrap(), End::Client);
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
