//! The TLS configuration of one client: rustls with the *ring* provider, used by the HTTP transport
//! (reqwest, `use_preconfigured_tls`) and by WebSockets (tokio-tungstenite, `Connector::Rustls`),
//! so `https://` and `wss://` trust exactly the same roots and obey the same pins. Trust: the
//! platform verifier (the OS trust store) plus the configured extra roots, except on Android, where
//! that verifier needs a JNI initialisation the JNA bindings cannot do and the bundled Mozilla root
//! set is used. Neither aws-lc-rs nor OpenSSL is linked. The two configs differ only in ALPN (HTTP
//! offers h2; a WebSocket upgrade needs HTTP/1.1).
//!
//! Pinning follows OkHttp's `CertificatePinner`: after the normal validation succeeded, a host with
//! pins is accepted only if some certificate of its chain (leaf, intermediates, or a configured
//! extra root that issued the topmost one) has a public key whose SPKI-SHA256 is listed. A mismatch
//! is a [`PinMismatch`] inside the rustls error, found again by [`pin_mismatch_in`].
//!
//! A client without pins or extra roots shares one process-wide configuration (loading the OS
//! trust store once).

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};

/// One host's pins: SHA-256 digests of acceptable DER `SubjectPublicKeyInfo`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pin {
    /// Lower-cased host name or IP address; `*.example.com` matches one label below it.
    pub host: String,
    /// Acceptable SPKI-SHA256 digests (the current key and its backups).
    pub hashes: Vec<[u8; 32]>,
}

impl Pin {
    fn matches_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self.host.strip_prefix("*.") {
            Some(parent) => host
                .strip_suffix(parent)
                .and_then(|label| label.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            None => host == self.host,
        }
    }
}

/// What a client's TLS trusts and pins (checked by the owning config's validation).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TlsSettings {
    /// Pins per host.
    pub pins: Vec<Pin>,
    /// Trust anchors besides the platform's.
    pub extra_roots: Vec<CertificateDer<'static>>,
}

/// Parses one pin: base64 (standard alphabet, padded) of a 32-byte SHA-256 digest; a `sha256/`
/// prefix (OkHttp's notation) is accepted.
pub(crate) fn parse_pin_hash(text: &str) -> Result<[u8; 32], String> {
    let b64 = text.trim();
    let b64 = b64.strip_prefix("sha256/").unwrap_or(b64);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("pin {text:?} is not base64: {e}"))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        format!(
            "pin {text:?} is {} bytes, an SPKI-SHA256 pin is 32 (base64 of a SHA-256 digest)",
            b.len()
        )
    })
}

/// Parses PEM text holding one or more `CERTIFICATE` blocks.
pub(crate) fn parse_pem_roots(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not parsable PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block in the PEM text".into());
    }
    for cert in &certs {
        webpki::EndEntityCert::try_from(cert)
            .map_err(|e| format!("a CERTIFICATE block is not a valid X.509 certificate: {e}"))?;
    }
    Ok(certs)
}

/// SHA-256 of a certificate's DER `SubjectPublicKeyInfo`, if it parses.
pub(crate) fn spki_sha256(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
    digest.as_ref().try_into().ok()
}

/// The certificate chain a server presented matched none of its host's pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PinMismatch {
    /// The host whose pins did not match.
    pub host: String,
}

/// Marker text of a [`PinMismatch`] (found again in error texts that lost the typed source).
const PIN_MISMATCH_TEXT: &str = "certificate pin mismatch for host ";

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PIN_MISMATCH_TEXT}{} (no certificate in the chain has a pinned SPKI-SHA256)",
            self.host
        )
    }
}

impl std::error::Error for PinMismatch {}

/// The pinned host, if `e` (or one of its causes) is a [`PinMismatch`].
pub(crate) fn pin_mismatch_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(p) = err.downcast_ref::<PinMismatch>() {
            return Some(p.host.clone());
        }
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) =
            err.downcast_ref::<rustls::Error>()
        {
            if let Some(p) = other.0.downcast_ref::<PinMismatch>() {
                return Some(p.host.clone());
            }
        }
        // `io::Error::source` skips the wrapped error itself: look inside.
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(host) = pin_mismatch_in(inner) {
                return Some(host);
            }
        }
        // Last resort: the text (some layers keep only the message).
        let text = err.to_string();
        if let Some(rest) = text.split(PIN_MISMATCH_TEXT).nth(1) {
            return rest.split_whitespace().next().map(str::to_owned);
        }
        current = err.source();
    }
    None
}

/// A client's TLS configurations.
#[derive(Debug, Clone)]
pub(crate) struct Tls {
    ws: Arc<ClientConfig>,
}

impl Tls {
    /// Builds the configuration for `settings` (a shared one when nothing is pinned or added).
    pub(crate) fn new(settings: &TlsSettings) -> Result<Tls, String> {
        if settings.pins.is_empty() && settings.extra_roots.is_empty() {
            static DEFAULT: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
            let ws = DEFAULT
                .get_or_init(|| build(&TlsSettings::default()))
                .clone()?;
            return Ok(Tls { ws });
        }
        Ok(Tls {
            ws: build(settings)?,
        })
    }

    /// The WebSocket client config (ALPN: none, so the server speaks HTTP/1.1).
    pub(crate) fn ws_config(&self) -> Arc<ClientConfig> {
        self.ws.clone()
    }

    /// The HTTP client config: the same trust and pins, ALPN `h2` then `http/1.1`.
    pub(crate) fn http_config(&self) -> ClientConfig {
        let mut config = (*self.ws).clone();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

fn build(settings: &TlsSettings) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match platform_verifier(
        provider.clone(),
        &settings.extra_roots,
    ) {
        Ok(v) => v,
        // No CA store at all (a minimal container): keep plain http/ws working and let
        // https/wss fail per connection with a certificate error (the extra roots still work).
        Err(e) => {
            log::warn!(
                    "robust-api: system TLS trust store unavailable ({e}); only configured roots are trusted"
                );
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(settings.extra_roots.iter().cloned());
            if roots.is_empty() {
                // WebPkiServerVerifier refuses an empty store: a store nothing chains to.
                return Ok(Arc::new(
                    ClientConfig::builder_with_provider(provider)
                        .with_safe_default_protocol_versions()
                        .map_err(|e| format!("TLS setup: {e}"))?
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                ));
            }
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| format!("TLS setup: {e}"))?
        }
    };
    let verifier: Arc<dyn ServerCertVerifier> = if settings.pins.is_empty() {
        verifier
    } else {
        Arc::new(PinningVerifier {
            inner: verifier,
            pins: settings.pins.clone(),
            extra_roots: settings.extra_roots.clone(),
        })
    };
    Ok(Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    ))
}

#[cfg(not(target_os = "android"))]
fn platform_verifier(
    provider: Arc<rustls::crypto::CryptoProvider>,
    extra_roots: &[CertificateDer<'static>],
) -> Result<Arc<dyn ServerCertVerifier>, rustls::Error> {
    let v = if extra_roots.is_empty() {
        rustls_platform_verifier::Verifier::new(provider)?
    } else {
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots.to_vec(), provider)?
    };
    Ok(Arc::new(v))
}

#[cfg(target_os = "android")]
fn platform_verifier(
    provider: Arc<rustls::crypto::CryptoProvider>,
    extra_roots: &[CertificateDer<'static>],
) -> Result<Arc<dyn ServerCertVerifier>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    roots.add_parsable_certificates(extra_roots.iter().cloned());
    rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map(|v| v as Arc<dyn ServerCertVerifier>)
        .map_err(|e| rustls::Error::General(e.to_string()))
}

/// The normal verification, then the host's pins (see the module docs).
#[derive(Debug)]
struct PinningVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    pins: Vec<Pin>,
    extra_roots: Vec<CertificateDer<'static>>,
}

impl PinningVerifier {
    /// SPKI digests of the chain: the presented certificates, and any configured root that
    /// issued the topmost one (servers usually do not send their root).
    fn chain_hashes(&self, presented: &[&CertificateDer<'_>]) -> Vec<[u8; 32]> {
        let mut hashes: Vec<[u8; 32]> = presented.iter().filter_map(|c| spki_sha256(c)).collect();
        let top_issuer = presented
            .last()
            .and_then(|c| webpki::EndEntityCert::try_from(*c).ok())
            .map(|c| c.issuer().to_vec());
        if let Some(issuer) = top_issuer {
            for root in &self.extra_roots {
                let is_issuer = webpki::EndEntityCert::try_from(root)
                    .is_ok_and(|r| r.subject() == issuer.as_slice());
                if is_issuer {
                    hashes.extend(spki_sha256(root));
                }
            }
        }
        hashes
    }
}

fn host_of(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_ascii_lowercase(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let host = host_of(server_name);
        let Some(pin) = self.pins.iter().find(|p| p.matches_host(&host)) else {
            return Ok(verified);
        };
        let presented: Vec<&CertificateDer<'_>> =
            std::iter::once(end_entity).chain(intermediates).collect();
        if self
            .chain_hashes(&presented)
            .iter()
            .any(|h| pin.hashes.contains(h))
        {
            return Ok(verified);
        }
        log::warn!("robust-api: {}", PinMismatch { host: host.clone() });
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(PinMismatch { host })),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(host: &str) -> Pin {
        Pin {
            host: host.into(),
            hashes: vec![],
        }
    }

    #[test]
    fn pins_match_their_host_and_one_wildcard_label() {
        assert!(pin("api.example.com").matches_host("API.example.com"));
        assert!(!pin("api.example.com").matches_host("example.com"));
        assert!(pin("*.example.com").matches_host("a.example.com"));
        assert!(!pin("*.example.com").matches_host("a.b.example.com"));
        assert!(!pin("*.example.com").matches_host("example.com"));
        assert!(!pin("*.example.com").matches_host("badexample.com"));
        assert!(pin("127.0.0.1").matches_host("127.0.0.1"));
    }

    #[test]
    fn pin_hashes_are_base64_of_32_bytes() {
        let ok = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(parse_pin_hash(&ok).unwrap(), [7u8; 32]);
        assert_eq!(parse_pin_hash(&format!("sha256/{ok}")).unwrap(), [7u8; 32]);
        assert!(parse_pin_hash("not base64!").is_err());
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 20]);
        assert!(parse_pin_hash(&short).is_err());
    }

    #[test]
    fn pem_roots_must_parse() {
        assert!(parse_pem_roots("").is_err());
        assert!(
            parse_pem_roots("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }

    #[test]
    fn a_pin_mismatch_is_found_through_io_and_rustls_wrappers() {
        let rustls_err = rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(PinMismatch { host: "h".into() })),
        ));
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls_err);
        assert_eq!(pin_mismatch_in(&io).as_deref(), Some("h"));
        let plain = std::io::Error::other("connection refused");
        assert_eq!(pin_mismatch_in(&plain), None);
    }
}
