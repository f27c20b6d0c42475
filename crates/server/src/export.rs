//! The dataset export (`GET /api/export/placements.csv.gz`): every placement as gzipped
//! CSV, `time,user,x,y,color`, like the dataset Reddit published after r/place.
//!
//! - **Streamed**: the store is read a page at a time ([`rplace_store::export`]) up to
//!   the head taken when the export starts, each page is formatted and compressed on a
//!   blocking thread, and the compressed bytes go to the client through a channel of
//!   [`CHUNKS_IN_FLIGHT`] chunks. Memory stays about one page per export however long the
//!   log is, and a client that reads slowly slows the reading down instead of queueing.
//! - **Bounded**: at most `--export-concurrency` exports run at once (each keeps a core
//!   busy); more get `503 busy` with a `Retry-After`.
//! - **Pseudonymous**: `user` is an HMAC-SHA256 of the user id under a key derived from
//!   the cookie key, cut to 64 bits (16 hex digits). The same user has the same pseudonym
//!   in every export of this canvas (so per-user analyses work), but without the key it
//!   cannot be turned back into the id that the identity cookie or the account carries.

use flate2::Compression;
use flate2::write::GzEncoder;
use hmac::{Hmac, Mac};
use rplace_domain::{Placement, UserId};
use sha2::Sha256;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The CSV's first line.
pub const HEADER: &str = "time,user,x,y,color\n";
/// Compressed chunks queued for a client before the export waits for it.
pub const CHUNKS_IN_FLIGHT: usize = 2;
/// Pseudonyms remembered per export: users place many times, so most rows skip the
/// HMAC; cleared when full, which bounds memory (about 8 MiB).
const PSEUDONYM_CACHE: usize = 1 << 18;

/// What every export of this instance shares: the pseudonym key and the concurrency cap.
#[derive(Clone)]
pub struct Exports {
    /// HMAC keyed with the derived key, cloned per row (cheaper than keying again).
    mac: Hmac<Sha256>,
    /// One permit per export that may run; `None`: exports are off.
    permits: Option<Arc<Semaphore>>,
}

impl Exports {
    /// `cookie_key`: the cookie jar's master key; `concurrency`: exports at once, 0: off.
    pub fn new(cookie_key: &[u8], concurrency: usize) -> Self {
        // Derive a key of its own, so that the pseudonyms reveal nothing about the key
        // that signs cookies, and changing one scheme never changes the other.
        let mut derive = <Hmac<Sha256>>::new_from_slice(cookie_key).expect("HMAC takes any key");
        derive.update(b"rplace export pseudonym v1");
        let key = derive.finalize().into_bytes();
        Self {
            mac: <Hmac<Sha256>>::new_from_slice(&key).expect("HMAC takes any key"),
            permits: (concurrency > 0).then(|| Arc::new(Semaphore::new(concurrency))),
        }
    }

    /// Whether exports are served at all.
    pub fn enabled(&self) -> bool {
        self.permits.is_some()
    }

    /// A permit for one export, or `None` if as many run as may.
    pub fn try_start(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permits.as_ref()?.clone().try_acquire_owned().ok()
    }

    /// The encoder of one export.
    pub fn encoder(&self) -> CsvGz {
        let mut gz = GzEncoder::new(Vec::with_capacity(1 << 20), Compression::fast());
        gz.write_all(HEADER.as_bytes()).expect("writing to a Vec");
        CsvGz {
            mac: self.mac.clone(),
            cache: HashMap::new(),
            line: Vec::with_capacity(64),
            gz,
        }
    }

    /// `user`'s pseudonym, 16 lowercase hex digits.
    pub fn pseudonym(&self, user: UserId) -> String {
        hex::encode(pseudonym(&self.mac, user))
    }
}

fn pseudonym(mac: &Hmac<Sha256>, user: UserId) -> [u8; 8] {
    let mut m = mac.clone();
    m.update(&user.0.to_be_bytes());
    let digest = m.finalize().into_bytes();
    let mut out = [0; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// Formats placements as CSV lines and gzips them, a page at a time.
pub struct CsvGz {
    mac: Hmac<Sha256>,
    /// User id -> pseudonym's hex digits, bounded by [`PSEUDONYM_CACHE`].
    cache: HashMap<u64, [u8; 16]>,
    /// One line, reused.
    line: Vec<u8>,
    /// The compressed output not yet taken.
    gz: GzEncoder<Vec<u8>>,
}

impl CsvGz {
    /// Appends one line per placement and returns the compressed bytes produced so far
    /// (possibly none: gzip buffers).
    pub fn page(&mut self, rows: &[Placement]) -> Vec<u8> {
        for p in rows {
            if self.cache.len() >= PSEUDONYM_CACHE {
                self.cache.clear();
            }
            let mac = &self.mac;
            let name = *self.cache.entry(p.user.0).or_insert_with(|| {
                let mut hexed = [0; 16];
                hex::encode_to_slice(pseudonym(mac, p.user), &mut hexed).expect("16 digits");
                hexed
            });
            self.line.clear();
            write!(self.line, "{},", p.at_ms).expect("writing to a Vec");
            self.line.extend_from_slice(&name);
            writeln!(
                self.line,
                ",{},{},{}",
                p.coord.x(),
                p.coord.y(),
                p.color.get()
            )
            .expect("writing to a Vec");
            self.gz.write_all(&self.line).expect("writing to a Vec");
        }
        std::mem::take(self.gz.get_mut())
    }

    /// The rest of the compressed stream, with gzip's trailer.
    pub fn finish(self) -> Vec<u8> {
        self.gz.finish().expect("writing to a Vec")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use rplace_domain::{ColorIndex, Coord, Seq};
    use std::io::Read;

    fn placement(seq: u64, user: u64) -> Placement {
        Placement {
            seq: Seq(seq),
            coord: Coord::new_unchecked(70_000, 3),
            color: ColorIndex::new_unchecked(15),
            user: UserId(user),
            at_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn lines_decompress_to_the_rows_with_stable_pseudonyms() {
        let ex = Exports::new(
            b"a cookie key of sixty-four bytes, or any length for HMAC",
            1,
        );
        let mut enc = ex.encoder();
        let mut gz = enc.page(&[placement(1, 7), placement(2, 8)]);
        gz.extend(enc.page(&[placement(3, 7)]));
        gz.extend(enc.finish());
        let mut csv = String::new();
        GzDecoder::new(&gz[..]).read_to_string(&mut csv).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "time,user,x,y,color");
        let seven = ex.pseudonym(UserId(7));
        assert_eq!(seven.len(), 16);
        assert_eq!(lines[1], format!("1700000000123,{seven},70000,3,15"));
        assert_ne!(lines[2].split(',').nth(1).unwrap(), seven);
        assert_eq!(lines[3], lines[1]);
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn the_pseudonym_depends_on_the_key_and_is_not_the_id() {
        let a = Exports::new(b"key a", 1).pseudonym(UserId(7));
        let b = Exports::new(b"key b", 1).pseudonym(UserId(7));
        assert_ne!(a, b);
        assert_ne!(a, format!("{:016x}", 7));
    }
}
