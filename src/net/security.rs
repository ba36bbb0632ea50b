//! Transport security and secrecy settings (`ClientConfig.security`): cleartext only to loopback
//! unless opted in, SPKI-SHA256 certificate pins per host with backups, extra trust anchors, and the
//! query parameters whose values are never shown. Validated into [`SecuritySettings`]; the TLS side
//! lives in [`crate::tls`].

use reqwest::Url;

use crate::defaults::config_record;
use crate::error::ApiError;
use crate::tls::{parse_pem_roots, parse_pin_hash, Pin, TlsSettings};

/// The pins of one host (OkHttp `CertificatePinner` model): the host's chain is accepted only if
/// one of its certificates has one of these public keys. List a backup key too, so a key rotation
/// does not lock the app out.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CertificatePin {
    /// Host name or IP address as in the backend URL (`api.example.com`); `*.example.com` covers
    /// one label below it.
    pub host: String,
    /// Base64 of the SHA-256 of a DER `SubjectPublicKeyInfo` (`openssl x509 -pubkey -noout |
    /// openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`); a `sha256/`
    /// prefix is accepted.
    pub spki_sha256: Vec<String>,
}

config_record! {
    /// Transport security: cleartext, certificate pins, extra trust anchors, redaction.
    pub struct SecurityConfig {
        /// Allow `http://` (and `ws://`) backends that are not loopback (127.0.0.0/8, ::1,
        /// `localhost`). Off: such a backend is `InvalidConfig`, as on Android and iOS by default.
        pub allow_cleartext: bool = false,
        /// Certificate pins per host; hosts not listed are not pinned. A mismatch fails the call
        /// with `CertificatePinMismatch` (never tried elsewhere) and a status event.
        pub pins: Vec<CertificatePin> = [],
        /// Extra trust anchors (PEM `CERTIFICATE` blocks), besides the platform's: a private CA.
        pub trusted_roots_pem: Vec<String> = [],
        /// Query parameters whose values are shown as `REDACTED` in errors, status and logs,
        /// besides the built-in ones (`access_token`, `api_key`, `apikey`, `token`, `password`,
        /// `secret`, `sig`, `signature`, `key`, `code`).
        pub sensitive_query_params: Vec<String> = [],
    }
}

/// The checked form of a [`SecurityConfig`].
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SecuritySettings {
    /// Trust and pins.
    pub tls: TlsSettings,
    /// Lower-cased names of the query parameters to redact (the defaults included).
    pub sensitive_query_params: Vec<String>,
}

/// Is this URL's host loopback (127.0.0.0/8, ::1, `localhost`)?
pub(crate) fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let d = host.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
    }
}

impl SecuritySettings {
    pub(crate) fn from_config(c: &SecurityConfig, backends: &[Url]) -> Result<Self, ApiError> {
        if !c.allow_cleartext {
            if let Some(b) = backends
                .iter()
                .find(|b| b.scheme() == "http" && !is_loopback(b))
            {
                return Err(ApiError::invalid_config(format!(
                    "backend {} is cleartext http:// to a host that is not loopback: use https://, \
                     or set security.allow_cleartext",
                    crate::http::display_url(b, &[])
                )));
            }
        }
        let mut pins = Vec::with_capacity(c.pins.len());
        for p in &c.pins {
            let host = p.host.trim().trim_end_matches('.').to_ascii_lowercase();
            if host.is_empty() || host.contains(['/', ' ', '@', '?', '#']) {
                return Err(ApiError::invalid_config(format!(
                    "security.pins: host {:?} must be a host name or IP address",
                    p.host
                )));
            }
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            if p.spki_sha256.is_empty() {
                return Err(ApiError::invalid_config(format!(
                    "security.pins: host {host:?} lists no spki_sha256 pin"
                )));
            }
            let hashes = p
                .spki_sha256
                .iter()
                .map(|h| parse_pin_hash(h))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiError::invalid_config(format!("security.pins ({host}): {e}")))?;
            pins.push(Pin { host, hashes });
        }
        let mut extra_roots = Vec::new();
        for (i, pem) in c.trusted_roots_pem.iter().enumerate() {
            extra_roots.extend(parse_pem_roots(pem).map_err(|e| {
                ApiError::invalid_config(format!("security.trusted_roots_pem[{i}]: {e}"))
            })?);
        }
        let mut sensitive: Vec<String> = crate::store::secrets::SENSITIVE_QUERY_PARAMS
            .iter()
            .map(|s| s.to_string())
            .collect();
        for name in &c.sensitive_query_params {
            let name = name.trim().to_ascii_lowercase();
            if name.is_empty() {
                return Err(ApiError::invalid_config(
                    "security.sensitive_query_params: a name is empty",
                ));
            }
            if !sensitive.contains(&name) {
                sensitive.push(name);
            }
        }
        Ok(SecuritySettings {
            tls: TlsSettings { pins, extra_roots },
            sensitive_query_params: sensitive,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(raw: &[&str]) -> Vec<Url> {
        raw.iter().map(|u| Url::parse(u).unwrap()).collect()
    }

    #[test]
    fn cleartext_only_to_loopback_unless_opted_in() {
        let c = SecurityConfig::default();
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://[::1]:9",
            "http://localhost:1",
            "https://api.example.com",
        ] {
            assert!(
                SecuritySettings::from_config(&c, &urls(&[ok])).is_ok(),
                "{ok}"
            );
        }
        for bad in ["http://api.example.com", "http://10.0.0.2", "http://[::2]"] {
            assert!(
                matches!(
                    SecuritySettings::from_config(&c, &urls(&[bad])),
                    Err(ApiError::InvalidConfig { .. })
                ),
                "{bad}"
            );
        }
        let open = SecurityConfig {
            allow_cleartext: true,
            ..SecurityConfig::default()
        };
        assert!(SecuritySettings::from_config(&open, &urls(&["http://api.example.com"])).is_ok());
    }

    #[test]
    fn bad_pins_and_roots_are_invalid_config() {
        let good = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let bad: Vec<SecurityConfig> = vec![
            SecurityConfig {
                pins: vec![CertificatePin {
                    host: String::new(),
                    spki_sha256: vec![good.into()],
                }],
                ..SecurityConfig::default()
            },
            SecurityConfig {
                pins: vec![CertificatePin {
                    host: "a.example".into(),
                    spki_sha256: vec!["%%%".into()],
                }],
                ..SecurityConfig::default()
            },
            SecurityConfig {
                pins: vec![CertificatePin {
                    host: "a.example".into(),
                    spki_sha256: vec!["AAAA".into()],
                }],
                ..SecurityConfig::default()
            },
            SecurityConfig {
                pins: vec![CertificatePin {
                    host: "a.example".into(),
                    spki_sha256: vec![],
                }],
                ..SecurityConfig::default()
            },
            SecurityConfig {
                trusted_roots_pem: vec!["not pem".into()],
                ..SecurityConfig::default()
            },
            SecurityConfig {
                sensitive_query_params: vec![" ".into()],
                ..SecurityConfig::default()
            },
        ];
        for (i, c) in bad.iter().enumerate() {
            assert!(
                matches!(
                    SecuritySettings::from_config(c, &urls(&["https://a.example"])),
                    Err(ApiError::InvalidConfig { .. })
                ),
                "case {i}"
            );
        }
        let ok = SecurityConfig {
            pins: vec![CertificatePin {
                host: "A.Example".into(),
                spki_sha256: vec![good.into(), format!("sha256/{good}")],
            }],
            sensitive_query_params: vec!["Session".into()],
            ..SecurityConfig::default()
        };
        let s = SecuritySettings::from_config(&ok, &urls(&["https://a.example"])).unwrap();
        assert_eq!(s.tls.pins[0].host, "a.example");
        assert!(s.sensitive_query_params.contains(&"session".to_string()));
    }
}
