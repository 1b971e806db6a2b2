//! Record encoding (JSON lines, raw bytes) and streaming compression into a
//! growing output buffer that the upload layer cuts into parts.

use std::{io::Write, sync::Arc};

use crate::{
    config::{Compression, Format},
    gzip::{GzipPool, ParallelGzip},
    parquet_format::ParquetObject,
};

/// Turns one record value into the bytes of its line (without separator
/// handling for compression: that is the stream's job).
pub struct RecordEncoder {
    format: Format,
    separator: Vec<u8>,
    /// Values arrive as JSON the runtime's JsonConverter checked: checking
    /// again cost the worker 6.9–7.2 instead of 4.7–5.4 CPU-s per million
    /// 1 KiB records (dev/bench with that converter).
    values_are_checked_json: bool,
}

impl RecordEncoder {
    pub fn new(format: Format, separator: Vec<u8>, values_are_checked_json: bool) -> Self {
        RecordEncoder { format, separator, values_are_checked_json }
    }

    /// Appends the encoded record to `out`. `None` is a tombstone being
    /// written (behavior.on.null.values=write). Errors say why the value is
    /// not writable in this format.
    pub fn encode(&self, value: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), String> {
        match self.format {
            Format::Json => {
                let Some(value) = value else {
                    out.extend_from_slice(b"null\n");
                    return Ok(());
                };
                // The value is written as it came (no re-serialisation, so
                // key order and number spelling are kept) once it is known
                // to be one JSON document.
                if !self.values_are_checked_json {
                    connector_api::json::check(value).map_err(|e| {
                        format!(
                            "value is not JSON ({e}); format.class=json needs JSON values (use bytes for other data)"
                        )
                    })?;
                }
                let start = out.len();
                out.extend_from_slice(value);
                // Raw line breaks in a valid JSON document can only be
                // insignificant whitespace (strings escape them): turning them
                // into spaces keeps one record per line without changing the value.
                // Most values have none: a vectorised search first (the
                // byte-by-byte rewrite was ~10% of the worker's CPU in dev/bench).
                if memchr::memchr2(b'\n', b'\r', value).is_some() {
                    for b in &mut out[start..] {
                        if *b == b'\n' || *b == b'\r' {
                            *b = b' ';
                        }
                    }
                }
                out.push(b'\n');
                Ok(())
            }
            Format::Bytes => {
                out.extend_from_slice(value.unwrap_or_default());
                out.extend_from_slice(&self.separator);
                Ok(())
            }
            // Parquet rows go to the object's column buffers, not through lines.
            Format::Parquet => Ok(()),
        }
    }
}

/// A compressed byte stream whose output accumulates in a `Vec` that grows
/// as needed (no up-front allocation of a whole part).
pub enum Stream {
    Plain(Vec<u8>),
    Gzip(ParallelGzip),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Stream {
    /// `gzip` is the task's compression pool (needed for gzip only).
    pub fn new(compression: Compression, level: i32, gzip: Option<&Arc<GzipPool>>) -> std::io::Result<Self> {
        Ok(match compression {
            Compression::None => Stream::Plain(Vec::new()),
            Compression::Gzip => {
                let level = if level < 0 {
                    flate2::Compression::default()
                } else {
                    flate2::Compression::new(level.min(9) as u32)
                };
                let pool = gzip.ok_or_else(|| std::io::Error::other("no gzip threads started"))?;
                Stream::Gzip(ParallelGzip::new(Arc::clone(pool), level))
            }
            Compression::Zstd => {
                Stream::Zstd(zstd::stream::write::Encoder::new(Vec::new(), if level < 0 { 3 } else { level })?)
            }
        })
    }

    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(v) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
            Stream::Gzip(e) => e.write(bytes),
            Stream::Zstd(e) => e.write_all(bytes),
        }
    }

    /// Compressed bytes produced so far and not yet taken.
    pub fn pending(&mut self) -> std::io::Result<usize> {
        Ok(match self {
            Stream::Plain(v) => v.len(),
            Stream::Gzip(e) => e.pending()?,
            Stream::Zstd(e) => e.get_ref().len(),
        })
    }

    /// Takes the compressed bytes produced so far (a part's worth).
    pub fn take(&mut self) -> Vec<u8> {
        let mut part = match self {
            Stream::Plain(v) => std::mem::take(v),
            Stream::Gzip(e) => std::mem::take(e.output()),
            Stream::Zstd(e) => std::mem::take(e.get_mut()),
        };
        // The buffer grew by doubling: up to twice the part size would stay
        // allocated while the part uploads. One copy of a part is cheaper.
        part.shrink_to_fit();
        part
    }

    /// Ends the stream and returns the remaining bytes (trailers included).
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Stream::Plain(v) => Ok(v),
            Stream::Gzip(e) => e.finish(),
            Stream::Zstd(e) => e.finish(),
        }
    }
}

/// An object's content being produced: lines through a compressor, or a parquet file.
pub enum Body {
    // Boxed like Parquet: an open object per partition holds one of these.
    Lines(Box<Stream>),
    Parquet(Box<ParquetObject>),
}

impl Body {
    pub fn pending(&mut self) -> Result<usize, String> {
        match self {
            Body::Lines(s) => s.pending().map_err(|e| e.to_string()),
            Body::Parquet(p) => Ok(p.pending()),
        }
    }
    pub fn take(&mut self) -> Vec<u8> {
        match self {
            Body::Lines(s) => s.take(),
            Body::Parquet(p) => p.take(),
        }
    }
    pub fn finish(self) -> Result<Vec<u8>, String> {
        match self {
            Body::Lines(s) => s.finish().map_err(|e| e.to_string()),
            Body::Parquet(p) => p.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn json_lines_keep_values_and_reject_non_json() {
        let enc = RecordEncoder::new(Format::Json, vec![], false);
        let mut out = Vec::new();
        enc.encode(Some(br#"{"b":1,"a":"x\ny"}"#), &mut out).unwrap();
        enc.encode(Some(b"{\n \"a\": 2\n}"), &mut out).unwrap();
        enc.encode(None, &mut out).unwrap();
        assert_eq!(String::from_utf8(out.clone()).unwrap(), "{\"b\":1,\"a\":\"x\\ny\"}\n{  \"a\": 2 }\nnull\n");
        let err = enc.encode(Some(b"not json"), &mut out).unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
        // Invalid UTF-8 inside a string is not JSON either (serde_json's skip accepts it).
        let err = enc.encode(Some(b"{\"a\":\"\xc3\x28\"}"), &mut out).unwrap_err();
        assert!(err.contains("invalid UTF-8 at byte 6"), "{err}");
        assert!(out.ends_with(b"null\n"), "nothing of a bad record is written");
    }

    #[test]
    fn bytes_use_the_separator() {
        let enc = RecordEncoder::new(Format::Bytes, b"|".to_vec(), false);
        let mut out = Vec::new();
        enc.encode(Some(b"a"), &mut out).unwrap();
        enc.encode(Some(&[0, 255]), &mut out).unwrap();
        assert_eq!(out, b"a|\x00\xff|");
    }

    #[test]
    fn compressed_streams_split_into_parts_round_trip() {
        let pool = GzipPool::new().unwrap();
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let mut s = Stream::new(c, -1, Some(&pool)).unwrap();
            let mut all = Vec::new();
            let mut expected = Vec::new();
            for i in 0..20_000 {
                let line = format!("{{\"n\":{i}}}\n");
                expected.extend_from_slice(line.as_bytes());
                s.write(line.as_bytes()).unwrap();
                if s.pending().unwrap() > 4096 {
                    all.extend(s.take());
                }
            }
            all.extend(s.finish().unwrap());
            let mut decoded = Vec::new();
            match c {
                Compression::Gzip => {
                    flate2::read::GzDecoder::new(&all[..]).read_to_end(&mut decoded).unwrap();
                }
                Compression::Zstd => decoded = zstd::decode_all(&all[..]).unwrap(),
                Compression::None => decoded = all,
            }
            assert_eq!(decoded, expected, "{c:?}");
        }
    }
}
