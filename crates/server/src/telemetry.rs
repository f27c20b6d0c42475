//! Logs (tracing) and metrics (a Prometheus recorder, rendered by `GET /metrics`).

use crate::config::LogFormat;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Installs the global tracing subscriber; `RUST_LOG` overrides the default `info`.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use. Metrics are global in
/// the `metrics` crate, so servers that share a process (tests) share counters.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .expect("bucket list is non-empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding program; then
            // this handle renders only what was recorded here, which is nothing.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "rplace_placements_total",
        "Placements accepted by this instance"
    );
    describe_counter!(
        "rplace_rejections_total",
        "Placement requests rejected, by reason"
    );
    describe_gauge!("rplace_ws_clients", "Open websocket connections");
    describe_counter!(
        "rplace_frames_sent_total",
        "Websocket update frames queued to clients"
    );
    describe_counter!(
        "rplace_frame_bytes_sent_total",
        "Bytes of update frames queued to clients"
    );
    describe_counter!(
        "rplace_frames_encoded_total",
        "Ticks that encoded and broadcast a frame"
    );
    describe_histogram!(
        "rplace_tick_seconds",
        "Time to encode and broadcast one tick"
    );
    describe_histogram!(
        "rplace_store_commit_seconds",
        "Time to decide and commit one batch of placements"
    );
    describe_counter!(
        "rplace_board_requests_total",
        "GET /api/board and /api/board.png requests served"
    );
    describe_counter!(
        "rplace_board_encodings_total",
        "Board compressions performed"
    );
    describe_counter!(
        "rplace_sendfile_bytes_total",
        "Board bytes sent from a file with sendfile instead of copied from memory"
    );
    describe_counter!(
        "rplace_ws_lagged_total",
        "Clients disconnected for falling behind"
    );
    describe_counter!(
        "rplace_connections_refused_total",
        "Connections or websockets refused: per_ip and ws_per_ip caps, descriptors exhausted"
    );
    describe_counter!(
        "rplace_accept_exhausted_total",
        "Accepts that failed because the process or system was out of file descriptors"
    );
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
