//! What the shared-store tests of this crate start: one Redis and one database per test.

use rplace_testsupport::{Postgres, RedisServer};

/// One Redis and one database for a test.
pub struct Env {
    pub redis: RedisServer,
    pub pg_url: String,
}

pub fn env() -> Env {
    Env {
        redis: RedisServer::start(),
        pg_url: Postgres::shared().create_database(),
    }
}
