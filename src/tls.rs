//! The one TLS configuration: rustls with the *ring* provider, built once per process, used by the
//! HTTP transport (reqwest, `use_preconfigured_tls`) and by WebSockets (tokio-tungstenite,
//! `Connector::Rustls`), so `https://` and `wss://` trust exactly the same roots: the platform
//! verifier (the OS trust store), except on Android, where that verifier needs a JNI initialisation
//! the JNA bindings cannot do and the bundled Mozilla root set is used. Neither aws-lc-rs nor
//! OpenSSL is linked. The two configs differ only in ALPN (HTTP offers h2; a WebSocket upgrade
//! needs HTTP/1.1).

use std::sync::{Arc, OnceLock};

use rustls::client::WantsClientCert;
use rustls::{ClientConfig, ConfigBuilder, WantsVerifier};

/// The WebSocket client config (ALPN: none, so the server speaks HTTP/1.1), or why it could not be
/// built.
pub(crate) fn ws_config() -> Result<Arc<ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG.get_or_init(build).clone()
}

/// The HTTP client config: the same trust, ALPN `h2` then `http/1.1`.
pub(crate) fn http_config() -> Result<ClientConfig, String> {
    let mut config = (*ws_config()?).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn build() -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))
    };
    match trust(builder()?) {
        Ok(b) => Ok(Arc::new(b.with_no_client_auth())),
        // No CA store at all (a minimal container): like the HTTP transport, keep plain ws://
        // working and let wss:// fail per connection with a certificate error.
        Err(e) => {
            log::warn!(
                "robust-api: system TLS trust store unavailable ({e}); wss:// connections will fail"
            );
            Ok(Arc::new(
                builder()?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ))
        }
    }
}

#[cfg(not(target_os = "android"))]
fn trust(
    b: ConfigBuilder<ClientConfig, WantsVerifier>,
) -> Result<ConfigBuilder<ClientConfig, WantsClientCert>, rustls::Error> {
    use rustls_platform_verifier::BuilderVerifierExt;
    b.with_platform_verifier()
}

#[cfg(target_os = "android")]
fn trust(
    b: ConfigBuilder<ClientConfig, WantsVerifier>,
) -> Result<ConfigBuilder<ClientConfig, WantsClientCert>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    Ok(b.with_root_certificates(roots))
}
