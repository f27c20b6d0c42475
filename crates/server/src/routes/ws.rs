//! `GET /ws`: live update frames. The server only writes frames; what the client sends is
//! read for control: a close ends the connection, a `view` text message names the tiles it
//! shows (from then on it gets only their tile frames, see `crate::hub`), and any message
//! (a pong, normally) answers the last ping. Every `--ws-ping-interval` the server pings; a client that sends
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
use crate::hub::{Hub, Outgoing, VIEW_MAX_TILES, ViewFeed, ViewRect};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
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
    let dims = app.hub.dims();
    let hello = json!({
        "type": "hello",
        "seq": seq.0,
        "tick_ms": app.hub.tick_ms(),
        "width": dims.width(),
        "height": dims.height(),
        "tile_size": rplace_domain::tile::TILE_SIZE,
        "whole": dims.whole(),
        "online": app.presence.online(&app),
    });
    let end = pump(
        socket,
        frames,
        Message::Text(hello.to_string().into()),
        app.stop.clone(),
        Liveness::from_settings(&app.settings.ws),
        Some(app.hub.clone()),
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

/// A connection's subscription to tiles; leaves the hub's views when dropped.
struct Viewing {
    feed: ViewFeed,
    hub: Arc<Hub>,
}

impl Drop for Viewing {
    fn drop(&mut self) {
        self.hub.leave_views(self.feed.id);
    }
}

/// What a viewer's queue yields.
enum ViewEvent {
    Frame(Bytes),
    Lagged,
}

/// The next tile frame of a viewer, or its overflow; never for a connection without view.
async fn view_event(v: &mut Option<Viewing>) -> ViewEvent {
    let Some(v) = v else {
        return std::future::pending().await;
    };
    tokio::select! {
        biased;
        _ = v.feed.lagged.cancelled() => ViewEvent::Lagged,
        f = v.feed.frames.recv() => match f {
            Some(f) => ViewEvent::Frame(f),
            None => ViewEvent::Lagged,
        },
    }
}

fn text(v: Value) -> Message {
    Message::Text(v.to_string().into())
}

fn view_error(message: String) -> Message {
    text(json!({ "type": "error", "code": "view", "message": message }))
}

/// Parses a client's text message: only `{"type":"view","tx":..,"ty":..,"w":..,"h":..}`.
pub fn parse_view(t: &str) -> Result<ViewRect, String> {
    const SHAPE: &str = r#"send {"type":"view","tx":0,"ty":0,"w":4,"h":3}"#;
    let v: Value = serde_json::from_str(t).map_err(|e| format!("not JSON ({e}); {SHAPE}"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| format!("not a JSON object; {SHAPE}"))?;
    if obj.get("type").and_then(Value::as_str) != Some("view") {
        return Err(format!(
            "the only message a client may send is a view; {SHAPE}"
        ));
    }
    if let Some(k) = obj
        .keys()
        .find(|k| !["type", "tx", "ty", "w", "h"].contains(&k.as_str()))
    {
        return Err(format!("unknown field {k:?}; {SHAPE}"));
    }
    let field = |name: &str, min: u64| -> Result<u32, String> {
        obj.get(name)
            .and_then(Value::as_u64)
            .filter(|n| *n >= min && *n <= u64::from(u32::MAX))
            .map(|n| n as u32)
            .ok_or_else(|| format!("{name} must be an integer from {min} to {}", u32::MAX))
    };
    let rect = ViewRect {
        tx: field("tx", 0)?,
        ty: field("ty", 0)?,
        w: field("w", 1)?,
        h: field("h", 1)?,
    };
    if u64::from(rect.w) * u64::from(rect.h) > u64::from(VIEW_MAX_TILES) {
        return Err(format!(
            "a view may hold at most {VIEW_MAX_TILES} tiles (w * h), got {} x {}",
            rect.w, rect.h
        ));
    }
    Ok(rect)
}

/// Answers a client's text message: subscribes to its view (switching the connection
/// from whole-canvas frames to tile frames the first time), or says what is wrong.
fn on_text(
    t: &str,
    hub: &Option<Arc<Hub>>,
    viewer: &mut Option<Viewing>,
    frames: &mut broadcast::Receiver<Outgoing>,
) -> Message {
    let rect = match parse_view(t) {
        Ok(r) => r,
        Err(e) => return view_error(e),
    };
    let Some(hub) = hub else {
        return view_error("views are not served here".into());
    };
    let v = viewer.get_or_insert_with(|| {
        let (feed, control) = hub.join_views();
        *frames = control;
        Viewing {
            feed,
            hub: hub.clone(),
        }
    });
    let (rect, missing) = hub.set_view(v.feed.id, rect);
    if !missing.is_empty() {
        // Their frames start once they are cached; the client fetches them anyway.
        let hub = hub.clone();
        tokio::spawn(async move {
            if let Err(e) = hub.ensure_all(missing).await {
                tracing::debug!(error = %e, "loading a view's tiles failed");
            }
        });
    }
    metrics::counter!("rplace_ws_views_total").increment(1);
    text(json!({ "type": "view", "tx": rect.tx, "ty": rect.ty, "w": rect.w, "h": rect.h }))
}

/// Sends `hello`, then every broadcast message (or, once the client sent a view, its
/// tiles' frames and the control messages), until the client leaves, lags, stops
/// answering pings or the server stops.
pub async fn pump<S, E>(
    mut socket: S,
    mut frames: broadcast::Receiver<Outgoing>,
    hello: Message,
    stop: CancellationToken,
    liveness: Liveness,
    hub: Option<Arc<Hub>>,
) -> End
where
    S: Sink<Message> + Stream<Item = Result<Message, E>> + Unpin,
{
    let mut viewer: Option<Viewing> = None;
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
                Ok(Outgoing::Resync) => send(tx, text(json!({ "type": "resync" }))).await,
                Ok(Outgoing::Online(n)) => send(tx, text(json!({ "type": "online", "n": n }))).await,
                Ok(Outgoing::Canvas(d)) => {
                    let m = json!({ "type": "canvas", "width": d.width(), "height": d.height() });
                    send(tx, text(m)).await
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
            ev = view_event(&mut viewer) => match ev {
                ViewEvent::Frame(frame) => send(tx, Message::Binary(frame)).await,
                ViewEvent::Lagged => {
                    close(tx, CLOSE_LAGGING, "too slow: reconnect and catch up").await;
                    return End::Lagged;
                }
            },
            incoming = tx.next() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return End::Client,
                Some(Ok(m)) => {
                    // Any message proves the client is there; the next ping is due one
                    // interval after the last.
                    if let Some(at) = ping_sent.take() {
                        timer.as_mut().reset(at + every);
                    }
                    match m {
                        Message::Text(t) => {
                            let answer = on_text(&t, &hub, &mut viewer, &mut frames);
                            send(tx, answer).await
                        }
                        _ => true,
                    }
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
            None,
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
            None,
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
