//! Configuration: every setting is a flag and an environment variable (clap derive + env),
//! and [`Config::settings`] parses them into domain types once, so an invalid value stops
//! the start with a message that names the setting.

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

pub mod antibot;
mod auth;
pub mod charges;
mod moderation;
mod settings;
pub use antibot::AntibotArgs;
pub use auth::{AdminRule, AuthArgs, AuthSettings, LoginMode, ProviderSpec};
pub use moderation::ModerationArgs;
pub use settings::{Settings, WsSettings};

/// Command line and environment of the `rplace` binary.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "rplace",
    version,
    about = "A shared pixel canvas, r/place style",
    args_override_self = true
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "RPLACE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Folder for the embedded database and the generated cookie key.
    #[arg(long, env = "RPLACE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Canvas width in pixels (1 to 4194304); a canvas of at most 8192 on both sides is
    /// also served whole (`GET /api/board`). It may grow at run time (admin), never shrink.
    #[arg(long, env = "RPLACE_WIDTH", default_value_t = 1000)]
    pub width: u64,

    /// Canvas height in pixels (1 to 4194304).
    #[arg(long, env = "RPLACE_HEIGHT", default_value_t = 1000)]
    pub height: u64,

    /// Seconds a user waits between placements; 0 for none. r/place 2017 used 300. Not
    /// used with `--cooldown-model charges`.
    #[arg(long, env = "RPLACE_COOLDOWN", default_value_t = 5.0)]
    pub cooldown: f64,

    /// Comma-separated #RRGGBB colors, 2 to 256; default: the 16 colors of r/place 2017.
    #[arg(long, env = "RPLACE_PALETTE")]
    pub palette: Option<String>,

    /// Seconds a served board may be cached (Cache-Control max-age), and at most how stale
    /// the board this server serves may be.
    #[arg(long, env = "RPLACE_BOARD_TTL", default_value_t = 3.0)]
    pub board_ttl: f64,

    /// Shortest time between two update frames, in ms: placements within it share a frame.
    #[arg(long, env = "RPLACE_TICK_MS", default_value_t = 50)]
    pub tick_ms: u64,

    /// Websocket frames per second the server aims to stay under across all clients; the
    /// tick lengthens when clients x ticks per second would exceed it.
    #[arg(long, env = "RPLACE_MAX_FRAME_RATE", default_value_t = 60_000)]
    pub max_frame_rate: u64,

    /// Seconds between two pings the server sends each websocket client (any traffic
    /// counts as its answer); 0 turns liveness checks off.
    #[arg(long, env = "RPLACE_WS_PING_INTERVAL", default_value_t = 25.0)]
    pub ws_ping_interval: f64,

    /// Seconds a websocket client has to answer a ping before it is closed (4001).
    #[arg(long, env = "RPLACE_WS_PONG_TIMEOUT", default_value_t = 10.0)]
    pub ws_pong_timeout: f64,

    /// Threads of the runtime that writes to websockets, apart from the threads that
    /// answer HTTP requests; 0 shares the request threads. Default: one per core.
    #[arg(long, env = "RPLACE_WS_THREADS")]
    pub ws_threads: Option<usize>,

    /// Niceness (0 to 19) of the websocket threads: above 0 the kernel prefers the threads
    /// that answer requests when both want a core. Off by default: with the fan-out on
    /// threads of its own the answer no longer waits for it (BENCHMARKS.md), and a
    /// lower priority only delays the frames.
    #[arg(long, env = "RPLACE_WS_NICE", default_value_t = 0)]
    pub ws_nice: i32,

    /// Placements per minute one IP address may make (sustained); 0 turns the limit off.
    #[arg(long, env = "RPLACE_IP_RATE", default_value_t = 60)]
    pub ip_rate: u32,

    /// Placements one IP address may make back to back before `ip-rate` applies.
    #[arg(long, env = "RPLACE_IP_BURST", default_value_t = 30)]
    pub ip_burst: u32,

    /// Proxies whose X-Forwarded-For (and PROXY header) is believed: comma-separated
    /// addresses and CIDR networks, e.g. `127.0.0.1,10.0.0.0/8,::1`. From any other peer the
    /// header is ignored and the peer is the client. Empty: no proxy.
    #[arg(long, env = "RPLACE_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,

    /// Read a PROXY protocol v2 header (HAProxy `send-proxy-v2`) at the start of
    /// connections from trusted proxies; the address it carries is the client's.
    #[arg(long, env = "RPLACE_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,

    /// Seconds to receive a whole request head, counted from when the server waits for it
    /// (connection opened or previous answer sent): also the keep-alive idle time.
    #[arg(long, env = "RPLACE_HEADER_TIMEOUT", default_value_t = 10.0)]
    pub header_timeout: f64,

    /// Seconds to receive a whole request body once its head arrived; later: 408.
    #[arg(long, env = "RPLACE_BODY_TIMEOUT", default_value_t = 10.0)]
    pub body_timeout: f64,

    /// Seconds a write may wait for the client to take a byte of an answer (a client that
    /// stops reading); then the connection is closed.
    #[arg(long, env = "RPLACE_SEND_TIMEOUT", default_value_t = 30.0)]
    pub send_timeout: f64,

    /// Open TCP connections one client address may hold (IPv6: one /64); more are
    /// refused. Trusted proxies are not counted. 0: no limit.
    #[arg(long, env = "RPLACE_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// Open websockets one client address may hold (IPv6: one /64); more get 429. 0: no
    /// limit.
    #[arg(long, env = "RPLACE_MAX_WEBSOCKETS_PER_IP", default_value_t = 128)]
    pub max_websockets_per_ip: usize,

    /// Send the large board bodies with sendfile(2) from a temporary file (see
    /// crates/server/src/zerocopy.rs); off: every body is written from memory.
    #[arg(long, env = "RPLACE_SENDFILE")]
    pub sendfile: bool,

    /// How many leading bits of an IPv6 address count as one client for the per-address
    /// limit (32 to 128): whoever has one /64 has 2^64 addresses.
    #[arg(long, env = "RPLACE_IPV6_PREFIX", default_value_t = 64)]
    pub ipv6_prefix: u32,

    /// Seconds an `Idempotency-Key` of `PUT /api/pixel` is remembered: a repeat within it
    /// answers the first accepted attempt's outcome and places nothing.
    #[arg(long, env = "RPLACE_IDEMPOTENCY_WINDOW", default_value_t = 600.0)]
    pub idempotency_window: f64,

    /// Key that signs identity cookies, 128 hex digits (64 bytes). Default: generated once
    /// and kept in the data dir. Every instance of one canvas needs the same key.
    #[arg(long, env = "RPLACE_COOKIE_KEY", hide_env_values = true)]
    pub cookie_key: Option<String>,

    /// How each embedded commit reaches the disk: full (fsync, survives power loss) or
    /// normal (survives a crash of the process).
    #[arg(long, env = "RPLACE_SYNC", value_enum, default_value_t = SyncArg::Full)]
    pub sync: SyncArg,

    /// Write a board snapshot after this many placements, to bound replay at start.
    #[arg(long, env = "RPLACE_SNAPSHOT_EVERY", default_value_t = 100_000)]
    pub snapshot_every: u64,

    /// Placements kept in memory for `GET /api/updates` (catch-up after a reconnect).
    #[arg(long, env = "RPLACE_UPDATES_LOG", default_value_t = 200_000)]
    pub updates_log: usize,

    /// Update frames a websocket client may fall behind before it is told to reconnect.
    #[arg(long, env = "RPLACE_CLIENT_QUEUE", default_value_t = 256)]
    pub client_queue: usize,

    /// Tiles (256² pixels) kept in memory by the server and by the embedded store; tiles
    /// not in memory are read from the store. 4096 is at most 128 MiB of 4-bit pixels.
    #[arg(long, env = "RPLACE_TILE_CACHE", default_value_t = crate::tile_cache::DEFAULT_TILE_CACHE)]
    pub tile_cache: usize,

    /// Dataset exports (`GET /api/export/placements.csv.gz`) streamed at once, each
    /// keeping about one core busy; more get 503. 0 turns the export off.
    #[arg(long, env = "RPLACE_EXPORT_CONCURRENCY", default_value_t = 1)]
    pub export_concurrency: usize,

    /// Reads of the canvas at a past moment (`?seq=`, `?at=`) served at once; more get
    /// 503 busy.
    #[arg(long, env = "RPLACE_HISTORY_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub history_concurrency: u64,

    /// Placements between two keyframe marks of the past canvas (see
    /// `rplace_store::past`): a past read replays at most twice this many rows.
    #[arg(long, env = "RPLACE_HISTORY_KEYFRAME_EVERY",
          default_value_t = rplace_store::past::DEFAULT_KEYFRAME_EVERY,
          value_parser = clap::value_parser!(u64).range(1..=rplace_store::past::MAX_KEYFRAME_EVERY))]
    pub history_keyframe_every: u64,

    /// Most open websocket connections; more get 503.
    #[arg(long, env = "RPLACE_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,

    /// Seconds between failing readiness and closing connections on shutdown, so a load
    /// balancer stops sending work first.
    #[arg(long, env = "RPLACE_DRAIN", default_value_t = 0.0)]
    pub drain: f64,

    /// Enables the load generator's path: requests with `Authorization: Bearer <token>`
    /// and `X-Rplace-User` place as that user without cookie, cooldown or IP limit. Off
    /// unless set; at least 16 characters; never set it on a public canvas.
    #[arg(long, env = "RPLACE_BENCH_TOKEN", hide_env_values = true)]
    pub bench_token: Option<String>,

    /// Secret of at least 32 characters that authenticates the operator endpoints under
    /// `/api/admin/` (`Authorization: Bearer <token>`). Off unless set; not the bench token.
    #[arg(long, env = "RPLACE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// The URL visitors use, e.g. `https://place.example`: with https the identity cookie is
    /// `Secure`, and its origin may open the websocket.
    #[arg(long, env = "RPLACE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Comma-separated origins (`https://place.example`) whose pages may open the
    /// websocket, or `*` for any. Default: the origin the request was sent to (its Host),
    /// and `--public-url`'s. A handshake without `Origin` (not a browser) is always allowed.
    #[arg(long, env = "RPLACE_ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,

    /// If set (at least 16 characters), `/metrics` needs `Authorization: Bearer <token>`.
    #[arg(long, env = "RPLACE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Serve `/metrics` on this address instead of the main listener (e.g. a private
    /// interface).
    #[arg(long, env = "RPLACE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Redis URL: with `--database-url`, runs this instance in shared mode (board, seq,
    /// cooldowns and fan-out in Redis; history in PostgreSQL). Without both: embedded.
    #[arg(
        long,
        env = "RPLACE_REDIS_URL",
        hide_env_values = true,
        requires = "database_url"
    )]
    pub redis_url: Option<String>,

    /// PostgreSQL URL for the placement history in shared mode.
    #[arg(
        long,
        env = "RPLACE_DATABASE_URL",
        hide_env_values = true,
        requires = "redis_url"
    )]
    pub database_url: Option<String>,

    /// Shared mode on a Redis Cluster: `--redis-url` lists seed nodes, comma-separated,
    /// and the canvas's tiles are spread over the cluster's hash slots (docs/DEPLOY.md,
    /// "Redis Cluster").
    #[arg(long, env = "RPLACE_REDIS_CLUSTER", requires = "redis_url")]
    pub redis_cluster: bool,

    /// Prefix of every Redis key of this canvas, so canvases (or tests) can share a Redis.
    #[arg(long, env = "RPLACE_REDIS_PREFIX", default_value = "rplace:")]
    pub redis_prefix: String,

    /// Shared mode: longest one Redis command or connection attempt may take, in ms;
    /// past it the request answers 503 and readiness fails.
    #[arg(long, env = "RPLACE_REDIS_TIMEOUT_MS", default_value_t = 1000)]
    pub redis_timeout_ms: u64,

    /// Shared mode: longest one PostgreSQL call may take, in ms (the rebuild's replay of
    /// the whole history has a long bound of its own).
    #[arg(long, env = "RPLACE_DATABASE_TIMEOUT_MS", default_value_t = 2000)]
    pub database_timeout_ms: u64,

    /// Shared mode with a durable Redis (AOF, appendfsync always): most placements that
    /// may wait in Redis for PostgreSQL while it is away; past it placements get 503.
    #[arg(long, env = "RPLACE_REDIS_BACKLOG", default_value_t = 1_000_000)]
    pub redis_backlog: u64,

    /// Log format.
    #[arg(long, env = "RPLACE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Accounts: OpenID Connect providers, login mode, display names, admins.
    #[command(flatten)]
    pub auth: AuthArgs,

    /// Anti-bot: proof of work, captcha.
    #[command(flatten)]
    pub antibot: AntibotArgs,

    /// Moderation: bans, protected areas, rollbacks, reports.
    #[command(flatten)]
    pub moderation: ModerationArgs,

    /// The cooldown model: fixed, or a pool of charges.
    #[command(flatten)]
    pub charges: charges::ChargesArgs,
    /// Timelapse export: concurrency, queue, disk.
    #[command(flatten)]
    pub timelapse: crate::timelapse::TimelapseArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncArg {
    Full,
    Normal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A setting that does not parse, with its name.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting --{name} (env {env}): {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub env: &'static str,
    pub reason: String,
}

pub(crate) fn bad(name: &'static str, env: &'static str, reason: impl ToString) -> ConfigError {
    ConfigError {
        name,
        env,
        reason: reason.to_string(),
    }
}

impl Config {
    /// Defaults for a test or embedding: as if started with no flags, plus `args`.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Config::try_parse_from(
            std::iter::once("rplace".into()).chain(args.into_iter().map(Into::into)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_args::<_, &str>([]).unwrap();
        let s = c.settings().unwrap();
        assert_eq!(s.dims.width(), 1000);
        assert_eq!(s.palette.len(), 16);
        assert_eq!(s.board_ttl, Duration::from_secs(3));
    }

    #[test]
    fn bad_settings_are_named() {
        let err = |args: &[&str]| {
            Config::from_args(args)
                .unwrap()
                .settings()
                .unwrap_err()
                .to_string()
        };
        assert!(err(&["--width", "0"]).contains("--width"));
        assert!(err(&["--height", "4194305"]).contains("--height"));
        assert!(err(&["--palette", "#fff"]).contains("--palette"));
        assert!(err(&["--cooldown=-1"]).contains("--cooldown"));
        assert!(err(&["--cookie-key", "abcd"]).contains("--cookie-key"));
        assert!(err(&["--tick-ms", "0"]).contains("--tick-ms"));
        assert!(err(&["--redis-timeout-ms", "0"]).contains("--redis-timeout-ms"));
        assert!(err(&["--database-timeout-ms", "0"]).contains("--database-timeout-ms"));
        assert!(err(&["--header-timeout", "0"]).contains("--header-timeout"));
        let e = err(&["--trusted-proxies", "2"]);
        assert!(
            e.contains("--trusted-proxies") && e.contains("10.0.0.0/8"),
            "{e}"
        );
        assert!(err(&["--ipv6-prefix", "31"]).contains("--ipv6-prefix"));
        assert!(err(&["--ipv6-prefix", "129"]).contains("--ipv6-prefix"));
        assert!(err(&["--idempotency-window", "0"]).contains("--idempotency-window"));
        assert!(Config::from_args(["--listen", "nope"]).is_err());
    }
}
