//! A streaming parser of PostgreSQL's binary `COPY` output, which the rebuild reads the
//! history with (the fastest way out of PostgreSQL).

/// A streaming parser of PostgreSQL's binary `COPY` format for rows of three `smallint`s.
#[derive(Default)]
pub(crate) struct CopyRows {
    /// Received bytes not parsed yet.
    buf: Vec<u8>,
    /// Parse position in `buf`.
    pos: usize,
    /// The file header has been read.
    header: bool,
    /// The trailer (field count -1) has been read.
    done: bool,
}

impl CopyRows {
    /// Signature, flags and header extension length.
    const HEADER: usize = 11 + 4 + 4;

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
    pub fn next_row(&mut self) -> Result<Option<[i16; 3]>, String> {
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
        if fields != 3 {
            return Err(format!("COPY row has {fields} fields, expected 3"));
        }
        const ROW: usize = 2 + 3 * (4 + 2);
        if b.len() < ROW {
            return Ok(None);
        }
        let mut out = [0i16; 3];
        for (k, v) in out.iter_mut().enumerate() {
            let f = &b[2 + k * 6..2 + k * 6 + 6];
            if f[..4] != 2i32.to_be_bytes() {
                return Err("COPY field is not a non-null smallint".into());
            }
            *v = i16::from_be_bytes([f[4], f[5]]);
        }
        self.pos += ROW;
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binary COPY output of rows (1, 2, 3) and (-4, 5, 300), as PostgreSQL writes it.
    fn sample() -> Vec<u8> {
        let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
        out.extend(0u32.to_be_bytes());
        out.extend(0u32.to_be_bytes());
        for row in [[1i16, 2, 3], [-4, 5, 300]] {
            out.extend(3i16.to_be_bytes());
            for v in row {
                out.extend(2i32.to_be_bytes());
                out.extend(v.to_be_bytes());
            }
        }
        out.extend((-1i16).to_be_bytes());
        out
    }

    #[test]
    fn copy_rows_parse_across_any_chunking() {
        let data = sample();
        for chunk in [1, 2, 3, 7, data.len()] {
            let mut p = CopyRows::default();
            let mut rows = Vec::new();
            for c in data.chunks(chunk) {
                p.push(c);
                while let Some(r) = p.next_row().unwrap() {
                    rows.push(r);
                }
            }
            assert!(p.finished(), "chunk {chunk}");
            assert_eq!(rows, vec![[1, 2, 3], [-4, 5, 300]], "chunk {chunk}");
        }
    }

    #[test]
    fn copy_rows_refuse_other_shapes() {
        let mut data = sample();
        data[19..21].copy_from_slice(&2i16.to_be_bytes());
        let mut p = CopyRows::default();
        p.push(&data);
        assert!(p.next_row().is_err());
        let mut p = CopyRows::default();
        p.push(b"NOTCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0");
        assert!(p.next_row().is_err());
    }
}
