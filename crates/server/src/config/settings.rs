//! [`Settings`]: the flags parsed once into domain types, each failure naming its flag.

use super::{Config, ConfigError, SyncArg, bad};
use rplace_domain::policy::{AddrRate, Params};
use rplace_domain::{Cooldown, Dimensions, Ipv6Prefix, Palette};
use rplace_store::SyncMode;
use std::time::Duration;

/// Parsed configuration: what the rest of the server uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Board size.
    pub dims: Dimensions,
    /// Colors.
    pub palette: Palette,
    /// Time between one user's placements (zero in the charges model, whose pool is in
    /// `policy`).
    pub cooldown: Cooldown,
    /// Board cache lifetime.
    pub board_ttl: Duration,
    /// Shortest tick.
    pub tick: Duration,
    /// The placement policy: cooldown, per-address limit, IPv6 prefix.
    pub policy: Params,
    /// How long an idempotency key's first outcome is remembered.
    pub idempotency_window: Duration,
    /// Cookie signing key, if configured (else generated in the data dir).
    pub cookie_key: Option<Vec<u8>>,
    /// Embedded fsync policy.
    pub sync: SyncMode,
    /// Drain period on shutdown.
    pub drain: Duration,
    /// Who may reach what: public origin, websocket origins, admin and metrics tokens.
    pub access: crate::access::Access,
    /// Bound of one Redis command (shared mode).
    pub redis_timeout: Duration,
    /// Bound of one PostgreSQL call (shared mode).
    pub database_timeout: Duration,
    /// Time to receive a request head.
    pub header_timeout: Duration,
    /// Time to receive a request body.
    pub body_timeout: Duration,
    /// Time a write may wait for the client.
    pub send_timeout: Duration,
    /// Whose forwarding headers are believed.
    pub trusted_proxies: crate::client_addr::TrustedProxies,
    /// Websocket liveness and threads.
    pub ws: WsSettings,
}

/// A timeout in ms from 1 ms to 10 minutes.
fn millis(name: &'static str, env: &'static str, v: u64) -> Result<Duration, ConfigError> {
    if !(1..=600_000).contains(&v) {
        return Err(bad(
            name,
            env,
            format!("must be from 1 to 600000 ms, got {v}"),
        ));
    }
    Ok(Duration::from_millis(v))
}

/// Like [`seconds`], but more than zero: a zero timeout would close every connection.
fn timeout(name: &'static str, env: &'static str, v: f64) -> Result<Duration, ConfigError> {
    let d = seconds(name, env, v)?;
    if d.is_zero() {
        return Err(bad(name, env, "must be more than 0 seconds"));
    }
    Ok(d)
}

/// How websockets are kept honest and where they run.
#[derive(Debug, Clone, Copy)]
pub struct WsSettings {
    /// Time between pings; `None`: no liveness checks.
    pub ping_interval: Option<Duration>,
    /// Time a client has to answer a ping.
    pub pong_timeout: Duration,
    /// Worker threads of the websocket runtime; 0: the request runtime.
    pub threads: usize,
    /// Niceness of those threads.
    pub nice: i32,
}

fn seconds(name: &'static str, env: &'static str, v: f64) -> Result<Duration, ConfigError> {
    if !v.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&v) {
        return Err(bad(
            name,
            env,
            format!("must be a number of seconds from 0, got {v}"),
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

impl Config {
    /// Parses every setting, naming the first one that is wrong.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let dims = Dimensions::parse(self.width, self.height).map_err(|e| {
            let (name, env) =
                if self.width < 1 || self.width > rplace_domain::board::MAX_SIDE as u64 {
                    ("width", "RPLACE_WIDTH")
                } else {
                    ("height", "RPLACE_HEIGHT")
                };
            bad(name, env, e)
        })?;
        let palette = match &self.palette {
            Some(p) => Palette::parse_list(p).map_err(|e| bad("palette", "RPLACE_PALETTE", e))?,
            None => Palette::place_2017(),
        };
        let cooldown = seconds("cooldown", "RPLACE_COOLDOWN", self.cooldown)?;
        let board_ttl = seconds("board-ttl", "RPLACE_BOARD_TTL", self.board_ttl)?;
        if self.tick_ms == 0 || self.tick_ms > 10_000 {
            return Err(bad(
                "tick-ms",
                "RPLACE_TICK_MS",
                format!("must be from 1 to 10000, got {}", self.tick_ms),
            ));
        }
        if self.max_frame_rate == 0 {
            return Err(bad(
                "max-frame-rate",
                "RPLACE_MAX_FRAME_RATE",
                "must be at least 1",
            ));
        }
        if self.updates_log == 0 {
            return Err(bad(
                "updates-log",
                "RPLACE_UPDATES_LOG",
                "must be at least 1",
            ));
        }
        if self.tile_cache == 0 {
            return Err(bad("tile-cache", "RPLACE_TILE_CACHE", "must be at least 1"));
        }
        if self.client_queue == 0 {
            return Err(bad(
                "client-queue",
                "RPLACE_CLIENT_QUEUE",
                "must be at least 1",
            ));
        }
        let cookie_key = match &self.cookie_key {
            None => None,
            Some(k) => {
                let bytes = hex::decode(k.trim())
                    .map_err(|e| bad("cookie-key", "RPLACE_COOKIE_KEY", format!("not hex: {e}")))?;
                if bytes.len() < 64 {
                    return Err(bad(
                        "cookie-key",
                        "RPLACE_COOKIE_KEY",
                        format!(
                            "needs at least 64 bytes (128 hex digits), got {}",
                            bytes.len()
                        ),
                    ));
                }
                Some(bytes)
            }
        };
        if self.redis_url.is_some() && cookie_key.is_none() {
            return Err(bad(
                "cookie-key",
                "RPLACE_COOKIE_KEY",
                "shared mode needs one key for every instance (128 hex digits, e.g. `openssl rand -hex 64`)",
            ));
        }
        if matches!(&self.bench_token, Some(t) if t.len() < 16) {
            return Err(bad(
                "bench-token",
                "RPLACE_BENCH_TOKEN",
                "must be at least 16 characters",
            ));
        }
        let ipv6_prefix = Ipv6Prefix::new(self.ipv6_prefix)
            .map_err(|e| bad("ipv6-prefix", "RPLACE_IPV6_PREFIX", e))?;
        let idempotency_window = seconds(
            "idempotency-window",
            "RPLACE_IDEMPOTENCY_WINDOW",
            self.idempotency_window,
        )?;
        if idempotency_window < Duration::from_secs(1) {
            return Err(bad(
                "idempotency-window",
                "RPLACE_IDEMPOTENCY_WINDOW",
                "must be at least 1 second",
            ));
        }
        let cooldown = Cooldown::from_millis(cooldown.as_millis() as u64);
        let policy = Params::new(
            cooldown,
            AddrRate::per_minute(self.ip_rate, self.ip_burst),
            ipv6_prefix,
        )
        .with_account_rate(AddrRate::per_minute(
            self.moderation.ip_rate_account,
            self.moderation.ip_burst_account,
        ));
        // The charges model replaces the cooldown (zero then).
        let policy = self.charges.apply(policy)?;
        let cooldown = policy.cooldown();
        Ok(Settings {
            dims,
            palette,
            cooldown,
            board_ttl,
            tick: Duration::from_millis(self.tick_ms),
            policy,
            idempotency_window,
            cookie_key,
            sync: match self.sync {
                SyncArg::Full => SyncMode::Full,
                SyncArg::Normal => SyncMode::Normal,
            },
            drain: seconds("drain", "RPLACE_DRAIN", self.drain)?,
            access: crate::access::Access::parse(self)?,
            redis_timeout: millis(
                "redis-timeout-ms",
                "RPLACE_REDIS_TIMEOUT_MS",
                self.redis_timeout_ms,
            )?,
            database_timeout: millis(
                "database-timeout-ms",
                "RPLACE_DATABASE_TIMEOUT_MS",
                self.database_timeout_ms,
            )?,
            header_timeout: timeout(
                "header-timeout",
                "RPLACE_HEADER_TIMEOUT",
                self.header_timeout,
            )?,
            body_timeout: timeout("body-timeout", "RPLACE_BODY_TIMEOUT", self.body_timeout)?,
            send_timeout: timeout("send-timeout", "RPLACE_SEND_TIMEOUT", self.send_timeout)?,
            trusted_proxies: self
                .trusted_proxies
                .parse()
                .map_err(|e| bad("trusted-proxies", "RPLACE_TRUSTED_PROXIES", e))?,
            ws: self.ws_settings()?,
        })
    }
}

impl Config {
    fn ws_settings(&self) -> Result<WsSettings, ConfigError> {
        let ping = seconds(
            "ws-ping-interval",
            "RPLACE_WS_PING_INTERVAL",
            self.ws_ping_interval,
        )?;
        let pong = seconds(
            "ws-pong-timeout",
            "RPLACE_WS_PONG_TIMEOUT",
            self.ws_pong_timeout,
        )?;
        if !ping.is_zero() && pong.is_zero() {
            return Err(bad(
                "ws-pong-timeout",
                "RPLACE_WS_PONG_TIMEOUT",
                "must be more than 0 while pings are on",
            ));
        }
        let threads = self
            .ws_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if threads > 1024 {
            return Err(bad(
                "ws-threads",
                "RPLACE_WS_THREADS",
                "must be at most 1024",
            ));
        }
        if !(0..=19).contains(&self.ws_nice) {
            return Err(bad("ws-nice", "RPLACE_WS_NICE", "must be from 0 to 19"));
        }
        Ok(WsSettings {
            ping_interval: (!ping.is_zero()).then_some(ping),
            pong_timeout: pong,
            threads,
            nice: self.ws_nice,
        })
    }
}
