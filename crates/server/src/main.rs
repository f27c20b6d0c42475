//! The `rplace` binary: parse configuration, bind, serve until SIGINT or SIGTERM.

use clap::Parser;
use rplace::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    rplace::telemetry::init_tracing(config.log_format);
    // Fail on a bad setting before touching the network or the disk.
    config.settings()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} (--listen / RPLACE_LISTEN): {e}",
                config.listen
            )
        })?;
    rplace::run(listener, config, rplace::telemetry::shutdown_signal()).await?;
    Ok(())
}
