//! `GET /api/export/placements.csv.gz`: every placement up to now as gzipped CSV (see
//! [`crate::export`] for the format, the pseudonyms and the bounds).

use crate::app::AppState;
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rplace_domain::Seq;
use rplace_store::export::{EXPORT_PAGE, Export};
use tokio::sync::mpsc;

/// Streams the log up to the head taken now; `X-Export-Seq` says which head.
pub async fn placements(State(state): State<AppState>) -> Result<Response, ApiError> {
    if !state.exports.enabled() {
        return Err(ApiError::ExportOff);
    }
    let permit = state.exports.try_start().ok_or(ApiError::ExportBusy {
        max: state.config.export_concurrency,
    })?;
    let head = state
        .store
        .export_head()
        .await
        .map_err(ApiError::unavailable)?;
    let (tx, mut rx) =
        mpsc::channel::<Result<Bytes, std::io::Error>>(crate::export::CHUNKS_IN_FLIGHT);
    let task_state = state.clone();
    tokio::spawn(async move {
        // Held until the stream ends or the client goes away (a send fails).
        let _permit = permit;
        let mut enc = task_state.exports.encoder();
        let store = &task_state.store;
        let mut page = store.export_page(Seq(0), head, EXPORT_PAGE).await;
        loop {
            let rows = match page {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %rplace_store::Chain(&e), "export read failed");
                    // An error ends the body early: the client sees a broken gzip stream,
                    // never a file that looks complete.
                    let _ = tx
                        .send(Err(std::io::Error::other("export read failed")))
                        .await;
                    return;
                }
            };
            let Some(last) = rows.last().map(|p| p.seq) else {
                break;
            };
            // The next page is read while this one is formatted and compressed (~100 ms
            // of CPU, off the async threads), so the store and the encoder overlap.
            let (next, done) = tokio::join!(
                store.export_page(last, head, EXPORT_PAGE),
                tokio::task::spawn_blocking(move || {
                    let bytes = enc.page(&rows);
                    (enc, bytes)
                })
            );
            page = next;
            let Ok((next_enc, bytes)) = done else { return };
            enc = next_enc;
            if !bytes.is_empty() && tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                return;
            }
        }
        let tail = enc.finish();
        let _ = tx.send(Ok(Bytes::from(tail))).await;
    });
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/gzip"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"placements.csv.gz\""),
    );
    // A new export is a new head: nothing to cache or revalidate.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-export-seq", HeaderValue::from(head.0));
    Ok(resp)
}
