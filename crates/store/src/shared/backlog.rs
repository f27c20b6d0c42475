//! The stream as a buffer for PostgreSQL outages, and whether Redis may be trusted with
//! that.
//!
//! A placement is normally acknowledged once it is in PostgreSQL. When PostgreSQL is
//! away, it may instead be acknowledged once Redis has it durably: when Redis appends
//! every write to its AOF and fsyncs it before answering (`appendonly yes` with
//! `appendfsync always`). Redis 7.2's `WAITAOF` would let a Redis with `everysec` do the
//! same per call; it is not used, because the Redis this is built against (7.0) lacks it.
//! Which Redis this is gets checked by the probe every health interval ([`durable`]).
//!
//! Such placements wait in the stream, which therefore is trimmed only by [`settle`]:
//! never past the history's watermark (`durable_seq`, copied to the `durable` key), so
//! nothing un-persisted leaves it. The number waiting (newest seq minus that watermark) is
//! capped by [`super::SharedConfig::backlog_limit`]; past it, placements answer `503`.
//! When PostgreSQL returns, the reconciler copies them in seq order.

use super::live::Live;
use crate::BackendError;
use redis::Script;
use rplace_domain::Seq;

/// Copies the watermark to Redis and trims the stream to at least `capacity` entries,
/// never past the watermark.
///
/// KEYS[1] durable mark   KEYS[2] seq   KEYS[3] stream
/// ARGV[1] the history's watermark   ARGV[2] entries to keep at least
const SETTLE: &str = r"
redis.call('SET', KEYS[1], ARGV[1])
local mark = tonumber(ARGV[1])
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
local keep_from = seq + 1 - tonumber(ARGV[2])
if keep_from > mark + 1 then
  keep_from = mark + 1
end
if keep_from > 1 then
  redis.call('XTRIM', KEYS[3], 'MINID', '~', string.format('%d-0', keep_from))
end
return redis.call('XLEN', KEYS[3])
";

/// Records the history's watermark `mark` in Redis and trims what is both older than
/// `capacity` placements and already in the history. Returns the stream's length.
pub(crate) async fn settle(live: &Live, mark: Seq, capacity: u64) -> Result<u64, BackendError> {
    let k = &live.keys;
    let len: u64 = Script::new(SETTLE)
        .key(&k.durable)
        .key(&k.seq)
        .key(&k.stream)
        .arg(mark.0)
        .arg(capacity.max(1))
        .invoke_async(&mut live.conn())
        .await?;
    Ok(len)
}

/// The newest seq and the watermark's copy (0 when missing, which makes the backlog look
/// full until the reconciler has written it: the safe side).
pub(crate) async fn positions(live: &Live) -> Result<(Seq, Seq), BackendError> {
    let k = &live.keys;
    let (seq, mark): (Option<u64>, Option<u64>) = redis::pipe()
        .get(&k.seq)
        .get(&k.durable)
        .query_async(&mut live.conn())
        .await?;
    Ok((Seq(seq.unwrap_or(0)), Seq(mark.unwrap_or(0))))
}

/// Whether Redis fsyncs every write to its AOF before answering. A Redis that refuses
/// `CONFIG` (managed services often do) counts as not durable. On a Redis Cluster, the
/// node of the core slot, which holds the stream (the `EXISTS` of the seq routes the
/// pipeline there): the tiles on the other nodes are rebuilt from the stream and the
/// history if lost.
pub(crate) async fn durable(live: &Live) -> Result<bool, BackendError> {
    let res: redis::RedisResult<(Vec<String>, Vec<String>)> = redis::pipe()
        .exists(&live.keys.seq)
        .ignore()
        .cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .cmd("CONFIG")
        .arg("GET")
        .arg("appendfsync")
        .query_async(&mut live.conn())
        .await;
    match res {
        Ok((aof, fsync)) => Ok(is_durable(&aof, &fsync)),
        Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
            Err(BackendError::redis(e))
        }
        Err(e) => {
            tracing::debug!(error = %crate::Chain(&e), "CONFIG GET refused; Redis counts as not durable");
            Ok(false)
        }
    }
}

/// `CONFIG GET` replies (name, value pairs) to durable or not.
fn is_durable(aof: &[String], fsync: &[String]) -> bool {
    let value = |pairs: &[String], name: &str| {
        pairs
            .chunks(2)
            .find(|kv| kv[0].eq_ignore_ascii_case(name))
            .and_then(|kv| kv.get(1))
            .map(|v| v.to_ascii_lowercase())
    };
    value(aof, "appendonly").as_deref() == Some("yes")
        && value(fsync, "appendfsync").as_deref() == Some("always")
}

/// Whether the stream holds an entry past the seq key: Redis went back in time (restored
/// from an older copy), and the placement script's `XADD` fails until it is rebuilt.
pub(crate) async fn stream_ahead(live: &Live) -> Result<bool, BackendError> {
    let k = &live.keys;
    type Entry = (String, Vec<String>);
    let (seq, last): (Option<u64>, Vec<Entry>) = redis::pipe()
        .get(&k.seq)
        .cmd("XREVRANGE")
        .arg(&k.stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut live.conn())
        .await?;
    let last = last
        .first()
        .and_then(|(id, _)| id.split('-').next()?.parse::<u64>().ok());
    Ok(matches!((seq, last), (Some(seq), Some(last)) if last > seq))
}

#[cfg(test)]
mod tests {
    use super::is_durable;

    #[test]
    fn only_aof_with_fsync_always_is_durable() {
        let s = |a: &str, b: &str| vec![a.to_string(), b.to_string()];
        assert!(is_durable(
            &s("appendonly", "yes"),
            &s("appendfsync", "always")
        ));
        assert!(!is_durable(
            &s("appendonly", "yes"),
            &s("appendfsync", "everysec")
        ));
        assert!(!is_durable(
            &s("appendonly", "no"),
            &s("appendfsync", "always")
        ));
        assert!(!is_durable(&[], &[]));
    }
}
