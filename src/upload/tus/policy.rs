//! The tus 1.0 protocol as pure decisions (no I/O, unit-tested): the headers a request carries,
//! what the server's `OPTIONS` offers, `Upload-Metadata`, and what each answer means. The loop that
//! sends is [`super`]; it runs every request through the network's one attempt loop.
//!
//! Rules (<https://tus.io/protocols/resumable-upload>):
//! - every request but `OPTIONS` carries `Tus-Resumable: 1.0.0`; a server is tus if its `OPTIONS`
//!   answer lists `1.0.0` in `Tus-Version` (extensions from `Tus-Extension`, bounds from
//!   `Tus-Max-Size`, checksum algorithms from `Tus-Checksum-Algorithm`);
//! - every offset the server sends is range-checked: digits only, at most the file size, and
//!   never beyond the bytes this client ever sent ([`judge_offset`]): a server that claims more is
//!   lying (or another client wrote to the upload) and the upload stops with a typed error rather
//!   than leaving a corrupt file;
//! - `409` on a `PATCH` (offset mismatch) → ask again with `HEAD` and continue from there;
//!   `404`/`410` (and `403` on `HEAD`, which tusd uses for expired uploads) → the upload is gone:
//!   create it anew (bounded by `upload.max_restarts`); an `Upload-Expires` in the past → the same
//!   without asking;
//! - `5xx`, `408`, `429` and broken connections → ask with `HEAD`, then resend from the server's
//!   offset; other `4xx` are final;
//! - checksums: when the server offers the `checksum` extension with `sha1` (or, failing that,
//!   `sha256`) in `Tus-Checksum-Algorithm`, every `PATCH` carries `Upload-Checksum: <algorithm>
//!   <base64 digest of its body>` ([`checksum_algorithm`], [`checksum_header`]); a `460 Checksum
//!   Mismatch` (the server discarded the chunk) → that chunk is sent once more, a second `460` for
//!   the same chunk → `UploadChecksumMismatch` ([`on_checksum_mismatch`]).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::Engine;

use crate::error::ApiError;
use crate::http::{parse_http_date, parse_retry_after};

/// The protocol version spoken.
pub(crate) const TUS_VERSION: &str = "1.0.0";
/// The `Content-Type` of every body carrying file bytes.
pub(crate) const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";
/// Longest `Upload-Metadata` header sent (keys and base64 values): servers cap heads at 8-64 KiB.
pub(crate) const MAX_METADATA_BYTES: usize = 4096;

/// What a tus server offers (its `OPTIONS` answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Capabilities {
    /// `Tus-Extension`, lower-case.
    pub extensions: Vec<String>,
    /// `Tus-Max-Size`, if announced.
    pub max_size: Option<u64>,
    /// `Tus-Checksum-Algorithm`, lower-case.
    pub checksum_algorithms: Vec<String>,
}

impl Capabilities {
    /// Does the server offer `extension`?
    pub(crate) fn offers(&self, extension: &str) -> bool {
        self.extensions.iter().any(|e| e == extension)
    }
}

fn header<'a>(headers: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    crate::http::header_value(headers, name).map(str::trim)
}

fn list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .take(32)
        .collect()
}

/// A non-negative decimal number as tus sends it (digits only, no sign, at most `i64::MAX`).
pub(crate) fn parse_number(value: Option<&str>) -> Option<u64> {
    let v = value?.trim();
    if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok().filter(|n| *n <= i64::MAX as u64)
}

/// The server's `OPTIONS` answer: `Some` if it speaks tus 1.0.
pub(crate) fn capabilities(status: u16, headers: &HashMap<String, String>) -> Option<Capabilities> {
    if !(200..300).contains(&status) {
        return None;
    }
    let versions = list(header(headers, "tus-version"));
    if !versions.iter().any(|v| v == TUS_VERSION) {
        return None;
    }
    Some(Capabilities {
        extensions: list(header(headers, "tus-extension")),
        max_size: parse_number(header(headers, "tus-max-size")),
        checksum_algorithms: list(header(headers, "tus-checksum-algorithm")),
    })
}

/// `Upload-Metadata`: `key base64(value)` pairs, comma-separated, sorted by key. Keys must be
/// non-empty ASCII without spaces or commas; the whole header at most [`MAX_METADATA_BYTES`].
pub(crate) fn encode_metadata(pairs: &HashMap<String, String>) -> Result<String, ApiError> {
    let mut keys: Vec<&String> = pairs.keys().collect();
    keys.sort();
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        if k.is_empty()
            || !k
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b',' && b != b' ')
        {
            return Err(ApiError::invalid_request(format!(
                "upload metadata key {k:?} must be non-empty ASCII without spaces or commas"
            )));
        }
        let v = base64::engine::general_purpose::STANDARD.encode(pairs[k].as_bytes());
        out.push(if v.is_empty() {
            k.clone()
        } else {
            format!("{k} {v}")
        });
    }
    let header = out.join(",");
    if header.len() > MAX_METADATA_BYTES {
        return Err(ApiError::invalid_request(format!(
            "upload metadata is {} bytes encoded, more than {MAX_METADATA_BYTES}",
            header.len()
        )));
    }
    Ok(header)
}

/// The inverse of [`encode_metadata`].
#[cfg(test)]
pub(crate) fn decode_metadata(header: &str) -> HashMap<String, String> {
    header
        .split(',')
        .filter_map(|pair| {
            let mut it = pair.trim().splitn(2, ' ');
            let k = it.next().filter(|k| !k.is_empty())?;
            let v = it.next().unwrap_or("");
            let v = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
            Some((k.to_string(), String::from_utf8_lossy(&v).into_owned()))
        })
        .collect()
}

/// Why an offset from the server cannot be right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OffsetProblem {
    /// No `Upload-Offset`, or not a number.
    Missing,
    /// More than the file has.
    BeyondSize { offset: u64, size: u64 },
    /// More than this client ever sent.
    BeyondSent { offset: u64, sent: u64 },
    /// A `PATCH` answer that went backwards, or beyond what the `PATCH` carried.
    OutsidePatch { offset: u64, from: u64, to: u64 },
}

impl std::fmt::Display for OffsetProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OffsetProblem::Missing => write!(f, "no valid Upload-Offset in the answer"),
            OffsetProblem::BeyondSize { offset, size } => {
                write!(
                    f,
                    "Upload-Offset {offset} is beyond the file's {size} bytes"
                )
            }
            OffsetProblem::BeyondSent { offset, sent } => write!(
                f,
                "Upload-Offset {offset} is beyond the {sent} bytes this client ever sent"
            ),
            OffsetProblem::OutsidePatch { offset, from, to } => write!(
                f,
                "Upload-Offset {offset} after a PATCH of bytes {from}..{to}"
            ),
        }
    }
}

/// The offset a `HEAD` (or a creation) reported, checked: at most `size`, at most `sent_high` (the
/// highest byte this client ever handed to the transport for this upload).
pub(crate) fn judge_offset(
    value: Option<&str>,
    size: u64,
    sent_high: u64,
) -> Result<u64, OffsetProblem> {
    let offset = parse_number(value).ok_or(OffsetProblem::Missing)?;
    if offset > size {
        return Err(OffsetProblem::BeyondSize { offset, size });
    }
    if offset > sent_high {
        return Err(OffsetProblem::BeyondSent {
            offset,
            sent: sent_high,
        });
    }
    Ok(offset)
}

/// The offset a `PATCH` of bytes `from..to` was answered with, checked: within `from..=to`.
/// (`from` itself is allowed: a server may accept a request and store nothing.)
pub(crate) fn judge_patch_offset(
    value: Option<&str>,
    from: u64,
    to: u64,
) -> Result<u64, OffsetProblem> {
    let offset = parse_number(value).ok_or(OffsetProblem::Missing)?;
    if offset < from || offset > to {
        return Err(OffsetProblem::OutsidePatch { offset, from, to });
    }
    Ok(offset)
}

/// How many bytes the next `PATCH` carries.
pub(crate) fn chunk_len(offset: u64, size: u64, chunk: u64) -> u64 {
    size.saturating_sub(offset).min(chunk.max(1))
}

/// What an answer to a `HEAD` or `PATCH` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 2xx.
    Ok,
    /// `409`: the offset we sent is not the server's; ask with `HEAD`.
    Conflict,
    /// The upload does not exist any more (`404`, `410`; `403` on `HEAD`): create anew.
    Gone,
    /// Worth another try after a backoff (then `HEAD` first).
    Retry { retry_after: Option<Duration> },
    /// Any other status: the upload fails with it.
    Final,
}

/// Classifies `status` (of a `HEAD` when `head`, else of a `PATCH`/`POST`).
pub(crate) fn answer(status: u16, headers: &HashMap<String, String>, head: bool) -> Answer {
    match status {
        200..=299 => Answer::Ok,
        409 => Answer::Conflict,
        404 | 410 => Answer::Gone,
        403 if head => Answer::Gone,
        408 | 429 | 460 | 500..=599 => Answer::Retry {
            retry_after: header(headers, "retry-after")
                .and_then(|v| parse_retry_after(v, SystemTime::now())),
        },
        _ => Answer::Final,
    }
}

/// A checksum algorithm both sides speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChecksumAlgorithm {
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    /// Its name in `Upload-Checksum`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Sha1 => "sha1",
            ChecksumAlgorithm::Sha256 => "sha256",
        }
    }

    /// The `ring` digest computing it.
    pub(crate) fn digest(self) -> &'static ring::digest::Algorithm {
        match self {
            ChecksumAlgorithm::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            ChecksumAlgorithm::Sha256 => &ring::digest::SHA256,
        }
    }
}

/// The algorithm each `PATCH` is checksummed with: `None` unless the server offers the `checksum`
/// extension and lists `sha1` (the common one) or `sha256` in `Tus-Checksum-Algorithm`.
pub(crate) fn checksum_algorithm(caps: &Capabilities) -> Option<ChecksumAlgorithm> {
    if !caps.offers("checksum") {
        return None;
    }
    let listed = |name: &str| caps.checksum_algorithms.iter().any(|a| a == name);
    if listed("sha1") {
        Some(ChecksumAlgorithm::Sha1)
    } else if listed("sha256") {
        Some(ChecksumAlgorithm::Sha256)
    } else {
        None
    }
}

/// `Upload-Checksum` for a body with `digest`: `<algorithm> <base64 digest>`.
pub(crate) fn checksum_header(algorithm: ChecksumAlgorithm, digest: &[u8]) -> String {
    format!(
        "{} {}",
        algorithm.name(),
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The status a tus server answers a `PATCH` whose body does not match its `Upload-Checksum`.
pub(crate) const CHECKSUM_MISMATCH: u16 = 460;

/// What a `460` for the chunk at `offset` leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChecksumVerdict {
    /// Send the chunk once more.
    Resend,
    /// The same chunk failed its checksum twice: stop with `UploadChecksumMismatch`.
    GiveUp,
}

/// A `460` for the chunk at `offset`; `last_mismatch_at` is the offset of the chunk the previous
/// `460` was for (if any).
pub(crate) fn on_checksum_mismatch(last_mismatch_at: Option<u64>, offset: u64) -> ChecksumVerdict {
    if last_mismatch_at == Some(offset) {
        ChecksumVerdict::GiveUp
    } else {
        ChecksumVerdict::Resend
    }
}

/// `Upload-Expires` (an HTTP date) as Unix milliseconds.
pub(crate) fn expires_at_ms(headers: &HashMap<String, String>) -> Option<i64> {
    let at = parse_http_date(header(headers, "upload-expires")?)?;
    let ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(ms).ok()
}

/// Has an upload that expires at `expires_at_ms` expired at `now_ms`?
pub(crate) fn expired(expires_at_ms: Option<i64>, now_ms: i64) -> bool {
    expires_at_ms.is_some_and(|at| now_ms >= at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn discovery_needs_version_1_0_0() {
        let caps = capabilities(
            204,
            &h(&[
                ("tus-version", "1.0.0,0.2.2"),
                ("tus-extension", "creation, Termination,expiration"),
                ("tus-max-size", "1073741824"),
            ]),
        )
        .unwrap();
        assert!(caps.offers("creation") && caps.offers("termination"));
        assert!(!caps.offers("checksum"));
        assert_eq!(caps.max_size, Some(1 << 30));
        assert_eq!(capabilities(204, &h(&[("tus-version", "0.2.2")])), None);
        assert_eq!(capabilities(200, &h(&[])), None);
        assert_eq!(capabilities(404, &h(&[("tus-version", "1.0.0")])), None);
        let odd = capabilities(204, &h(&[("tus-version", "1.0.0"), ("tus-max-size", "-5")]));
        assert_eq!(odd.unwrap().max_size, None, "a negative size is ignored");
    }

    #[test]
    fn metadata_round_trips_sorted_and_base64() {
        let m = HashMap::from([
            ("title".to_string(), "Été, à la plage".to_string()),
            ("filename".to_string(), "v.mp4".to_string()),
            ("empty".to_string(), String::new()),
        ]);
        let enc = encode_metadata(&m).unwrap();
        assert!(enc.starts_with("empty,filename di5tcDQ=,title "), "{enc}");
        assert_eq!(decode_metadata(&enc), m);
        for bad in ["", "a b", "a,b", "é"] {
            let m = HashMap::from([(bad.to_string(), "x".to_string())]);
            assert!(encode_metadata(&m).is_err(), "{bad:?}");
        }
        let big = HashMap::from([("k".to_string(), "x".repeat(MAX_METADATA_BYTES))]);
        assert!(encode_metadata(&big).is_err());
    }

    #[test]
    fn offsets_are_range_checked() {
        assert_eq!(judge_offset(Some("10"), 100, 50), Ok(10));
        assert_eq!(judge_offset(Some(" 50 "), 100, 50), Ok(50));
        assert_eq!(
            judge_offset(Some("60"), 100, 50),
            Err(OffsetProblem::BeyondSent {
                offset: 60,
                sent: 50
            })
        );
        assert_eq!(
            judge_offset(Some("101"), 100, 200),
            Err(OffsetProblem::BeyondSize {
                offset: 101,
                size: 100
            })
        );
        for bad in [
            None,
            Some(""),
            Some("-1"),
            Some("+3"),
            Some("1e3"),
            Some("99999999999999999999"),
        ] {
            assert_eq!(
                judge_offset(bad, 100, 100),
                Err(OffsetProblem::Missing),
                "{bad:?}"
            );
        }
        assert_eq!(judge_patch_offset(Some("30"), 10, 30), Ok(30));
        assert_eq!(judge_patch_offset(Some("10"), 10, 30), Ok(10));
        assert!(judge_patch_offset(Some("31"), 10, 30).is_err());
        assert!(judge_patch_offset(Some("9"), 10, 30).is_err());
    }

    #[test]
    fn chunks_are_bounded() {
        assert_eq!(chunk_len(0, 100, 30), 30);
        assert_eq!(chunk_len(90, 100, 30), 10);
        assert_eq!(chunk_len(100, 100, 30), 0);
        assert_eq!(chunk_len(0, 100, 0), 1);
    }

    #[test]
    fn answers() {
        let none = h(&[]);
        assert_eq!(answer(204, &none, false), Answer::Ok);
        assert_eq!(answer(409, &none, false), Answer::Conflict);
        assert_eq!(answer(404, &none, false), Answer::Gone);
        assert_eq!(answer(410, &none, true), Answer::Gone);
        assert_eq!(answer(403, &none, true), Answer::Gone);
        assert_eq!(answer(403, &none, false), Answer::Final);
        assert_eq!(answer(400, &none, false), Answer::Final);
        assert_eq!(answer(413, &none, false), Answer::Final);
        for s in [408, 429, 460, 500, 503] {
            assert!(
                matches!(answer(s, &none, false), Answer::Retry { .. }),
                "{s}"
            );
        }
        assert_eq!(
            answer(503, &h(&[("Retry-After", "3")]), false),
            Answer::Retry {
                retry_after: Some(Duration::from_secs(3))
            }
        );
    }

    #[test]
    fn checksums_only_where_offered_sha1_first() {
        let caps = |ext: &str, algs: &str| {
            capabilities(
                204,
                &h(&[
                    ("tus-version", "1.0.0"),
                    ("tus-extension", ext),
                    ("tus-checksum-algorithm", algs),
                ]),
            )
            .unwrap()
        };
        let sha1 = Some(ChecksumAlgorithm::Sha1);
        assert_eq!(
            checksum_algorithm(&caps("creation,checksum", "md5,SHA1")),
            sha1
        );
        assert_eq!(
            checksum_algorithm(&caps("checksum", "sha256, sha1")),
            sha1,
            "sha1 when both are offered"
        );
        assert_eq!(
            checksum_algorithm(&caps("checksum", "md5,sha256")),
            Some(ChecksumAlgorithm::Sha256)
        );
        assert_eq!(checksum_algorithm(&caps("checksum", "md5,crc32")), None);
        assert_eq!(
            checksum_algorithm(&caps("creation", "sha1")),
            None,
            "algorithms without the extension"
        );
        // The digest of "hello" (RFC 3174 tools: aaf4c61d…), base64 as tus sends it.
        let d = ring::digest::digest(ChecksumAlgorithm::Sha1.digest(), b"hello");
        assert_eq!(
            checksum_header(ChecksumAlgorithm::Sha1, d.as_ref()),
            "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00="
        );
    }

    #[test]
    fn a_checksum_mismatch_is_resent_once_per_chunk() {
        assert_eq!(on_checksum_mismatch(None, 0), ChecksumVerdict::Resend);
        assert_eq!(on_checksum_mismatch(Some(0), 0), ChecksumVerdict::GiveUp);
        assert_eq!(
            on_checksum_mismatch(Some(0), 65536),
            ChecksumVerdict::Resend,
            "a later chunk gets its own second chance"
        );
    }

    #[test]
    fn expiration() {
        let hs = h(&[("upload-expires", "Wed, 25 Jun 2025 10:00:00 GMT")]);
        let at = expires_at_ms(&hs).unwrap();
        assert_eq!(at, 1_750_845_600_000);
        assert!(expired(Some(at), at));
        assert!(!expired(Some(at), at - 1));
        assert!(!expired(None, i64::MAX));
        assert_eq!(expires_at_ms(&h(&[("upload-expires", "soon")])), None);
    }
}
