//! A streaming parser of PostgreSQL's binary `COPY` output, which the rebuild and the tile
//! snapshots read the history with (the fastest way out of PostgreSQL).

/// A streaming parser of PostgreSQL's binary `COPY` format for rows of `N` non-null
/// integer columns, each of a fixed width (`bigint` 8, `integer` 4, `smallint` 2 bytes).
pub(crate) struct CopyRows<const N: usize> {
    /// Width in bytes of each column.
    widths: [usize; N],
    /// Received bytes not parsed yet.
    buf: Vec<u8>,
    /// Parse position in `buf`.
    pos: usize,
    /// The file header has been read.
    header: bool,
    /// The trailer (field count -1) has been read.
    done: bool,
}

impl<const N: usize> CopyRows<N> {
    /// Signature, flags and header extension length.
    const HEADER: usize = 11 + 4 + 4;

    /// A parser for rows whose columns have these widths (2, 4 or 8 bytes each).
    pub fn new(widths: [usize; N]) -> Self {
        debug_assert!(widths.iter().all(|w| matches!(w, 2 | 4 | 8)));
        Self {
            widths,
            buf: Vec::new(),
            pos: 0,
            header: false,
            done: false,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    pub fn finished(&self) -> bool {
        self.done
    }

    /// The next complete row, `None` when more bytes are needed or the data has ended.
    pub fn next_row(&mut self) -> Result<Option<[i64; N]>, String> {
        let b = &self.buf[self.pos..];
        if !self.header {
            if b.len() < Self::HEADER {
                return Ok(None);
            }
            if &b[..11] != b"PGCOPY\n\xff\r\n\0" {
                return Err("COPY output has no binary signature".into());
            }
            let ext = u32::from_be_bytes([b[15], b[16], b[17], b[18]]) as usize;
            if b.len() < Self::HEADER + ext {
                return Ok(None);
            }
            self.pos += Self::HEADER + ext;
            self.header = true;
            return self.next_row();
        }
        if self.done || b.len() < 2 {
            return Ok(None);
        }
        let fields = i16::from_be_bytes([b[0], b[1]]);
        if fields == -1 {
            self.done = true;
            self.pos += 2;
            return Ok(None);
        }
        if fields as usize != N {
            return Err(format!("COPY row has {fields} fields, expected {N}"));
        }
        let row = 2 + self.widths.iter().map(|w| 4 + w).sum::<usize>();
        if b.len() < row {
            return Ok(None);
        }
        let mut out = [0i64; N];
        let mut at = 2;
        for (v, &w) in out.iter_mut().zip(&self.widths) {
            let len = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            if len != w as i32 {
                return Err(format!(
                    "COPY field is {len} bytes long, expected a non-null integer of {w}"
                ));
            }
            let f = &b[at + 4..at + 4 + w];
            *v = match w {
                2 => i64::from(i16::from_be_bytes([f[0], f[1]])),
                4 => i64::from(i32::from_be_bytes([f[0], f[1], f[2], f[3]])),
                _ => i64::from_be_bytes(f.try_into().expect("8 bytes")),
            };
            at += 4 + w;
        }
        self.pos += row;
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binary COPY output of rows (seq bigint, x integer, y integer, color smallint), as
    /// PostgreSQL writes it.
    fn sample() -> Vec<u8> {
        let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
        out.extend(0u32.to_be_bytes());
        out.extend(0u32.to_be_bytes());
        for (seq, x, y, color) in [(1i64, 2i32, 3i32, 4i16), (1 << 40, 4_194_303, 70_000, 300)] {
            out.extend(4i16.to_be_bytes());
            out.extend(8i32.to_be_bytes());
            out.extend(seq.to_be_bytes());
            for v in [x, y] {
                out.extend(4i32.to_be_bytes());
                out.extend(v.to_be_bytes());
            }
            out.extend(2i32.to_be_bytes());
            out.extend(color.to_be_bytes());
        }
        out.extend((-1i16).to_be_bytes());
        out
    }

    #[test]
    fn copy_rows_parse_across_any_chunking() {
        let data = sample();
        for chunk in [1, 2, 3, 7, data.len()] {
            let mut p = CopyRows::new([8, 4, 4, 2]);
            let mut rows = Vec::new();
            for c in data.chunks(chunk) {
                p.push(c);
                while let Some(r) = p.next_row().unwrap() {
                    rows.push(r);
                }
            }
            assert!(p.finished(), "chunk {chunk}");
            assert_eq!(
                rows,
                vec![[1, 2, 3, 4], [1 << 40, 4_194_303, 70_000, 300]],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn copy_rows_refuse_other_shapes() {
        // Three columns where four are expected.
        let mut data = sample();
        data[19..21].copy_from_slice(&3i16.to_be_bytes());
        let mut p = CopyRows::new([8, 4, 4, 2]);
        p.push(&data);
        assert!(p.next_row().is_err());
        // A smallint where an integer is expected (the schema before migration 2).
        let mut p = CopyRows::new([8, 2, 4, 2]);
        p.push(&sample());
        assert!(p.next_row().is_err());
        let mut p = CopyRows::<1>::new([2]);
        p.push(b"NOTCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0");
        assert!(p.next_row().is_err());
    }
}
