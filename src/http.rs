//! HTTP helpers every layer shares, one place each: URL joining and backend-URL parsing, header
//! conversion, HTTP dates and `Retry-After`. No policy and no I/O.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;

use crate::error::ApiError;
use crate::types::QueryParam;

/// Parses a backend base URL: http(s), a host, no query or fragment; a trailing `/` is dropped.
pub(crate) fn parse_backend_url(raw: &str) -> Result<Url, ApiError> {
    // The URL parser silently strips tabs and newlines inside a URL: refuse them instead.
    if raw.trim().chars().any(char::is_control) {
        return Err(ApiError::invalid_config(format!(
            "backend URL {raw:?} contains control characters"
        )));
    }
    // The shipped library maps host names to ASCII without Unicode tables (`idna_adapter` 1.0, about
    // 135 KB less): an internationalised host is refused with its ASCII form to use instead.
    if let Some(ascii) = ascii_host_hint(raw.trim()) {
        return Err(ApiError::invalid_config(format!(
            "backend URL {raw:?} has a non-ASCII host name: write it in its ASCII (punycode) form, \
             {ascii}"
        )));
    }
    let url = Url::parse(raw.trim()).map_err(|e| {
        ApiError::invalid_config(format!("backend URL {raw:?} is not a valid URL: {e}"))
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ApiError::invalid_config(format!(
            "backend URL {raw:?} must start with http:// or https://"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid_config(format!(
            "backend URL {raw:?} has no host"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ApiError::invalid_config(format!(
            "backend URL {raw:?} must not carry a query or fragment"
        )));
    }
    if url.cannot_be_a_base() {
        return Err(ApiError::invalid_config(format!(
            "backend URL {raw:?} cannot be a base URL"
        )));
    }
    Ok(url)
}

/// For a URL whose host name is not ASCII, the host in ASCII: each non-ASCII label lower-cased and
/// punycode-encoded with its `xn--` prefix (RFC 3492; not the full UTS #46 mapping, so a hint).
fn ascii_host_hint(raw: &str) -> Option<String> {
    let rest = raw.split_once("://").map_or(raw, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    if host.is_ascii() {
        return None;
    }
    let labels: Vec<String> = host
        .split('.')
        .map(|label| {
            if label.is_ascii() {
                label.to_ascii_lowercase()
            } else {
                idna::punycode::encode_str(&label.to_lowercase())
                    .map_or_else(|| label.to_owned(), |p| format!("xn--{p}"))
            }
        })
        .collect();
    Some(labels.join("."))
}

/// Is this path segment a dot segment (`.` or `..`), literally or percent-encoded (`%2e`, `%2E%2e`, …)?
fn is_dot_segment(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    let decoded = lower.replace("%2e", ".");
    decoded == "." || decoded == ".."
}

/// What replaces a secret wherever a URL or an error text is shown.
pub(crate) const REDACTED: &str = "REDACTED";

/// A URL as shown to people (errors, status, logs): no userinfo, and the values of the `sensitive`
/// query parameters (lower-case names) replaced by [`REDACTED`].
pub(crate) fn display_url(url: &Url, sensitive: &[String]) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    redact_query_values(shown.as_str(), sensitive)
}

/// Replaces the values of `name=value` pairs whose (case-insensitive) name is in `sensitive`
/// (lower-case) by [`REDACTED`], wherever they appear in `text` after a `?` or `&`.
pub(crate) fn redact_query_values(text: &str, sensitive: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(['?', '&']) {
        out.push_str(&rest[..=pos]);
        rest = &rest[pos + 1..];
        let end = rest
            .find(|c: char| c == '&' || c == '#' || c.is_whitespace() || "\"')<>".contains(c))
            .unwrap_or(rest.len());
        let pair = &rest[..end];
        if let Some((name, value)) = pair.split_once('=') {
            let decoded = name.replace('+', " ").to_ascii_lowercase();
            if !value.is_empty() && sensitive.contains(&decoded) {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
                rest = &rest[end..];
                continue;
            }
        }
        out.push_str(pair);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Joins a backend base URL, a request path and query parameters. The result always stays on the
/// backend's origin and under its base path: dot segments (literal or percent-encoded) are
/// `InvalidRequest`.
pub(crate) fn join_url(base: &Url, path: &str, query: &[QueryParam]) -> Result<Url, ApiError> {
    if path.contains("://") || path.starts_with("//") {
        return Err(ApiError::invalid_request(format!(
            "path {path:?} must be relative to the backend (e.g. \"/api/items\"), not a full URL"
        )));
    }
    if path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '#')
    {
        return Err(ApiError::invalid_request(format!(
            "path {path:?} contains whitespace, control characters or '#'"
        )));
    }
    let path_part = path.split('?').next().unwrap_or_default();
    if path_part.split(['/', '\\']).any(is_dot_segment) {
        return Err(ApiError::invalid_request(format!(
            "path {path:?} contains a dot segment (\".\" or \"..\", maybe percent-encoded); \
             requests stay under the backend's base path"
        )));
    }
    let base_str = base.as_str().trim_end_matches('/');
    let sep = if path.starts_with('/') { "" } else { "/" };
    let mut url = Url::parse(&format!("{base_str}{sep}{path}")).map_err(|e| {
        ApiError::invalid_request(format!("path {path:?} does not form a valid URL: {e}"))
    })?;
    let base_path = base.path().trim_end_matches('/');
    let under_base = url.path() == base_path
        || url
            .path()
            .strip_prefix(base_path)
            .is_some_and(|rest| rest.starts_with('/'));
    if url.origin() != base.origin() || !under_base {
        return Err(ApiError::invalid_request(format!(
            "path {path:?} would leave the backend's base URL"
        )));
    }
    if !query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for q in query {
            pairs.append_pair(&q.name, &q.value);
        }
    }
    Ok(url)
}

/// Whether [`join_url`] accepts `path?query` on `base`, without building the URL when it
/// certainly does: a plain path ([`is_plain_path`]) stays under any base, and query pairs are
/// encoded, never rejected. (A request is checked before it is queued or sent, and joined again
/// for the backend that gets it; most paths are plain and skip the first parse.)
pub(crate) fn check_path(base: &Url, path: &str, query: &[QueryParam]) -> Result<(), ApiError> {
    if is_plain_path(path) {
        return Ok(());
    }
    join_url(base, path, query).map(drop)
}

/// A request's path and query joined against a placeholder origin: the URL of the request
/// independent of any backend.
fn backendless_url(path: &str, query: &[QueryParam]) -> Result<Url, ApiError> {
    static ORIGIN: std::sync::OnceLock<Option<Url>> = std::sync::OnceLock::new();
    let origin = ORIGIN
        .get_or_init(|| Url::parse("http://origin.invalid").ok())
        .as_ref()
        .ok_or_else(|| ApiError::Internal {
            reason: "the placeholder origin does not parse".into(),
        })?;
    join_url(origin, path, query)
}

/// The normalised `path?query` of a request, independent of any backend (cache keys): the path
/// as [`normalise_path`] leaves it.
pub(crate) fn request_target(path: &str, query: &[QueryParam]) -> Result<String, ApiError> {
    if query.is_empty() && is_plain_path(path) {
        return Ok(path.to_string());
    }
    let url = backendless_url(path, query)?;
    let path = normalise_path(url.path());
    Ok(match url.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    })
}

/// A path the URL parser and [`normalise_path`] leave exactly as it is, and [`join_url`] accepts:
/// `/`, then unreserved characters and `/` only, no `//` at the start, no dot segment. (Every
/// cache lookup computes a request target; most paths are like this and skip the parser.)
fn is_plain_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && path
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'/'))
        && !path.split('/').any(|s| s == "." || s == "..")
}

/// A URL path in RFC 3986 §6.2.2 normal form: percent-encoded unreserved characters decoded
/// (`%7E` → `~`, `%69` → `i`), other percent-encodings in upper case (`%2f` → `%2F`); the rest as
/// it is. Two spellings of one resource get one cache entry and one invalidation.
pub(crate) fn normalise_path(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                let c = (h * 16 + l) as u8;
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    out.push(c as char);
                } else {
                    out.push('%');
                    out.push(b[i + 1].to_ascii_uppercase() as char);
                    out.push(b[i + 2].to_ascii_uppercase() as char);
                }
                i += 3;
                continue;
            }
        }
        let ch = path[i..].chars().next().unwrap_or_default();
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// The (decoded) names of every query parameter of a request, from `query` and from a query
/// written into `path`.
pub(crate) fn query_names(path: &str, query: &[QueryParam]) -> Result<Vec<String>, ApiError> {
    let url = backendless_url(path, query)?;
    Ok(url
        .query_pairs()
        .map(|(name, _)| name.into_owned())
        .collect())
}

/// The `Idempotency-Key` header value, validated.
pub(crate) fn idempotency_header(key: &str) -> Result<HeaderValue, ApiError> {
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::invalid_request(
            "idempotency_key must be 1 to 255 characters",
        ));
    }
    HeaderValue::from_str(key)
        .map_err(|_| ApiError::invalid_request("idempotency_key must be printable ASCII"))
}

/// Framing and hop-by-hop headers: the HTTP stack owns them, an app never sets them (a stale
/// `Content-Length` truncates a body, `Host` redirects a request, …).
pub(crate) fn is_forbidden_header(name: &str) -> bool {
    const FORBIDDEN: [&str; 7] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "keep-alive",
    ];
    let lower = name.trim().to_ascii_lowercase();
    FORBIDDEN.contains(&lower.as_str()) || lower.starts_with("proxy-")
}

/// The value of header `name` (case-insensitive) among app-given pairs.
pub(crate) fn header_value<'a>(pairs: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Validates and converts header pairs; `make_err` builds the error (it names the header).
/// Framing and hop-by-hop headers ([`is_forbidden_header`]) are refused.
pub(crate) fn parse_headers(
    pairs: &HashMap<String, String>,
    make_err: impl Fn(String) -> ApiError,
) -> Result<HeaderMap, ApiError> {
    let mut map = HeaderMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if is_forbidden_header(name) {
            return Err(make_err(format!(
                "header {name:?} is a framing or hop-by-hop header the HTTP stack sets itself; \
                 remove it"
            )));
        }
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            make_err(format!(
                "header name {name:?} is not a valid HTTP header name"
            ))
        })?;
        let v = HeaderValue::from_str(value).map_err(|_| {
            make_err(format!(
                "header {name:?} has a value that is not valid in HTTP (control characters?)"
            ))
        })?;
        map.insert(n, v);
    }
    Ok(map)
}

/// Lower-cased names; repeated headers joined with ", ".
pub(crate) fn flatten_headers(h: &HeaderMap) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::with_capacity(h.keys_len());
    for (name, value) in h {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

/// The longest `Retry-After` the client honours: a server (or a broken proxy) asking for more is
/// taken to mean "an hour", so no wait, queue reschedule or breaker hold ever grows without bound.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The largest delta-seconds value a cache keeps (RFC 9111 §1.2.2: a larger one, or one that
/// overflows, counts as 2^31 seconds). Every cache time derived from a server header is at most this,
/// so no sum of them overflows the cache's `i64` milliseconds.
pub(crate) const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// Parses `delta-seconds` (RFC 9111 §1.2.2: `1*DIGIT`, nothing else, not even a sign), saturating
/// at [`MAX_DELTA_SECONDS`]. Surrounding whitespace is ignored.
pub(crate) fn parse_delta_seconds(value: &str) -> Option<u64> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut n: u64 = 0;
    for b in v.bytes() {
        n = n.saturating_mul(10).saturating_add(u64::from(b - b'0'));
        if n > MAX_DELTA_SECONDS {
            return Some(MAX_DELTA_SECONDS);
        }
    }
    Some(n)
}

/// Parses `Retry-After` (delta-seconds or an HTTP date) relative to `now`, capped at
/// [`MAX_RETRY_AFTER`]; anything else is `None`.
pub(crate) fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    let wait = match parse_delta_seconds(v) {
        Some(secs) => Duration::from_secs(secs),
        None => parse_http_date(v)?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The `Retry-After` of a response, if present and valid (capped at [`MAX_RETRY_AFTER`]).
pub(crate) fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()))
}

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LONG_DAY_NAMES: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `n` ASCII digits exactly, as a number.
fn digits(s: &str, n: usize) -> Option<u32> {
    if s.len() != n || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn month_of(s: &str) -> Option<u32> {
    MONTHS.iter().position(|m| *m == s).map(|i| i as u32 + 1)
}

/// `HH:MM:SS` (RFC 9110 `time-of-day`; a leap second 60 is allowed).
fn time_of_day(s: &str) -> Option<(u32, u32, u32)> {
    let mut it = s.split(':');
    let (h, m, sec) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    let (h, m, sec) = (digits(h, 2)?, digits(m, 2)?, digits(sec, 2)?);
    (h <= 23 && m <= 59 && sec <= 60).then_some((h, m, sec))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Seconds since the Unix epoch of a range-checked civil date and time (Howard Hinnant's
/// days-from-civil), as a `SystemTime`; `None` for an impossible date (31 Apr, 29 Feb 2023, …).
fn civil_to_time(
    year: i64,
    month: u32,
    day: u32,
    hms: (u32, u32, u32),
) -> Option<std::time::SystemTime> {
    if !(0..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    if day > days_in_month(year, month) {
        return None;
    }
    let (y, m) = if month <= 2 {
        (year - 1, i64::from(month) + 9)
    } else {
        (year, i64::from(month) - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * m + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + i64::from(hms.0) * 3600 + i64::from(hms.1) * 60 + i64::from(hms.2);
    let epoch = std::time::UNIX_EPOCH;
    if secs >= 0 {
        epoch.checked_add(Duration::from_secs(secs as u64))
    } else {
        epoch.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// Parses an HTTP date strictly, in the three formats RFC 9110 §5.6.7 makes recipients accept:
/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and
/// asctime (`Sun Nov  6 08:49:37 1994`). Single spaces exactly where the grammar has them, names
/// case-sensitive, every field range-checked (including the day of the month); anything else is
/// `None`. Never panics.
pub(crate) fn parse_http_date(s: &str) -> Option<std::time::SystemTime> {
    parse_http_date_with_year(s, current_year())
}

/// The current UTC year (for RFC 850's two-digit years).
fn current_year() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // 365.2425 days a year is exact enough: only the 50-year window depends on it.
    1970 + (secs / 31_556_952) as i64
}

/// [`parse_http_date`] with the year RFC 850 two-digit years are read against: a year that would be
/// more than 50 years in the future is the most recent past year with the same last two digits.
fn parse_http_date_with_year(s: &str, this_year: i64) -> Option<std::time::SystemTime> {
    if !s.is_ascii() {
        return None;
    }
    // IMF-fixdate: day-name "," SP 2DIGIT SP month SP 4DIGIT SP time-of-day SP "GMT"
    if let Some((name, rest)) = s.split_once(", ") {
        if DAY_NAMES.contains(&name) {
            let f: Vec<&str> = rest.split(' ').collect();
            if f.len() != 5 || f[4] != "GMT" {
                return None;
            }
            let day = digits(f[0], 2)?;
            let month = month_of(f[1])?;
            let year = digits(f[2], 4)?;
            return civil_to_time(i64::from(year), month, day, time_of_day(f[3])?);
        }
        if LONG_DAY_NAMES.contains(&name) {
            // rfc850-date: day-name-l "," SP 2DIGIT "-" month "-" 2DIGIT SP time-of-day SP "GMT"
            let f: Vec<&str> = rest.split(' ').collect();
            if f.len() != 3 || f[2] != "GMT" {
                return None;
            }
            let d: Vec<&str> = f[0].split('-').collect();
            if d.len() != 3 {
                return None;
            }
            let day = digits(d[0], 2)?;
            let month = month_of(d[1])?;
            let yy = i64::from(digits(d[2], 2)?);
            let mut year = this_year - this_year.rem_euclid(100) + yy;
            if year > this_year + 50 {
                year -= 100;
            }
            return civil_to_time(year, month, day, time_of_day(f[1])?);
        }
        return None;
    }
    // asctime-date: day-name SP month SP ( 2DIGIT / ( SP DIGIT ) ) SP time-of-day SP 4DIGIT
    let b = s.as_bytes();
    if b.len() != 24 || b[3] != b' ' || b[7] != b' ' || b[10] != b' ' || b[19] != b' ' {
        return None;
    }
    if !DAY_NAMES.contains(&&s[0..3]) {
        return None;
    }
    let month = month_of(&s[4..7])?;
    let day = match &s[8..10] {
        d if d.starts_with(' ') => digits(&d[1..], 1)?,
        d => digits(d, 2)?,
    };
    let year = digits(&s[20..24], 4)?;
    civil_to_time(i64::from(year), month, day, time_of_day(&s[11..19])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_base_path_and_query() {
        let base = Url::parse("http://h:1/prefix/").unwrap();
        let q = [QueryParam {
            name: "a b".into(),
            value: "1&2".into(),
        }];
        let u = join_url(&base, "/items/7", &q).unwrap();
        assert_eq!(u.as_str(), "http://h:1/prefix/items/7?a+b=1%262");
        let u = join_url(&base, "items", &[]).unwrap();
        assert_eq!(u.as_str(), "http://h:1/prefix/items");
    }

    #[test]
    fn rejects_absolute_and_malformed_paths() {
        let base = Url::parse("http://h:1").unwrap();
        for bad in ["http://evil/x", "//evil/x", "/a b", "/a#frag", "/a\n"] {
            assert!(
                matches!(
                    join_url(&base, bad, &[]),
                    Err(ApiError::InvalidRequest { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn dot_segments_literal_or_percent_encoded_are_invalid_requests() {
        let base = Url::parse("http://h:1/api/v1").unwrap();
        for bad in [
            "/items/../../admin",
            "/%2e%2e/admin",
            "/%2E%2e/admin",
            "/items/%2E/x",
            "/./x",
            "..",
            "/a/..",
            "/a\\..\\..\\admin",
            "/.%2e/admin?x=1",
        ] {
            assert!(
                matches!(
                    join_url(&base, bad, &[]),
                    Err(ApiError::InvalidRequest { .. })
                ),
                "{bad}"
            );
        }
        for good in ["/items/..x", "/a.b/c", "/.well-known/x", "/x?p=../y"] {
            let u = join_url(&base, good, &[]).unwrap();
            assert!(u.path().starts_with("/api/v1/"), "{good}: {u}");
        }
    }

    #[test]
    fn framing_and_hop_by_hop_headers_are_refused_naming_the_header() {
        for name in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "Connection",
            "TE",
            "Upgrade",
            "Keep-Alive",
            "Proxy-Authorization",
            "proxy-connection",
        ] {
            let pairs = HashMap::from([(name.to_string(), "x".to_string())]);
            let err = parse_headers(&pairs, ApiError::invalid_request).unwrap_err();
            assert!(
                matches!(&err, ApiError::InvalidRequest { reason } if reason.contains(name)),
                "{name}: {err:?}"
            );
        }
        let ok = HashMap::from([("X-Trace".to_string(), "1".to_string())]);
        assert!(parse_headers(&ok, ApiError::invalid_request).is_ok());
    }

    #[test]
    fn shown_urls_lose_userinfo_and_secret_query_values() {
        let names: Vec<String> = ["api_key", "token"].iter().map(|s| s.to_string()).collect();
        let u = Url::parse("https://user:pw@h:1/p?api_key=SECRET&x=1&TOKEN=T2").unwrap();
        assert_eq!(
            display_url(&u, &names),
            "https://h:1/p?api_key=REDACTED&x=1&TOKEN=REDACTED"
        );
        assert_eq!(
            redact_query_values(
                "error sending request for url (http://h/p?token=abc)",
                &names
            ),
            "error sending request for url (http://h/p?token=REDACTED)"
        );
        assert_eq!(
            redact_query_values("no query here", &names),
            "no query here"
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn far_future_and_out_of_range_dates_are_none_not_a_panic() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 300000000000 08:49:37 GMT"),
            None
        );
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);
        assert!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").is_some());
    }

    fn at(secs: u64) -> Option<std::time::SystemTime> {
        Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn the_three_rfc_9110_formats_parse_to_the_same_instant() {
        let t = at(784_111_777);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), t);
        assert_eq!(
            parse_http_date_with_year("Sunday, 06-Nov-94 08:49:37 GMT", 2026),
            t
        );
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), t);
        assert_eq!(parse_http_date("Sun Nov 06 08:49:37 1994"), t);
        // RFC 850 two-digit years: more than 50 years ahead means the previous century.
        assert_eq!(
            parse_http_date_with_year("Tuesday, 01-Jan-80 00:00:00 GMT", 2026),
            at(315_532_800)
        );
        assert_eq!(
            parse_http_date_with_year("Thursday, 01-Jan-70 00:00:00 GMT", 2026),
            at(3_155_760_000)
        );
        // A leap day and a leap second are valid; pre-1970 dates are valid (and in the past).
        assert!(parse_http_date("Thu, 29 Feb 2024 23:59:60 GMT").is_some());
        assert!(parse_http_date("Mon, 01 Jan 1900 00:00:00 GMT")
            .is_some_and(|t| t < std::time::UNIX_EPOCH));
    }

    #[test]
    fn paths_are_normalised_per_rfc_3986() {
        assert_eq!(normalise_path("/cache/%69tem"), "/cache/item");
        assert_eq!(normalise_path("/a%7eb/%2f%2Fc"), "/a~b/%2F%2Fc");
        assert_eq!(normalise_path("/x%"), "/x%");
        assert_eq!(normalise_path("/x%4"), "/x%4");
        assert_eq!(normalise_path("/caf\u{e9}"), "/caf\u{e9}");
        assert_eq!(
            request_target("/cache/%69tem", &[]).unwrap(),
            request_target("/cache/item", &[]).unwrap()
        );
    }

    #[test]
    fn loose_or_impossible_dates_are_none() {
        for bad in [
            "Thu 01 Dec 1994 16:00:00 GMT",   // no comma
            "Thu,  01 Dec 1994 16:00:00 GMT", // doubled space
            "Thu, 01  Dec 1994 16:00:00 GMT",
            "Thu, 01 Dec 1994 16:00:00  GMT",
            " Thu, 01 Dec 1994 16:00:00 GMT",
            "Thu, 1 Dec 1994 16:00:00 GMT",
            "Thu, 01 dec 1994 16:00:00 GMT",
            "Thu, 01 Dec 94 16:00:00 GMT",
            "Thu, 01 Dec 1994 16:00:00 UTC",
            "Thu, 01 Dec 1994 16:00 GMT",
            "Thu, 01 Dec 1994 16:0:00 GMT",
            "Thu, 01 Dec +994 16:00:00 GMT",
            "Thu, 31 Apr 1994 16:00:00 GMT",
            "Thu, 29 Feb 2023 16:00:00 GMT",
            "Thu, 00 Dec 1994 16:00:00 GMT",
            "Thu, 01 Dec 1994 16:60:00 GMT",
            "Thu, 01 Dec 1994 16:00:61 GMT",
            "Thu, 01 Dec 19945 16:00:00 GMT",
            "Xyz, 01 Dec 1994 16:00:00 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sunday, 06 Nov 94 08:49:37 GMT",
            "Sun, 06-Nov-94 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",
            "Sun Nov  6 08:49:37 1994 ",
            "Sun Nov  6 08:49:37 94",
            "Sun Nov  6 08:49:37 GMT",
            "",
            "0",
            "-1",
            "Thu, 01 Dec 1994 16:00:00 GMT\u{e9}",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn delta_seconds_and_retry_after_are_strict_and_capped() {
        assert_eq!(parse_delta_seconds("42"), Some(42));
        assert_eq!(parse_delta_seconds(" 42 "), Some(42));
        for bad in ["", "+5", "-5", "1.5", "5s", "1e3", "0x10"] {
            assert_eq!(parse_delta_seconds(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_delta_seconds("18446744073709551615"),
            Some(MAX_DELTA_SECONDS)
        );
        assert_eq!(
            parse_delta_seconds(&"9".repeat(400)),
            Some(MAX_DELTA_SECONDS)
        );
        let now = std::time::SystemTime::now();
        assert_eq!(
            parse_retry_after("18446744073709551615", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("-1", now), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn imf(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32, wd: usize) -> String {
            format!(
                "{}, {d:02} {} {y:04} {h:02}:{mi:02}:{s:02} GMT",
                DAY_NAMES[wd],
                MONTHS[mo as usize - 1]
            )
        }

        /// The parser's answer, for comparing with the plain-path shortcut.
        fn parsed_target(path: &str) -> Result<String, ApiError> {
            let url = backendless_url(path, &[])?;
            Ok(normalise_path(url.path()))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn the_plain_path_shortcut_agrees_with_the_parser(s in "/[/a-zA-Z0-9._~-]{0,24}") {
                if is_plain_path(&s) {
                    prop_assert_eq!(request_target(&s, &[]).ok(), parsed_target(&s).ok());
                    prop_assert!(parsed_target(&s).is_ok());
                }
            }

            #[test]
            fn the_path_check_accepts_exactly_what_joins(
                s in "/?[/a-zA-Z0-9._~%?#: -]{0,24}",
                base in prop::sample::select(vec!["http://h:1", "http://h:1/", "https://h/api/v1", "https://h/api/v1/"]),
                q in prop::option::of("[a-z&= ]{0,6}"),
            ) {
                let base = Url::parse(base).unwrap();
                let query: Vec<QueryParam> = q
                    .map(|v| vec![QueryParam { name: "k".into(), value: v }])
                    .unwrap_or_default();
                prop_assert_eq!(
                    check_path(&base, &s, &query).is_ok(),
                    join_url(&base, &s, &query).is_ok()
                );
            }

            #[test]
            fn any_text_is_a_date_or_none_never_a_panic(s in ".{0,40}") {
                let _ = parse_http_date(&s);
                let _ = parse_http_date_with_year(&s, 2026);
                let r = parse_retry_after(&s, std::time::SystemTime::now());
                prop_assert!(r.is_none_or(|d| d <= MAX_RETRY_AFTER));
            }

            #[test]
            fn date_shaped_text_never_panics(
                s in "[A-Za-z]{3,9},? [0-9 ]{1,3}[ -][A-Za-z]{3}[ -][0-9]{1,13} [0-9:]{5,10} (GMT|[0-9]{4})"
            ) {
                let _ = parse_http_date(&s);
            }

            #[test]
            fn valid_dates_round_trip_in_all_three_formats(
                y in 1970u32..=9999, mo in 1u32..=12, d in 1u32..=31,
                h in 0u32..=23, mi in 0u32..=59, s in 0u32..=59, wd in 0usize..7,
            ) {
                let t = parse_http_date(&imf(y, mo, d, h, mi, s, wd));
                let valid = d <= days_in_month(i64::from(y), mo);
                prop_assert_eq!(t.is_some(), valid);
                if let Some(t) = t {
                    let asc = format!(
                        "{} {} {:>2} {h:02}:{mi:02}:{s:02} {y:04}",
                        DAY_NAMES[wd], MONTHS[mo as usize - 1], d
                    );
                    prop_assert_eq!(parse_http_date(&asc), Some(t));
                    // RFC 850 against a "current" year that keeps y within the 50-year window.
                    let rfc850 = format!(
                        "{}, {d:02}-{}-{:02} {h:02}:{mi:02}:{s:02} GMT",
                        LONG_DAY_NAMES[wd], MONTHS[mo as usize - 1], y % 100
                    );
                    prop_assert_eq!(
                        parse_http_date_with_year(&rfc850, i64::from(y) + 10),
                        Some(t)
                    );
                    // Monotonic in the fields it parsed.
                    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                    prop_assert_eq!(secs % 60, u64::from(s));
                }
            }

            #[test]
            fn any_number_of_digits_is_clamped_delta_seconds(n in "[0-9]{1,60}") {
                let v = parse_delta_seconds(&n).unwrap();
                prop_assert!(v <= MAX_DELTA_SECONDS);
                if let Ok(exact) = n.parse::<u64>() {
                    prop_assert_eq!(v, exact.min(MAX_DELTA_SECONDS));
                }
                let r = parse_retry_after(&n, std::time::SystemTime::now()).unwrap();
                prop_assert!(r <= MAX_RETRY_AFTER);
            }
        }
    }
}
