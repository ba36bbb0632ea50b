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

/// The normalised `path?query` of a request, independent of any backend (cache keys):
/// `join_url` against a placeholder origin, minus the origin.
pub(crate) fn request_target(path: &str, query: &[QueryParam]) -> Result<String, ApiError> {
    static ORIGIN: std::sync::OnceLock<Url> = std::sync::OnceLock::new();
    let origin = ORIGIN.get_or_init(|| Url::parse("http://origin.invalid").expect("a valid URL"));
    let url = join_url(origin, path, query)?;
    Ok(match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    })
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

/// Parses `Retry-After` (delta-seconds or an HTTP date) relative to `now_unix`.
pub(crate) fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = parse_http_date(v)?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The `Retry-After` of a response, if present and valid.
pub(crate) fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()))
}

/// Minimal IMF-fixdate parser (`Sun, 06 Nov 1994 08:49:37 GMT`), the only format servers must send.
pub(crate) fn parse_http_date(s: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: u64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as u64
        + 1;
    let year: u64 = parts[3].parse().ok()?;
    let hms: Vec<u64> = parts[4]
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    if hms[0] > 23 || hms[1] > 59 || hms[2] > 60 || year > 9999 {
        return None;
    }
    let secs = days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    std::time::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
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
}
