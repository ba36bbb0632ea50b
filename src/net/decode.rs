//! Transparent response decompression at the body-read layer: the transport asks for the codings
//! listed in [`ACCEPT_ENCODING`] (unless the app set `Accept-Encoding` itself: then the body is
//! passed through as sent), and a body that arrives with one of them is decoded as it streams in,
//! into one buffer bounded by the attempt's limit — the bound applies to the **decoded** bytes, so
//! a small compressed body that inflates past it (a "gzip bomb") fails as `TooLarge` with memory
//! bounded by the limit plus the decoder's window. The caller (and the cache) sees the decoded
//! body, without `Content-Encoding`/`Content-Length`.
//!
//! gzip and deflate are always on (flate2 over miniz_oxide, pure Rust); brotli with the `brotli`
//! cargo feature (its cost is in the README's size table).

use std::io::{self, Write};

/// The `Accept-Encoding` the transport sends when the app set none.
#[cfg(not(feature = "brotli"))]
pub(crate) const ACCEPT_ENCODING: &str = "gzip, deflate";
/// The `Accept-Encoding` the transport sends when the app set none.
#[cfg(feature = "brotli")]
pub(crate) const ACCEPT_ENCODING: &str = "gzip, deflate, br";

/// Why a body could not be decoded.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// The decoded body passed the limit.
    TooLarge,
    /// The compressed data is corrupt.
    Corrupt(String),
}

/// Collects decoded bytes up to a limit: past it, either fails (`TooLarge`) or (truncating) keeps
/// the first `limit` bytes and swallows the rest.
struct Bounded {
    body: Vec<u8>,
    limit: u64,
    truncate: bool,
    over: bool,
}

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.limit.saturating_sub(self.body.len() as u64);
        if data.len() as u64 > room {
            self.over = true;
            if !self.truncate {
                return Err(io::Error::other("over the limit"));
            }
            self.body.extend_from_slice(&data[..room as usize]);
        } else {
            self.body.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Inner {
    Gzip(flate2::write::MultiGzDecoder<Bounded>),
    Deflate(flate2::write::ZlibDecoder<Bounded>),
    #[cfg(feature = "brotli")]
    Brotli(Box<brotli_decompressor::DecompressorWriter<Bounded>>),
}

/// A streaming decoder for one response body.
pub(crate) struct Decoder {
    inner: Inner,
    /// Compressed bytes fed so far.
    wire: u64,
}

impl Decoder {
    /// A decoder for a response's `Content-Encoding` value, or `None` when it is not one this
    /// transport asked for (identity, or a coding the app must handle).
    pub(crate) fn for_coding(coding: &str, limit: u64, truncate: bool) -> Option<Decoder> {
        let sink = Bounded {
            body: Vec::new(),
            limit,
            truncate,
            over: false,
        };
        let inner = match coding.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Inner::Gzip(flate2::write::MultiGzDecoder::new(sink)),
            "deflate" => Inner::Deflate(flate2::write::ZlibDecoder::new(sink)),
            #[cfg(feature = "brotli")]
            "br" => Inner::Brotli(Box::new(brotli_decompressor::DecompressorWriter::new(
                sink, 4096,
            ))),
            _ => return None,
        };
        Some(Decoder { inner, wire: 0 })
    }

    /// Does this read keep the first bytes instead of failing past the limit?
    pub(crate) fn truncating(&self) -> bool {
        self.sink().truncate
    }

    fn sink(&self) -> &Bounded {
        match &self.inner {
            Inner::Gzip(d) => d.get_ref(),
            Inner::Deflate(d) => d.get_ref(),
            #[cfg(feature = "brotli")]
            Inner::Brotli(d) => d.get_ref(),
        }
    }

    fn error(&self, e: io::Error) -> DecodeError {
        if self.sink().over {
            DecodeError::TooLarge
        } else {
            DecodeError::Corrupt(e.to_string())
        }
    }

    /// Feeds the next compressed chunk. `Ok(false)`: the (truncating) limit is reached, stop
    /// reading.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<bool, DecodeError> {
        self.wire += chunk.len() as u64;
        // Flushed per chunk: what was decoded reaches the bound now, not a buffer later.
        let written = match &mut self.inner {
            Inner::Gzip(d) => d.write_all(chunk).and_then(|()| d.flush()),
            Inner::Deflate(d) => d.write_all(chunk).and_then(|()| d.flush()),
            #[cfg(feature = "brotli")]
            Inner::Brotli(d) => d.write_all(chunk).and_then(|()| d.flush()),
        };
        written.map_err(|e| self.error(e))?;
        Ok(!self.sink().over)
    }

    /// Ends the stream: the decoded body and the compressed byte count. A stream cut short (no
    /// gzip trailer) is corrupt unless the body was truncated on purpose.
    pub(crate) fn finish(self) -> Result<(Vec<u8>, u64), DecodeError> {
        let wire = self.wire;
        let finished = match self.inner {
            Inner::Gzip(d) => d.finish(),
            Inner::Deflate(d) => d.finish(),
            #[cfg(feature = "brotli")]
            Inner::Brotli(d) => d.into_inner().map_err(|_| io::Error::other("truncated")),
        };
        match finished {
            Ok(sink) => Ok((sink.body, wire)),
            Err(e) => Err(DecodeError::Corrupt(e.to_string())),
        }
    }

    /// The body so far, for a truncating read that stopped at its limit.
    pub(crate) fn into_truncated(self) -> (Vec<u8>, u64) {
        let wire = self.wire;
        let sink = match self.inner {
            Inner::Gzip(d) => d.finish().ok(),
            Inner::Deflate(d) => d.finish().ok(),
            #[cfg(feature = "brotli")]
            Inner::Brotli(d) => d.into_inner().ok(),
        };
        (sink.map(|s| s.body).unwrap_or_default(), wire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_decodes_in_chunks_and_counts_the_wire_bytes() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
        let z = gzip(&data);
        let mut d = Decoder::for_coding("gzip", 1 << 20, false).unwrap();
        for chunk in z.chunks(100) {
            assert!(d.feed(chunk).unwrap());
        }
        let (body, wire) = d.finish().unwrap();
        assert_eq!(body, data);
        assert_eq!(wire, z.len() as u64);
    }

    #[test]
    fn a_body_that_inflates_past_the_limit_is_too_large() {
        let z = gzip(&vec![0u8; 1 << 20]);
        let mut d = Decoder::for_coding("GZIP", 1000, false).unwrap();
        assert!(matches!(d.feed(&z), Err(DecodeError::TooLarge)));
    }

    #[test]
    fn a_truncating_read_keeps_the_first_bytes() {
        let z = gzip(&[7u8; 5000]);
        let mut d = Decoder::for_coding("gzip", 10, true).unwrap();
        assert!(!d.feed(&z).unwrap());
        assert_eq!(d.into_truncated().0, vec![7u8; 10]);
    }

    #[test]
    fn corrupt_or_cut_streams_are_errors_and_unknown_codings_pass_through() {
        let mut d = Decoder::for_coding("gzip", 1000, false).unwrap();
        assert!(matches!(
            d.feed(b"not gzip at all"),
            Err(DecodeError::Corrupt(_))
        ));
        let z = gzip(b"hello hello hello");
        let mut d = Decoder::for_coding("gzip", 1000, false).unwrap();
        d.feed(&z[..z.len() - 4]).unwrap();
        assert!(matches!(d.finish(), Err(DecodeError::Corrupt(_))));
        assert!(Decoder::for_coding("identity", 10, false).is_none());
        assert!(Decoder::for_coding("compress", 10, false).is_none());
    }
}
