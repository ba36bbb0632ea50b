//! What counts as a secret, and the keyed hash that lets a secret take part in a match without
//! being stored.
//!
//! Secrets never reach a file. Where a credential must take part in a cache key or a `Vary` match,
//! the stored form is HMAC-SHA256 under a random per-install key (32 bytes from the OS RNG, kept
//! in the database's `install_key` table, so it lives and dies with the data it protects): equal
//! inputs give equal tags, and nothing in the file reveals the value or allows an offline
//! dictionary check without the key.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{Connection, OptionalExtension};

/// Request headers that carry credentials: never stored, always part of the cache key.
pub(crate) const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// Response headers that set credentials: never stored, never replayed from the cache.
pub(crate) const CREDENTIAL_RESPONSE_HEADERS: [&str; 2] = ["set-cookie", "set-cookie2"];

/// The default query parameter names (compared case-insensitively) whose values are credentials
/// (`security.sensitive_query_params` adds more): shown `REDACTED` wherever a URL is shown, a
/// request carrying one is not written to the offline queue, and its cache key is a keyed hash.
pub(crate) const SENSITIVE_QUERY_PARAMS: [&str; 11] = [
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "token",
    "password",
    "secret",
    "client_secret",
    "sig",
    "signature",
];

/// Drops credential-setting headers (`Set-Cookie*`) and `sensitive` names (lower-case) from a
/// response's headers before they are stored.
pub(crate) fn storable_response_headers(
    headers: &HashMap<String, String>,
    sensitive: &[String],
) -> HashMap<String, String> {
    headers
        .iter()
        .filter(|(k, _)| is_storable_header(k, sensitive))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// May a header with this name be written to disk?
pub(crate) fn is_storable_header(name: &str, sensitive: &[String]) -> bool {
    let named = |n: &str| n.eq_ignore_ascii_case(name);
    !CREDENTIAL_RESPONSE_HEADERS.iter().copied().any(named)
        && !CREDENTIAL_HEADERS.iter().copied().any(named)
        && !sensitive.iter().map(String::as_str).any(named)
}

/// A text on its way out of the process (a log record for the app's listener) with what looks
/// like a credential replaced by `REDACTED`: the values of the sensitive query parameters, the
/// credential of an `Authorization`-style scheme (`Bearer …`, `Basic …`, `Token …`), and the value
/// after a credential header's name (`authorization: …`, `cookie=…`, `set-cookie: …`). The SDK
/// never logs these on purpose; this is the second line.
pub(crate) fn scrub(text: &str) -> String {
    let names: Vec<String> = SENSITIVE_QUERY_PARAMS.map(String::from).to_vec();
    let text = crate::http::redact_query_values(text, &names);
    let mut text = redact_after(&text, &["bearer ", "basic ", "token ", "digest "], false);
    let headers: Vec<String> = CREDENTIAL_HEADERS
        .iter()
        .chain(CREDENTIAL_RESPONSE_HEADERS.iter())
        .flat_map(|h| [format!("{h}:"), format!("{h}=")])
        .collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    text = redact_after(&text, &headers, true);
    text
}

/// Replaces what follows each (ASCII case-insensitive) `marker` in `text` — one token, or with
/// `to_line_end` everything up to the end of the line or a quote — by `REDACTED`.
fn redact_after(text: &str, markers: &[&str], to_line_end: bool) -> String {
    let lower = text.to_ascii_lowercase(); // same byte offsets: ASCII lower-casing only
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let found = markers
            .iter()
            .filter_map(|m| lower[i..].find(m).map(|at| (i + at, m.len())))
            .min();
        let Some((at, len)) = found else { break };
        let mut start = at + len;
        out.push_str(&text[i..start]);
        let rest = &text[start..];
        let skipped = rest.len() - rest.trim_start_matches([' ', '"', '\'']).len();
        out.push_str(&rest[..skipped]);
        start += skipped;
        let rest = &text[start..];
        let end = rest
            .find(|c: char| {
                if to_line_end {
                    c == '\n' || c == '\r' || c == '"' || c == '\''
                } else {
                    c.is_whitespace() || "\"',;)]}".contains(c)
                }
            })
            .unwrap_or(rest.len());
        if end > 0 {
            out.push_str(crate::http::REDACTED);
        }
        i = start + end;
    }
    out.push_str(&text[i.min(text.len())..]);
    out
}

/// Most tags [`InstallKey::tag`] remembers; at the bound the memo starts over.
const TAG_MEMO_MAX: usize = 256;

/// The per-install HMAC key.
pub(crate) struct InstallKey {
    key: hmac::Key,
    /// Recent tags by their input: a hot cache lookup tags the same request again and again, and
    /// a map lookup costs a fraction of an HMAC. Memory only (never written anywhere), bounded by
    /// [`TAG_MEMO_MAX`], emptied by [`InstallKey::forget`] (a cleared cache or user) and gone
    /// with the key.
    memo: Mutex<HashMap<Vec<u8>, String>>,
}

impl std::fmt::Debug for InstallKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstallKey(..)")
    }
}

impl InstallKey {
    /// Reads the key of this database, creating it (from the OS RNG) on first use. Two clients
    /// opening the same file at once agree: the first insert wins, both read it back.
    pub(crate) fn load_or_create(conn: &Connection) -> Result<InstallKey, String> {
        let read = |c: &Connection| -> rusqlite::Result<Option<Vec<u8>>> {
            c.query_row("SELECT key FROM install_key WHERE id = 0", [], |r| r.get(0))
                .optional()
        };
        let existing = read(conn).map_err(|e| format!("reading the install key: {e}"))?;
        let bytes = match existing {
            Some(k) if k.len() == 32 => k,
            _ => {
                let mut fresh = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut fresh)
                    .map_err(|_| "the OS random number generator failed".to_string())?;
                conn.execute(
                    "INSERT OR REPLACE INTO install_key (id, key) VALUES (0, ?1)",
                    [&fresh[..]],
                )
                .map_err(|e| format!("storing the install key: {e}"))?;
                read(conn)
                    .map_err(|e| format!("reading the install key: {e}"))?
                    .ok_or_else(|| "the install key vanished".to_string())?
            }
        };
        Ok(InstallKey::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8]) -> InstallKey {
        InstallKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
            memo: Mutex::default(),
        }
    }

    /// Forgets the remembered tags (their inputs may hold a logged-out user's credentials).
    pub(crate) fn forget(&self) {
        self.memo
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many tags are remembered (tests).
    #[cfg(test)]
    pub(crate) fn remembered(&self) -> usize {
        self.memo
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// A key held in memory only (a store whose file is still being created, or could not be).
    pub(crate) fn ephemeral() -> InstallKey {
        let mut bytes = [0u8; 32];
        // Nothing is stored under this key; should the RNG fail, a zero key tags nothing at rest.
        let _ = SystemRandom::new().fill(&mut bytes);
        InstallKey::from_bytes(&bytes)
    }

    /// Hex HMAC-SHA256 of `parts` (length-prefixed, so part boundaries cannot be shifted) under
    /// `domain` (so a tag of one kind never equals a tag of another).
    pub(crate) fn tag(&self, domain: &str, parts: &[&str]) -> String {
        let len = parts.iter().map(|p| p.len() + 8).sum::<usize>() + domain.len() + 8;
        let mut input = Vec::with_capacity(len);
        for p in std::iter::once(&domain).chain(parts) {
            input.extend_from_slice(&(p.len() as u64).to_be_bytes());
            input.extend_from_slice(p.as_bytes());
        }
        let mut memo = self.memo.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tag) = memo.get(&input) {
            return tag.clone();
        }
        let tag = hex(hmac::sign(&self.key, &input).as_ref());
        if memo.len() >= TAG_MEMO_MAX {
            memo.clear();
        }
        memo.insert(input, tag.clone());
        tag
    }
}

/// Lower-case hex of `bytes` (a tag is computed for every cache lookup: no formatter per byte).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.extend_from_slice(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]);
    }
    String::from_utf8(out).unwrap_or_default() // ASCII digits only: always valid
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lower_case_two_digits_per_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa0, 0xff, 0x5c]), "000fa0ff5c");
        assert_eq!(super::hex(&[]), "");
    }

    use super::*;

    fn key() -> InstallKey {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE install_key (id INTEGER PRIMARY KEY, key BLOB NOT NULL)")
            .unwrap();
        let k = InstallKey::load_or_create(&c).unwrap();
        let again = InstallKey::load_or_create(&c).unwrap();
        assert_eq!(k.tag("d", &["x"]), again.tag("d", &["x"]), "stable");
        k
    }

    #[test]
    fn tags_are_keyed_domain_separated_and_unambiguous() {
        let k = key();
        let t = k.tag("cache", &["Bearer A"]);
        assert_eq!(t.len(), 64);
        assert!(!t.contains("Bearer"));
        assert_ne!(t, k.tag("vary", &["Bearer A"]));
        assert_ne!(t, k.tag("cache", &["Bearer B"]));
        assert_ne!(k.tag("d", &["ab", "c"]), k.tag("d", &["a", "bc"]));
        // Another install's key gives other tags.
        assert_ne!(t, key().tag("cache", &["Bearer A"]));
    }

    #[test]
    fn scrubbing_removes_what_looks_like_a_credential_and_keeps_the_rest() {
        let cases = [
            (
                "GET /x?access_token=S3CR3T&page=2 failed",
                "GET /x?access_token=REDACTED&page=2 failed",
            ),
            ("Authorization: Bearer S3CR3T", "Authorization: REDACTED"),
            ("header Bearer S3CR3T, next", "header Bearer REDACTED, next"),
            (
                "cookie=sid=S3CR3T; x=1\nnext line",
                "cookie=REDACTED\nnext line",
            ),
            ("set-cookie: sid=S3CR3T", "set-cookie: REDACTED"),
            ("nothing secret here: 42 ms", "nothing secret here: 42 ms"),
            ("Ünïcode BEARER S3CR3T ok", "Ünïcode BEARER REDACTED ok"),
        ];
        for (raw, want) in cases {
            assert_eq!(scrub(raw), want, "{raw}");
        }
        assert_eq!(scrub("ends with bearer "), "ends with bearer ");
    }

    #[test]
    fn set_cookie_and_credentials_are_not_storable() {
        let h = HashMap::from([
            ("set-cookie".to_string(), "s=1".to_string()),
            ("Set-Cookie2".to_string(), "s=1".to_string()),
            ("x-secret".to_string(), "v".to_string()),
            ("etag".to_string(), "\"1\"".to_string()),
        ]);
        let kept = storable_response_headers(&h, &["x-secret".to_string()]);
        assert_eq!(kept.keys().collect::<Vec<_>>(), vec!["etag"]);
    }
}
