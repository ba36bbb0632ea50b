//! HTTP caching rules for a private client cache (RFC 9111 + RFC 5861), pure: headers in,
//! decisions out. No I/O, no clock of its own (times are passed in), so every rule is unit-tested.

use std::collections::HashMap;
use std::time::Duration;

/// The parts of `Cache-Control` a private client cache acts on.
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
}

/// Parses a `Cache-Control` value (directives are case-insensitive; unknown ones are ignored).
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
            _ => {}
        }
    }
    cc
}

/// Statuses a cache may store (RFC 9110 §15.1 "heuristically cacheable", minus errors: a failed
/// call is reported as an error, not cached).
pub(crate) fn status_is_storable(status: i32) -> bool {
    matches!(status, 200 | 203 | 204) // never a 3xx: an unfollowed redirect is not the backend's answer
}

/// How long a response is fresh: `max-age`, else `Expires - Date`, else the configured default.
pub(crate) fn freshness_lifetime(
    cc: &CacheControl,
    headers: &HashMap<String, String>,
    default_ttl: Duration,
) -> Duration {
    if let Some(max_age) = cc.max_age {
        return max_age;
    }
    if let Some(expires) = headers.get("expires") {
        let date = headers
            .get("date")
            .and_then(|d| crate::http::parse_http_date(d));
        let lifetime = match (crate::http::parse_http_date(expires), date) {
            (Some(exp), Some(date)) => exp.duration_since(date).unwrap_or(Duration::ZERO),
            (Some(exp), None) => exp
                .duration_since(std::time::SystemTime::now())
                .unwrap_or(Duration::ZERO),
            // An invalid Expires (e.g. "0") means "already expired".
            (None, _) => Duration::ZERO,
        };
        return lifetime.min(Duration::from_secs(crate::http::MAX_DELTA_SECONDS));
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
    /// Serve it without contacting the network.
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

    /// The decision for a normal (NetworkFirst) read. `request_no_cache` = the request said
    /// `Cache-Control: no-cache`.
    pub(crate) fn decide(&self, request_no_cache: bool) -> Use {
        if self.no_cache || request_no_cache {
            Use::Revalidate
        } else if self.is_fresh() {
            Use::Fresh
        } else if !self.must_revalidate
            && self
                .swr
                .is_some_and(|w| self.age < self.lifetime.saturating_add(w))
        {
            Use::StaleWhileRevalidate
        } else {
            Use::Revalidate
        }
    }

    /// May this entry stand in for a network failure (offline, all backends down, 5xx, timeout)?
    /// Never after `must-revalidate`; within `stale-if-error` when the server set one; otherwise up
    /// to `max_stale` past its freshness.
    pub(crate) fn usable_on_error(&self, max_stale: Duration) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
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
        assert_eq!(freshness_lifetime(&cc, &h, secs(9)), secs(5));
        assert_eq!(
            freshness_lifetime(&CacheControl::default(), &h, secs(9)),
            secs(60)
        );
        h.insert("expires".to_string(), "0".to_string());
        assert_eq!(
            freshness_lifetime(&CacheControl::default(), &h, secs(9)),
            Duration::ZERO
        );
        assert_eq!(
            freshness_lifetime(&CacheControl::default(), &HashMap::new(), secs(9)),
            secs(9)
        );
    }

    #[test]
    fn decisions_follow_freshness_and_directives() {
        assert_eq!(fr(1, 10).decide(false), Use::Fresh);
        assert_eq!(fr(1, 10).decide(true), Use::Revalidate);
        assert_eq!(fr(11, 10).decide(false), Use::Revalidate);
        let swr = Freshness {
            swr: Some(secs(5)),
            ..fr(12, 10)
        };
        assert_eq!(swr.decide(false), Use::StaleWhileRevalidate);
        assert_eq!(
            Freshness {
                age: secs(16),
                ..swr.clone()
            }
            .decide(false),
            Use::Revalidate
        );
        assert_eq!(
            Freshness {
                must_revalidate: true,
                ..swr
            }
            .decide(false),
            Use::Revalidate
        );
        assert_eq!(
            Freshness {
                no_cache: true,
                ..fr(1, 10)
            }
            .decide(false),
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
            status: 200,
            headers: HashMap::new(),
            body: Vec::new(),
            stored_at_ms: 0,
            initial_age_ms: ms(initial_age(&headers)),
            lifetime_ms: ms(freshness_lifetime(&cc, &headers, secs(0))),
            swr_ms: cc.stale_while_revalidate.map(ms),
            sie_ms: cc.stale_if_error.map(ms),
            must_revalidate: false,
            no_cache: false,
            etag: None,
            last_modified: None,
            last_access_ms: 0,
        };
        let f = entry.freshness(0);
        assert!(!f.is_fresh(), "{f:?}");
        assert_eq!(f.decide(false), Use::StaleWhileRevalidate);
        let f = entry.freshness(i64::MAX);
        assert!(!f.is_fresh(), "{f:?}");
        assert_eq!(f.decide(false), Use::Revalidate);
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
        assert_eq!(max.decide(false), Use::Revalidate);
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
            freshness_lifetime(&CacheControl::default(), &h, secs(0)),
            cap
        );
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
                    lifetime: freshness_lifetime(&cc, &HashMap::new(), cap),
                    swr: cc.stale_while_revalidate,
                    sie: cc.stale_if_error,
                    must_revalidate: cc.must_revalidate,
                    no_cache: cc.no_cache,
                };
                let _ = f.decide(false);
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
