//! `GET /ws`: live update frames. The server only writes; what the client sends is read
//! only to notice a close.

use crate::app::AppState;
use crate::error::ApiError;
use crate::hub::Outgoing;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// A client that does not take a frame within this time is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code for "you fell behind: reconnect and catch up".
pub const CLOSE_LAGGING: u16 = 4000;

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
            tasks.track_future(client(socket, app))
        })
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        socket.send(Message::Close(Some(frame))),
    )
    .await;
}

async fn send(socket: &mut WebSocket, msg: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(msg)).await,
        Ok(Ok(()))
    )
}

async fn client(mut socket: WebSocket, app: AppState) {
    let (mut rx, seq) = app.hub.subscribe();
    app.hub.client_connected();
    let hello = json!({ "type": "hello", "seq": seq.0, "tick_ms": app.hub.tick_ms() }).to_string();
    let mut open = send(&mut socket, Message::Text(hello.into())).await;
    while open {
        tokio::select! {
            _ = app.stop.cancelled() => {
                close(&mut socket, 1001, "server shutting down").await;
                break;
            }
            msg = rx.recv() => match msg {
                Ok(Outgoing::Frame(frame)) => open = send(&mut socket, Message::Binary(frame)).await,
                Ok(Outgoing::Resync) => {
                    let text = json!({ "type": "resync" }).to_string();
                    open = send(&mut socket, Message::Text(text.into())).await;
                }
                Ok(Outgoing::Ping) => open = send(&mut socket, Message::Ping(Default::default())).await,
                Err(RecvError::Lagged(_)) => {
                    metrics::counter!("rplace_ws_lagged_total").increment(1);
                    close(&mut socket, CLOSE_LAGGING, "too slow: reconnect and catch up").await;
                    break;
                }
                Err(RecvError::Closed) => {
                    close(&mut socket, 1001, "server shutting down").await;
                    break;
                }
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    app.hub.client_disconnected();
}
