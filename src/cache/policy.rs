//! HTTP caching rules for a private client cache (RFC 9111 + RFC 5861), pure: headers in,
//! decisions out. No I/O, no clock of its own (times are passed in), so every rule is unit-tested
//! (against the RFC's own examples where it gives some).
//!
//! - What may be stored: [`storable`] (§3: any final status with explicit freshness; the
//!   heuristically cacheable ones of RFC 9110 §15.1 without), minus the hop-by-hop fields and the
//!   fields named in `Connection` ([`strip_hop_by_hop`], §3.1).
//! - How long it is fresh: [`freshness_lifetime`] (§4.2.1: `max-age`, then `Expires − Date`, an
//!   invalid `Expires` meaning "already expired"; §4.2.2: 10 % of `Date − Last-Modified` when there
//!   is no explicit lifetime), how old it is: [`initial_age`] (§4.2.3, the first value of a list).
//! - How it may be used: [`Freshness::decide`] with the request's directives ([`RequestDirectives`]:
//!   `max-age`, `min-fresh`, `max-stale`, `no-cache`, `only-if-cached`, `Pragma: no-cache`), and
//!   [`Freshness::usable_on_error`] (§4.2.4: never after `no-cache` or `must-revalidate`).
//! - What a `HEAD` does to a stored entry: [`head_update`] (§4.3.5); which paths a write
//!   invalidates: [`invalidated_paths`] (§4.4, same-origin `Location`/`Content-Location`).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use reqwest::Url;

/// The parts of `Cache-Control` a private client cache acts on (response or request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CacheControl {
    /// `max-age=N`.
    pub max_age: Option<Duration>,
    /// `no-store`: never write it.
    pub no_store: bool,
    /// `no-cache`: store, but revalidate before every use.
    pub no_cache: bool,
    /// `must-revalidate`: once stale, never serve without revalidating (not even offline).
    pub must_revalidate: bool,
    /// `stale-while-revalidate=N` (RFC 5861).
    pub stale_while_revalidate: Option<Duration>,
    /// `stale-if-error=N` (RFC 5861).
    pub stale_if_error: Option<Duration>,
    /// Request `min-fresh=N`.
    pub min_fresh: Option<Duration>,
    /// Request `max-stale[=N]` (`Duration::MAX` without a value: any staleness).
    pub max_stale: Option<Duration>,
    /// Request `only-if-cached`.
    pub only_if_cached: bool,
}

/// Parses a `Cache-Control` value (directives are case-insensitive; unknown ones are ignored; a
/// directive whose argument is not delta-seconds is ignored too).
pub(crate) fn parse_cache_control(value: Option<&str>) -> CacheControl {
    let mut cc = CacheControl::default();
    for directive in value.unwrap_or("").split(',') {
        let (name, arg) = match directive.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        // delta-seconds, clamped at 2^31 s (RFC 9111 §1.2.2): no cache time can overflow.
        let secs = || {
            arg.and_then(crate::http::parse_delta_seconds)
                .map(Duration::from_secs)
        };
        match name.to_ascii_lowercase().as_str() {
            "max-age" => cc.max_age = secs(),
            "no-store" => cc.no_store = true,
            "no-cache" => cc.no_cache = true,
            // A private cache treats proxy-revalidate like nothing; must-revalidate binds it.
            "must-revalidate" => cc.must_revalidate = true,
            "stale-while-revalidate" => cc.stale_while_revalidate = secs(),
            "stale-if-error" => cc.stale_if_error = secs(),
            "min-fresh" => cc.min_fresh = secs(),
            "max-stale" => {
                cc.max_stale = match arg {
                    None => Some(Duration::MAX),
                    Some(_) => secs(),
                }
            }
            "only-if-cached" => cc.only_if_cached = true,
            _ => {}
        }
    }
    cc
}

/// What a request asks of the cache (RFC 9111 §5.2.1, §5.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequestDirectives {
    /// `max-age=N`: no stored response older than N (`max-age=0`: always validate).
    pub max_age: Option<Duration>,
    /// `min-fresh=N`: fresh for at least N more.
    pub min_fresh: Option<Duration>,
    /// `max-stale[=N]`: a response up to N past its freshness will do.
    pub max_stale: Option<Duration>,
    /// `no-cache` (or `Pragma: no-cache` without a `Cache-Control`): validate before use.
    pub no_cache: bool,
    /// `no-store`: neither read nor write the cache for this request.
    pub no_store: bool,
    /// `only-if-cached`: never the network; a stored response or `NotCached`.
    pub only_if_cached: bool,
}

impl RequestDirectives {
    /// From the request's final `Cache-Control` and `Pragma` (Pragma counts only without a
    /// `Cache-Control`, §5.4).
    pub(crate) fn parse(cache_control: Option<&str>, pragma: Option<&str>) -> Self {
        let cc = parse_cache_control(cache_control);
        let pragma_no_cache = cache_control.is_none()
            && pragma.is_some_and(|p| {
                p.split(',')
                    .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
            });
        RequestDirectives {
            max_age: cc.max_age,
            min_fresh: cc.min_fresh,
            max_stale: cc.max_stale,
            no_cache: cc.no_cache || pragma_no_cache,
            no_store: cc.no_store,
            only_if_cached: cc.only_if_cached,
        }
    }
}

/// Statuses a cache may store without explicit freshness (RFC 9110 §15.1 "heuristically
/// cacheable"), minus `206` (no range support) and the 3xx (an unfollowed redirect is not the
/// backend's answer).
const HEURISTICALLY_CACHEABLE: [i32; 8] = [200, 203, 204, 404, 405, 410, 414, 501];

/// Is `status` heuristically cacheable (see [`HEURISTICALLY_CACHEABLE`])?
pub(crate) fn heuristically_cacheable(status: i32) -> bool {
    HEURISTICALLY_CACHEABLE.contains(&status)
}

/// Does the response state its own lifetime (`max-age` or `Expires`, §4.2.1)?
pub(crate) fn has_explicit_freshness(cc: &CacheControl, headers: &HashMap<String, String>) -> bool {
    cc.max_age.is_some() || headers.contains_key("expires")
}

/// May a response with this status be stored (§3)? A heuristically cacheable status always; any
/// other final 2xx/4xx with explicit freshness — except `206` (ranges), `304`, `401` (credentials
/// expired or missing: refreshed and re-sent, never remembered), `408`/`429` (transient: retried,
/// not remembered); never a 3xx (unfollowed redirects come back to the app
/// as they are) nor a 5xx other than `501` (a failing backend is retried and falls back to stale).
pub(crate) fn storable(status: i32, explicit_freshness: bool) -> bool {
    if heuristically_cacheable(status) {
        return true;
    }
    let eligible =
        matches!(status, 200..=299 | 400..=499) && !matches!(status, 206 | 401 | 408 | 429);
    eligible && explicit_freshness
}

/// Hop-by-hop header fields (RFC 9110 §7.6.1) a cache never stores.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
];

/// Removes the hop-by-hop fields and every field the `Connection` header names (§3.1).
pub(crate) fn strip_hop_by_hop(headers: &mut HashMap<String, String>) {
    let named: Vec<String> = headers
        .get("connection")
        .map(|c| {
            c.split(',')
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default();
    headers.retain(|k, _| !HOP_BY_HOP.contains(&k.as_str()) && !named.contains(k));
}

/// The largest heuristic lifetime (§4.2.2 leaves the bound to the cache; a day, as common caches).
pub(crate) const MAX_HEURISTIC_LIFETIME: Duration = Duration::from_secs(86_400);

/// How long a response is fresh (§4.2.1): `max-age`, else `Expires − Date` (an invalid `Expires`
/// — anything [`crate::http::parse_http_date`] refuses — means already expired), else for a
/// heuristically cacheable `status` with `Last-Modified` 10 % of `Date − Last-Modified` (§4.2.2,
/// at most [`MAX_HEURISTIC_LIFETIME`]), else the configured default. `now` stands in for a missing
/// or invalid `Date`.
pub(crate) fn freshness_lifetime(
    status: i32,
    cc: &CacheControl,
    headers: &HashMap<String, String>,
    default_ttl: Duration,
    now: SystemTime,
) -> Duration {
    if let Some(max_age) = cc.max_age {
        return max_age;
    }
    let date = headers
        .get("date")
        .and_then(|d| crate::http::parse_http_date(d))
        .unwrap_or(now);
    if let Some(expires) = headers.get("expires") {
        let lifetime = match crate::http::parse_http_date(expires) {
            Some(exp) => exp.duration_since(date).unwrap_or(Duration::ZERO),
            None => Duration::ZERO,
        };
        return lifetime.min(Duration::from_secs(crate::http::MAX_DELTA_SECONDS));
    }
    if heuristically_cacheable(status) {
        let modified = headers
            .get("last-modified")
            .and_then(|lm| crate::http::parse_http_date(lm));
        if let Some(lm) = modified {
            let since = date.duration_since(lm).unwrap_or(Duration::ZERO);
            return (since / 10).min(MAX_HEURISTIC_LIFETIME);
        }
    }
    default_ttl
}

/// The `Age` a response already had when it arrived: the first value of a list (repeated headers
/// are joined with ", "), delta-seconds clamped at 2^31 s; junk counts as 0.
pub(crate) fn initial_age(headers: &HashMap<String, String>) -> Duration {
    headers
        .get("age")
        .and_then(|a| crate::http::parse_delta_seconds(a.split(',').next().unwrap_or_default()))
        .map_or(Duration::ZERO, Duration::from_secs)
}

/// The `Age` header a cache sends with a stored response (§5.1): whole seconds, rounded down.
pub(crate) fn age_header(age: Duration) -> String {
    age.as_secs().to_string()
}

/// What a stored entry needs to be judged, in the units it is persisted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Freshness {
    /// Age at the time of the decision.
    pub age: Duration,
    /// Freshness lifetime.
    pub lifetime: Duration,
    /// `stale-while-revalidate` window.
    pub swr: Option<Duration>,
    /// `stale-if-error` window.
    pub sie: Option<Duration>,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `no-cache` on the response.
    pub no_cache: bool,
}

/// How a stored entry may be used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// Serve it without contacting the network (fresh, or stale within the request's `max-stale`).
    Fresh,
    /// Stale, but inside `stale-while-revalidate`: serve it and refresh in the background.
    StaleWhileRevalidate,
    /// Ask the network first (conditionally if the entry has validators).
    Revalidate,
}

impl Freshness {
    /// Is the entry fresh?
    pub(crate) fn is_fresh(&self) -> bool {
        self.age < self.lifetime
    }

    /// The decision for a normal (NetworkFirst) read with the request's directives (§4.2, §5.2.1).
    pub(crate) fn decide(&self, req: &RequestDirectives) -> Use {
        if self.no_cache || req.no_cache || req.max_age == Some(Duration::ZERO) {
            return Use::Revalidate;
        }
        if req.max_age.is_some_and(|max| self.age > max) {
            return Use::Revalidate;
        }
        if self.is_fresh() {
            let left = self.lifetime.saturating_sub(self.age);
            return match req.min_fresh {
                Some(min) if left < min => Use::Revalidate,
                _ => Use::Fresh,
            };
        }
        if self.must_revalidate {
            return Use::Revalidate;
        }
        // Stale: the request may accept it (max-stale), or the response may (SWR).
        let past = self.age.saturating_sub(self.lifetime);
        if req.max_stale.is_some_and(|w| past <= w) && req.min_fresh.is_none() {
            return Use::Fresh;
        }
        if self
            .swr
            .is_some_and(|w| self.age < self.lifetime.saturating_add(w))
        {
            Use::StaleWhileRevalidate
        } else {
            Use::Revalidate
        }
    }

    /// May this entry stand in for a network failure (offline, all backends down, 5xx, timeout)?
    /// Never after `no-cache` or `must-revalidate` (§4.2.4: a cache must not serve such a response
    /// stale — it is not even fresh for `no-cache`); within `stale-if-error` when the server set
    /// one; otherwise up to `max_stale` past its freshness.
    pub(crate) fn usable_on_error(&self, max_stale: Duration) -> bool {
        if self.no_cache {
            return false;
        }
        if self.is_fresh() {
            return true;
        }
        if self.must_revalidate {
            return false;
        }
        let window = self.sie.unwrap_or(max_stale);
        self.age <= self.lifetime.saturating_add(window)
    }
}

/// What a `HEAD` response does to a stored GET response of the same URL (§4.3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadUpdate {
    /// Same representation: take over its header fields and freshness.
    Update,
    /// The validators differ: the stored response no longer describes the resource.
    Invalidate,
}

/// Compares a HEAD response's validators (ETag, else Last-Modified, else Content-Length) with a
/// stored response's.
pub(crate) fn head_update(
    stored: &HashMap<String, String>,
    head: &HashMap<String, String>,
) -> HeadUpdate {
    let same = |name: &str| match (stored.get(name), head.get(name)) {
        (Some(a), Some(b)) => Some(a == b),
        (None, Some(_)) => Some(false),
        _ => None,
    };
    let verdict = same("etag")
        .or_else(|| same("last-modified"))
        .or_else(|| same("content-length"))
        .unwrap_or(true);
    if verdict {
        HeadUpdate::Update
    } else {
        HeadUpdate::Invalidate
    }
}

/// Fields a `304` or `HEAD` never changes on the stored response (they describe its body).
pub(crate) fn describes_body(name: &str) -> bool {
    matches!(
        name,
        "content-length"
            | "content-type"
            | "transfer-encoding"
            | "content-encoding"
            | "content-range"
    )
}

/// The paths a successful unsafe request invalidates (§4.4): its own, and those of `Location` and
/// `Content-Location` when they are on the same origin as `request_url` and under the backend's
/// base path `base_path`. Paths come back relative to the base path, without query, normalised
/// ([`crate::http::normalise_path`]).
pub(crate) fn invalidated_paths(
    request_url: &Url,
    base_path: &str,
    headers: &HashMap<String, String>,
) -> Vec<String> {
    let base = base_path.trim_end_matches('/');
    let relative = |u: &Url| -> Option<String> {
        if u.origin() != request_url.origin() {
            return None;
        }
        let rest = u.path().strip_prefix(base)?;
        (rest.is_empty() || rest.starts_with('/'))
            .then(|| crate::http::normalise_path(if rest.is_empty() { "/" } else { rest }))
    };
    let mut out: Vec<String> = relative(request_url).into_iter().collect();
    for name in ["location", "content-location"] {
        let target = headers
            .get(name)
            .and_then(|v| request_url.join(v.trim()).ok());
        if let Some(p) = target.as_ref().and_then(relative) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn none() -> RequestDirectives {
        RequestDirectives::default()
    }

    fn req_no_cache() -> RequestDirectives {
        RequestDirectives {
            no_cache: true,
            ..none()
        }
    }

    fn req(cc: &str) -> RequestDirectives {
        RequestDirectives::parse(Some(cc), None)
    }

    fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn fr(age: u64, lifetime: u64) -> Freshness {
        Freshness {
            age: secs(age),
            lifetime: secs(lifetime),
            swr: None,
            sie: None,
            must_revalidate: false,
            no_cache: false,
        }
    }

    #[test]
    fn parses_directives_case_insensitively() {
        let cc = parse_cache_control(Some("Max-Age=60, no-cache, MUST-REVALIDATE, stale-while-revalidate=30, stale-if-error=\"600\", foo"));
        assert_eq!(cc.max_age, Some(secs(60)));
        assert!(cc.no_cache && cc.must_revalidate && !cc.no_store);
        assert_eq!(cc.stale_while_revalidate, Some(secs(30)));
        assert_eq!(cc.stale_if_error, Some(secs(600)));
        assert!(parse_cache_control(Some("no-store")).no_store);
        assert_eq!(parse_cache_control(None), CacheControl::default());
    }

    #[test]
    fn lifetime_prefers_max_age_then_expires_then_default() {
        let mut h = HashMap::new();
        h.insert(
            "date".to_string(),
            "Sun, 06 Nov 1994 08:49:37 GMT".to_string(),
        );
        h.insert(
            "expires".to_string(),
            "Sun, 06 Nov 1994 08:50:37 GMT".to_string(),
        );
        let cc = parse_cache_control(Some("max-age=5"));
        assert_eq!(
            freshness_lifetime(200, &cc, &h, secs(9), SystemTime::now()),
            secs(5)
        );
        assert_eq!(
            freshness_lifetime(
                200,
                &CacheControl::default(),
                &h,
                secs(9),
                SystemTime::now()
            ),
            secs(60)
        );
        h.insert("expires".to_string(), "0".to_string());
        assert_eq!(
            freshness_lifetime(
                200,
                &CacheControl::default(),
                &h,
                secs(9),
                SystemTime::now()
            ),
            Duration::ZERO
        );
        assert_eq!(
            freshness_lifetime(
                200,
                &CacheControl::default(),
                &HashMap::new(),
                secs(9),
                SystemTime::now()
            ),
            secs(9)
        );
    }

    #[test]
    fn decisions_follow_freshness_and_directives() {
        assert_eq!(fr(1, 10).decide(&none()), Use::Fresh);
        assert_eq!(fr(1, 10).decide(&req_no_cache()), Use::Revalidate);
        assert_eq!(fr(11, 10).decide(&none()), Use::Revalidate);
        let swr = Freshness {
            swr: Some(secs(5)),
            ..fr(12, 10)
        };
        assert_eq!(swr.decide(&none()), Use::StaleWhileRevalidate);
        assert_eq!(
            Freshness {
                age: secs(16),
                ..swr.clone()
            }
            .decide(&none()),
            Use::Revalidate
        );
        assert_eq!(
            Freshness {
                must_revalidate: true,
                ..swr
            }
            .decide(&none()),
            Use::Revalidate
        );
        assert_eq!(
            Freshness {
                no_cache: true,
                ..fr(1, 10)
            }
            .decide(&none()),
            Use::Revalidate
        );
    }

    #[test]
    fn stale_on_error_respects_must_revalidate_and_stale_if_error() {
        let week = secs(7 * 86_400);
        assert!(fr(100, 10).usable_on_error(week));
        assert!(!fr(100, 10).usable_on_error(secs(30)));
        assert!(!Freshness {
            must_revalidate: true,
            ..fr(11, 10)
        }
        .usable_on_error(week));
        let sie = Freshness {
            sie: Some(secs(5)),
            ..fr(14, 10)
        };
        assert!(sie.usable_on_error(week));
        assert!(!Freshness {
            age: secs(16),
            ..sie
        }
        .usable_on_error(week));
    }

    #[test]
    fn age_takes_the_first_value_and_ignores_junk() {
        let age = |v: &str| initial_age(&HashMap::from([("age".to_string(), v.to_string())]));
        assert_eq!(age("10"), secs(10));
        assert_eq!(age("10, 20"), secs(10));
        assert_eq!(age(" 7 ,junk"), secs(7));
        assert_eq!(age("junk, 20"), Duration::ZERO);
        assert_eq!(age("-5"), Duration::ZERO);
        assert_eq!(age("1.5"), Duration::ZERO);
        assert_eq!(
            age("18446744073709551615"),
            secs(crate::http::MAX_DELTA_SECONDS)
        );
        assert_eq!(initial_age(&HashMap::new()), Duration::ZERO);
    }

    #[test]
    fn huge_ages_and_lifetimes_never_overflow_or_wrap_to_fresh() {
        let huge = "18446744073709551615";
        let cc = parse_cache_control(Some(&format!(
            "max-age={huge}, stale-while-revalidate={huge}, stale-if-error={huge}"
        )));
        let cap = secs(crate::http::MAX_DELTA_SECONDS);
        assert_eq!(cc.max_age, Some(cap));
        assert_eq!(cc.stale_while_revalidate, Some(cap));
        // Stored with an Age of u64::MAX seconds and kept for a while: stale, not fresh.
        let headers = HashMap::from([("age".to_string(), huge.to_string())]);
        let ms = |d: Duration| d.as_millis() as i64;
        let entry = crate::cache::Entry {
            key: "k".into(),
            stored_at_ms: 0,
            initial_age_ms: ms(initial_age(&headers)),
            lifetime_ms: ms(freshness_lifetime(
                200,
                &cc,
                &headers,
                secs(0),
                SystemTime::now(),
            )),
            swr_ms: cc.stale_while_revalidate.map(ms),
            sie_ms: cc.stale_if_error.map(ms),
            ..crate::cache::Entry::blank()
        };
        let f = entry.freshness(0);
        assert!(!f.is_fresh(), "{f:?}");
        assert_eq!(f.decide(&none()), Use::StaleWhileRevalidate);
        let f = entry.freshness(i64::MAX);
        assert!(!f.is_fresh(), "{f:?}");
        assert_eq!(f.decide(&none()), Use::Revalidate);
        let f = crate::cache::Entry {
            stored_at_ms: i64::MAX,
            initial_age_ms: i64::MAX,
            ..entry.clone()
        }
        .freshness(i64::MIN);
        assert!(!f.is_fresh());
        // Windows at Duration::MAX saturate instead of panicking.
        let max = Freshness {
            age: Duration::MAX,
            lifetime: Duration::MAX,
            swr: Some(Duration::MAX),
            sie: Some(Duration::MAX),
            must_revalidate: false,
            no_cache: false,
        };
        assert_eq!(max.decide(&none()), Use::Revalidate);
        assert!(max.usable_on_error(Duration::MAX));
        // Expires in year 9999 against a Date in 1970: clamped to 2^31 s.
        let h = HashMap::from([
            (
                "expires".to_string(),
                "Fri, 31 Dec 9999 23:59:59 GMT".to_string(),
            ),
            (
                "date".to_string(),
                "Thu, 01 Jan 1970 00:00:00 GMT".to_string(),
            ),
        ]);
        assert_eq!(
            freshness_lifetime(
                200,
                &CacheControl::default(),
                &h,
                secs(0),
                SystemTime::now()
            ),
            cap
        );
    }

    #[test]
    fn rfc_9111_5_3_an_invalid_expires_means_already_expired() {
        // §5.3's own example, then the malformed shapes of it that must not parse as a date.
        let date = ("date", "Thu, 01 Dec 1994 15:00:00 GMT");
        let ok = headers(&[date, ("expires", "Thu, 01 Dec 1994 16:00:00 GMT")]);
        let cc = CacheControl::default();
        let now = SystemTime::now();
        assert_eq!(freshness_lifetime(200, &cc, &ok, secs(9), now), secs(3600));
        for bad in [
            "Thu 01 Dec 1994 16:00:00 GMT",
            "Thu,  01 Dec 1994 16:00:00 GMT",
            "Thu, 01 Dec 1994 6:00:00 GMT",
            "0",
            "",
        ] {
            let h = headers(&[date, ("expires", bad)]);
            assert_eq!(
                freshness_lifetime(200, &cc, &h, secs(9), now),
                Duration::ZERO,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rfc_9111_4_2_2_heuristic_freshness_is_a_tenth_of_the_time_since_last_modified() {
        let cc = CacheControl::default();
        let now = SystemTime::now();
        let h = headers(&[
            ("date", "Thu, 11 Dec 1994 16:00:00 GMT"),
            ("last-modified", "Thu, 01 Dec 1994 16:00:00 GMT"),
        ]);
        // 10 days since the last change: a day (the cap) — and 10 h for 100 h.
        assert_eq!(freshness_lifetime(200, &cc, &h, secs(0), now), secs(86_400));
        let h = headers(&[
            ("date", "Mon, 05 Dec 1994 20:00:00 GMT"),
            ("last-modified", "Thu, 01 Dec 1994 16:00:00 GMT"),
        ]);
        assert_eq!(freshness_lifetime(200, &cc, &h, secs(0), now), secs(36_000));
        // Explicit freshness wins; a status that is not heuristically cacheable gets none.
        let explicit = parse_cache_control(Some("max-age=5"));
        assert_eq!(
            freshness_lifetime(200, &explicit, &h, secs(0), now),
            secs(5)
        );
        assert_eq!(freshness_lifetime(201, &cc, &h, secs(7), now), secs(7));
        // A Last-Modified after Date (clock skew) gives no heuristic freshness.
        let skew = headers(&[
            ("date", "Thu, 01 Dec 1994 16:00:00 GMT"),
            ("last-modified", "Fri, 02 Dec 1994 16:00:00 GMT"),
        ]);
        assert_eq!(
            freshness_lifetime(200, &cc, &skew, secs(0), now),
            Duration::ZERO
        );
    }

    #[test]
    fn rfc_9111_3_any_final_status_with_explicit_freshness_may_be_stored() {
        for s in [200, 203, 204, 404, 405, 410, 414, 501] {
            assert!(storable(s, false), "{s} is heuristically cacheable");
        }
        for s in [201, 202, 400, 403, 409] {
            assert!(!storable(s, false) && storable(s, true), "{s}");
        }
        for s in [206, 301, 302, 304, 307, 308, 401, 408, 429, 500, 502, 503] {
            assert!(!storable(s, true), "{s}");
        }
        let cc = parse_cache_control(Some("max-age=60"));
        assert!(has_explicit_freshness(&cc, &HashMap::new()));
        assert!(has_explicit_freshness(
            &CacheControl::default(),
            &headers(&[("expires", "0")])
        ));
        assert!(!has_explicit_freshness(
            &CacheControl::default(),
            &HashMap::new()
        ));
    }

    #[test]
    fn rfc_9111_3_1_connection_named_and_hop_by_hop_fields_are_not_stored() {
        let mut h = headers(&[
            ("connection", "X-Private, close"),
            ("x-private", "per-connection"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("etag", "\"a\""),
            ("cache-control", "max-age=60"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut names: Vec<&str> = h.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["cache-control", "etag"]);
    }

    #[test]
    fn rfc_9111_5_1_age_is_sent_in_whole_seconds_and_a_list_uses_its_first_value() {
        assert_eq!(age_header(Duration::from_millis(33_900)), "33");
        assert_eq!(age_header(Duration::ZERO), "0");
        // "Age: 7200, 0" (or two Age lines, joined): 7200, so not fresh for max-age=3600.
        let h = headers(&[("age", "7200, 0")]);
        assert_eq!(initial_age(&h), secs(7200));
        assert!(!fr(7200, 3600).is_fresh());
    }

    #[test]
    fn rfc_9111_5_2_1_request_directives_narrow_or_widen_what_is_served() {
        // max-age=0: "force refresh"; max-age=N: nothing older than N.
        assert_eq!(fr(1, 60).decide(&req("max-age=0")), Use::Revalidate);
        assert_eq!(fr(10, 60).decide(&req("max-age=5")), Use::Revalidate);
        assert_eq!(fr(4, 60).decide(&req("max-age=5")), Use::Fresh);
        // min-fresh: at least N more seconds of freshness.
        assert_eq!(fr(50, 60).decide(&req("min-fresh=20")), Use::Revalidate);
        assert_eq!(fr(30, 60).decide(&req("min-fresh=20")), Use::Fresh);
        // max-stale: a stale answer is acceptable, within N (any without a value).
        assert_eq!(fr(70, 60).decide(&req("max-stale=20")), Use::Fresh);
        assert_eq!(fr(90, 60).decide(&req("max-stale=20")), Use::Revalidate);
        assert_eq!(fr(9_000, 60).decide(&req("max-stale")), Use::Fresh);
        let must = Freshness {
            must_revalidate: true,
            ..fr(70, 60)
        };
        assert_eq!(must.decide(&req("max-stale")), Use::Revalidate);
        // no-cache, and Pragma: no-cache when there is no Cache-Control (§5.4).
        assert_eq!(fr(1, 60).decide(&req("no-cache")), Use::Revalidate);
        let pragma = RequestDirectives::parse(None, Some("no-cache"));
        assert!(pragma.no_cache);
        assert!(!RequestDirectives::parse(Some("max-stale"), Some("no-cache")).no_cache);
        assert!(req("only-if-cached").only_if_cached && req("no-store").no_store);
    }

    #[test]
    fn rfc_9111_4_2_4_no_cache_is_never_served_stale_not_even_on_error() {
        let no_cache = Freshness {
            no_cache: true,
            ..fr(1, 60)
        };
        assert!(!no_cache.usable_on_error(Duration::MAX));
        assert!(fr(1, 60).usable_on_error(Duration::ZERO));
    }

    #[test]
    fn rfc_9111_4_3_5_head_updates_a_matching_entry_and_invalidates_a_changed_one() {
        let stored = headers(&[("etag", "\"v1\""), ("content-length", "10")]);
        assert_eq!(
            head_update(&stored, &headers(&[("etag", "\"v1\"")])),
            HeadUpdate::Update
        );
        assert_eq!(
            head_update(&stored, &headers(&[("etag", "\"v2\"")])),
            HeadUpdate::Invalidate
        );
        let plain = headers(&[("content-length", "10")]);
        assert_eq!(head_update(&plain, &plain), HeadUpdate::Update);
        assert_eq!(
            head_update(&plain, &headers(&[("content-length", "11")])),
            HeadUpdate::Invalidate
        );
        assert!(describes_body("content-length") && !describes_body("cache-control"));
    }

    #[test]
    fn rfc_9111_4_4_invalidation_covers_same_origin_location_and_content_location_only() {
        let url = Url::parse("https://api.example.com/v1/items/%69tem?x=1").unwrap();
        let h = headers(&[
            ("location", "/v1/items/8"),
            ("content-location", "https://evil.example.com/v1/items/9"),
        ]);
        assert_eq!(
            invalidated_paths(&url, "/v1", &h),
            ["/items/item", "/items/8"]
        );
        let h = headers(&[("content-location", "https://api.example.com/v1/x?y=2")]);
        assert_eq!(invalidated_paths(&url, "/v1/", &h), ["/items/item", "/x"]);
        // Outside the base path: not one of this backend's API paths.
        let h = headers(&[("location", "/other/1")]);
        assert_eq!(invalidated_paths(&url, "/v1", &h), ["/items/item"]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_cache_control_parses_within_bounds(s in ".{0,80}") {
                let cc = parse_cache_control(Some(&s));
                let cap = secs(crate::http::MAX_DELTA_SECONDS);
                for d in [cc.max_age, cc.stale_while_revalidate, cc.stale_if_error].into_iter().flatten() {
                    prop_assert!(d <= cap);
                }
            }

            #[test]
            fn directive_shaped_cache_control_parses_within_bounds(
                parts in proptest::collection::vec(
                    ("(?i)(max-age|no-store|no-cache|must-revalidate|stale-while-revalidate|stale-if-error|x)",
                     proptest::option::of("\"?[-+0-9a-z]{0,25}\"?")),
                    0..6)
            ) {
                let v: Vec<String> = parts
                    .iter()
                    .map(|(n, a)| a.as_ref().map_or(n.clone(), |a| format!("{n}={a}")))
                    .collect();
                let cc = parse_cache_control(Some(&v.join(", ")));
                let cap = secs(crate::http::MAX_DELTA_SECONDS);
                prop_assert!(cc.max_age.is_none_or(|d| d <= cap));
                let f = Freshness {
                    age: cap,
                    lifetime: freshness_lifetime(200, &cc, &HashMap::new(), cap, SystemTime::now()),
                    swr: cc.stale_while_revalidate,
                    sie: cc.stale_if_error,
                    must_revalidate: cc.must_revalidate,
                    no_cache: cc.no_cache,
                };
                let _ = f.decide(&none());
                let _ = f.usable_on_error(Duration::MAX);
            }

            #[test]
            fn any_age_is_bounded(s in ".{0,40}", n in any::<u64>()) {
                let cap = secs(crate::http::MAX_DELTA_SECONDS);
                let age = |v: String| initial_age(&HashMap::from([("age".to_string(), v)]));
                prop_assert!(age(s.clone()) <= cap);
                prop_assert_eq!(age(format!("{n}, {s}")), secs(n.min(crate::http::MAX_DELTA_SECONDS)));
            }

            #[test]
            fn any_vary_is_normalised(s in ".{0,60}") {
                let v = s.to_string();
                match crate::cache::vary_names(Some(&v)) {
                    None => prop_assert!(v.split(',').any(|n| n.trim() == "*")),
                    Some(names) => {
                        prop_assert!(names.windows(2).all(|w| w[0] < w[1]));
                        for n in &names {
                            prop_assert!(!n.is_empty() && n.trim() == n && !n.contains(','));
                            prop_assert_eq!(n.to_ascii_lowercase(), n.clone());
                        }
                    }
                }
            }
        }
    }
}
