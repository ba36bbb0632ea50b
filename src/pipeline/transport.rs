//! One HTTP attempt against one backend, with reqwest over rustls (ring provider, platform verifier:
//! no OpenSSL, so it cross-compiles to Android and iOS). No policy lives here.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::Url;

use crate::error::ApiError;
use crate::types::HttpMethod;

/// A response as received (any status).
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers, names lower-cased, repeats joined with ", ".
    pub headers: HashMap<String, String>,
    /// The whole body.
    pub body: Vec<u8>,
    /// Parsed `Retry-After`, if present.
    pub retry_after: Option<Duration>,
}

/// How an attempt failed before a complete response arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptErrorKind {
    /// No connection could be made: nothing reached the server.
    Connect,
    /// No complete response within the attempt timeout.
    Timeout,
    /// The connection broke after the request was (maybe) sent: reset, truncated body, protocol error.
    Broken,
}

/// An attempt that produced no complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptError {
    /// What kind of failure.
    pub kind: AttemptErrorKind,
    /// The underlying error, for messages.
    pub detail: String,
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            AttemptErrorKind::Connect => "connect failed",
            AttemptErrorKind::Timeout => "timed out",
            AttemptErrorKind::Broken => "connection broken",
        };
        write!(f, "{kind}: {}", self.detail)
    }
}

/// What one attempt sends.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// Method.
    pub method: HttpMethod,
    /// Absolute URL (backend base + path + query).
    pub url: Url,
    /// All headers (defaults merged, idempotency key added).
    pub headers: &'a HeaderMap,
    /// Body.
    pub body: Option<&'a [u8]>,
    /// Attempt timeout.
    pub timeout: Duration,
}

/// The HTTP transport: one pooled reqwest client shared by all backends.
#[derive(Debug, Clone)]
pub struct Transport {
    client: reqwest::Client,
}

fn install_crypto_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // Fails only if the app already installed a provider, which is then used instead: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Transport {
    /// Builds the pooled client.
    pub fn new(connect_timeout: Duration) -> Result<Self, ApiError> {
        install_crypto_provider();
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(connect_timeout)
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(8)
                .user_agent(concat!("robust-api/", env!("CARGO_PKG_VERSION")))
        };
        let client = match platform_trust(builder()).build() {
            Ok(c) => c,
            // The platform verifier fails when the system has no CA store at all (a minimal
            // container). Plain-http backends must still work: fall back to an empty trust store, so
            // https fails per request with a certificate error instead of the client failing here.
            Err(e) => {
                log::warn!(
                    "robust-api: system TLS trust store unavailable ({}); https requests will fail",
                    error_chain(&e)
                );
                builder().tls_certs_only(Vec::new()).build().map_err(|e| ApiError::Internal {
                    reason: format!("building the HTTP client: {}", error_chain(&e)),
                })?
            }
        };
        Ok(Transport { client })
    }

    /// The pooled reqwest client (uploads stream their own bodies through it).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends one attempt and reads the whole body.
    pub async fn send(&self, out: Outgoing<'_>) -> Result<RawResponse, AttemptError> {
        let mut rb = self
            .client
            .request(out.method.as_reqwest(), out.url)
            .headers(out.headers.clone())
            .timeout(out.timeout);
        if let Some(body) = out.body {
            rb = rb.body(body.to_vec());
        }
        let resp = rb.send().await.map_err(attempt_error)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| super::retry::parse_retry_after(v, SystemTime::now()));
        let headers = flatten_headers(resp.headers());
        let body = resp.bytes().await.map_err(attempt_error)?.to_vec();
        Ok(RawResponse {
            status,
            headers,
            body,
            retry_after,
        })
    }
}

/// The trust store: the platform verifier (system CAs) everywhere but Android, where it would need a
/// JNI initialisation the JNA bindings cannot perform; there the Mozilla root set is used.
#[cfg(not(target_os = "android"))]
fn platform_trust(b: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    b
}

#[cfg(target_os = "android")]
fn platform_trust(b: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter_map(|der| reqwest::Certificate::from_der(der).ok());
    b.tls_certs_only(roots)
}

/// An error with its causes: reqwest's own text hides them ("builder error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        src = s.source();
    }
    text
}

/// Classifies a reqwest error (connect / timeout / broken). Also used by uploads.
pub(crate) fn attempt_error(e: reqwest::Error) -> AttemptError {
    let kind = if e.is_connect() {
        AttemptErrorKind::Connect
    } else if e.is_timeout() {
        AttemptErrorKind::Timeout
    } else {
        AttemptErrorKind::Broken
    };
    let detail = error_chain(&e);
    AttemptError { kind, detail }
}

/// Lower-cased names; repeated headers joined with ", ".
pub fn flatten_headers(h: &HeaderMap) -> HashMap<String, String> {
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

/// Joins a backend base URL, a request path and query parameters.
pub fn join_url(
    base: &Url,
    path: &str,
    query: &[crate::types::QueryParam],
) -> Result<Url, ApiError> {
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
    let base_str = base.as_str().trim_end_matches('/');
    let sep = if path.starts_with('/') { "" } else { "/" };
    let mut url = Url::parse(&format!("{base_str}{sep}{path}")).map_err(|e| {
        ApiError::invalid_request(format!("path {path:?} does not form a valid URL: {e}"))
    })?;
    if !query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for q in query {
            pairs.append_pair(&q.name, &q.value);
        }
    }
    Ok(url)
}

/// The `Idempotency-Key` header value, validated.
pub fn idempotency_header(key: &str) -> Result<HeaderValue, ApiError> {
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::invalid_request(
            "idempotency_key must be 1 to 255 characters",
        ));
    }
    HeaderValue::from_str(key)
        .map_err(|_| ApiError::invalid_request("idempotency_key must be printable ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::QueryParam;

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
}
