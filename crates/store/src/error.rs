//! The errors that cross the [`crate::Store`] trait.
//!
//! They are typed, with the backend's own error as their `source`, so that callers decide
//! by variant (never by matching message text) and the log keeps the whole chain
//! ([`Chain`]). Their text is for operators: the server answers clients with its own
//! words and logs these.

use std::fmt;
use std::sync::Arc;

/// A service a backend depends on, named in logs (never in answers to clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Redis,
    Postgres,
    Sqlite,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Redis => "Redis",
            Service::Postgres => "PostgreSQL",
            Service::Sqlite => "SQLite",
        })
    }
}

/// Why the store could not do something right now. Nothing was changed by the call that
/// got it, except where [`crate::shared`] documents otherwise (a `503` after a timeout).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("a Redis command failed")]
    Redis(#[source] redis::RedisError),
    #[error("a PostgreSQL query failed")]
    Postgres(#[source] tokio_postgres::Error),
    #[error("no PostgreSQL connection could be had")]
    PostgresPool(#[source] deadpool_postgres::PoolError),
    #[error("an SQLite statement failed")]
    Sqlite(#[source] rusqlite::Error),
    #[error("an I/O operation failed")]
    Io(#[source] std::io::Error),
    /// The service did not answer within its configured timeout.
    #[error("{0} did not answer in time")]
    Timeout(Service),
    /// PostgreSQL is away and Redis is not durable on its own, so nothing can be
    /// acknowledged.
    #[error("PostgreSQL is not taking the history and Redis is not durable on its own")]
    HistoryUnavailable,
    /// PostgreSQL is away and the placements waiting for it in Redis reached the cap.
    #[error("{backlog} placements wait in Redis for PostgreSQL, the most allowed")]
    BacklogFull { backlog: u64 },
    /// The Redis state is missing and is being rebuilt from the history.
    #[error("the Redis state is being rebuilt from PostgreSQL")]
    Rebuilding,
    /// The board was rebuilt while the placement was being saved; it was not kept.
    #[error("the Redis state was replaced while this placement was being saved")]
    Superseded,
    /// Redis and the history disagree about a seq; the state is being repaired.
    #[error("the Redis state diverged from the history")]
    Diverged,
    /// A repeat of an idempotency key whose first attempt is not in the history yet: it
    /// may still be, so the repeat answers as the first attempt would have.
    #[error("the first attempt with this idempotency key (seq {seq}) is not saved yet")]
    ReplayNotSaved { seq: u64 },
    /// A repeat of an idempotency key whose first attempt was lost with a replaced Redis
    /// state; the key is forgotten, so the next retry is decided afresh.
    #[error("the first attempt with this idempotency key was not kept")]
    ReplayLost,
    /// Stored data breaks the store's own format.
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    /// A task or thread of the store is gone (closing, or it panicked).
    #[error("the store's {0} stopped")]
    Stopped(&'static str),
    /// One failure answered to many callers (a failed group commit).
    #[error(transparent)]
    Shared(Arc<BackendError>),
    /// A [`StoreError`] that is not a backend failure, met where one was expected.
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl BackendError {
    /// A Redis error, as [`BackendError::Timeout`] when the command timed out.
    pub fn redis(e: redis::RedisError) -> Self {
        if e.is_timeout() {
            BackendError::Timeout(Service::Redis)
        } else {
            BackendError::Redis(e)
        }
    }

    /// When trying again is likely to help, in ms, if the store can tell.
    pub fn retry_after_ms(&self) -> Option<i64> {
        match self {
            BackendError::Shared(e) => e.retry_after_ms(),
            BackendError::Store(_) => None,
            BackendError::Corrupt(_) | BackendError::Stopped(_) => None,
            BackendError::BacklogFull { .. } => Some(5_000),
            _ => Some(1_000),
        }
    }
}

impl From<redis::RedisError> for BackendError {
    fn from(e: redis::RedisError) -> Self {
        BackendError::redis(e)
    }
}

impl From<tokio_postgres::Error> for BackendError {
    fn from(e: tokio_postgres::Error) -> Self {
        BackendError::Postgres(e)
    }
}

impl From<deadpool_postgres::PoolError> for BackendError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => BackendError::Postgres(e),
            deadpool_postgres::PoolError::Timeout(_) => BackendError::Timeout(Service::Postgres),
            other => BackendError::PostgresPool(other),
        }
    }
}

impl From<rusqlite::Error> for BackendError {
    fn from(e: rusqlite::Error) -> Self {
        BackendError::Sqlite(e)
    }
}

impl From<std::io::Error> for BackendError {
    fn from(e: std::io::Error) -> Self {
        BackendError::Io(e)
    }
}

impl From<StoreError> for BackendError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Backend(b) | StoreError::Connect { source: b, .. } => b,
            other => BackendError::Store(Box::new(other)),
        }
    }
}

impl From<StoreError> for PlaceError {
    fn from(e: StoreError) -> Self {
        PlaceError::Unavailable(e.into())
    }
}

/// Why a placement was not accepted. None of these changed anything, except as
/// [`BackendError`] says.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("this user may place again at {next_at_ms} (unix ms)")]
    Cooldown { next_at_ms: i64 },
    #[error("too many placements from this address; retry in {retry_after_ms} ms")]
    RateLimited { retry_after_ms: i64 },
    /// The user or the address is banned.
    #[error("banned ({reason}) until {until_ms:?} (unix ms)")]
    Banned {
        /// The moderator's reason, shown to the banned user.
        reason: String,
        /// When the ban ends, unix ms; `None`: never.
        until_ms: Option<i64>,
    },
    /// The pixel is in a protected area and the placer is not a moderator.
    #[error("the pixel is in a protected area")]
    Protected,
    /// The one-time proof was spent by an earlier placement.
    #[error("the one-time proof was already used")]
    OnceSpent,
    #[error("the store is shutting down")]
    ShuttingDown,
    #[error("the store cannot take placements now")]
    Unavailable(#[source] BackendError),
}

/// `?` on any backend failure, for both error types that carry one.
macro_rules! from_backend {
    ($($t:ty),*) => {$(
        impl From<$t> for PlaceError {
            fn from(e: $t) -> Self {
                PlaceError::Unavailable(e.into())
            }
        }
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Backend(e.into())
            }
        }
    )*};
}

from_backend!(
    BackendError,
    redis::RedisError,
    tokio_postgres::Error,
    deadpool_postgres::PoolError,
    rusqlite::Error,
    std::io::Error
);

/// Failures of reads and of opening a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The requested updates are older than the store keeps.
    #[error(
        "updates after seq {since} are no longer kept; the oldest available follow seq {oldest}"
    )]
    Gone {
        since: rplace_domain::Seq,
        oldest: rplace_domain::Seq,
    },
    /// The configuration or what the services hold does not fit; for the operator, at
    /// start.
    #[error("{0}")]
    Config(String),
    /// A service could not be reached at start; `url` has its password hidden.
    #[error("cannot reach {service} at {url}")]
    Connect {
        service: Service,
        url: String,
        #[source]
        source: BackendError,
    },
    #[error("the store failed")]
    Backend(#[source] BackendError),
}

impl StoreError {
    /// The backend failure underneath, if this is one.
    pub fn backend(&self) -> Option<&BackendError> {
        match self {
            StoreError::Backend(e) | StoreError::Connect { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

/// Formats an error with all its sources, `outer: inner: innermost`, for logs.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(e) = src {
            write!(f, ": {e}")?;
            src = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_every_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = PlaceError::from(BackendError::Shared(Arc::new(BackendError::Io(io))));
        assert_eq!(
            Chain(&e).to_string(),
            "the store cannot take placements now: an I/O operation failed: refused"
        );
        assert_eq!(
            BackendError::Timeout(Service::Redis).retry_after_ms(),
            Some(1000)
        );
    }
}
