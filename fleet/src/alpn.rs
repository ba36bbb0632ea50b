//! [`AlpnServer`]: a TLS server on `127.0.0.1` that offers one protocol through ALPN — HTTP/2 or
//! HTTP/1.1 (hyper) — and counts the connections it accepted and the requests in flight, so a test
//! can prove how a client shares connections. Every request gets `200` with 1 KiB of
//! [`crate::pattern_byte`] content after the server's delay (so concurrent requests overlap).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The one protocol an [`AlpnServer`] offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `h2`.
    Http2,
    /// `http/1.1`.
    Http1,
}

#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    requests: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
}

/// A TLS server speaking one protocol; stops when dropped.
pub struct AlpnServer {
    addr: SocketAddr,
    counts: Arc<Counts>,
    task: JoinHandle<()>,
}

impl AlpnServer {
    /// Serves `protocol` over TLS with `chain` (DER, leaf first) and the leaf's PKCS#8 `key`,
    /// answering each request after `delay`. Must be called inside a tokio runtime.
    pub async fn start(
        protocol: Protocol,
        chain: Vec<Vec<u8>>,
        key: Vec<u8>,
        delay: Duration,
    ) -> io::Result<AlpnServer> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(
                chain.into_iter().map(CertificateDer::from).collect(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .map_err(io::Error::other)?;
        config.alpn_protocols = vec![match protocol {
            Protocol::Http2 => b"h2".to_vec(),
            Protocol::Http1 => b"http/1.1".to_vec(),
        }];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let shared = Arc::clone(&counts);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, counts) = (acceptor.clone(), Arc::clone(&shared));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    counts.connections.fetch_add(1, Ordering::SeqCst);
                    let io = TokioIo::new(tls);
                    let counted = Arc::clone(&counts);
                    let service = hyper::service::service_fn(move |_request| {
                        let counts = Arc::clone(&counted);
                        async move {
                            counts.requests.fetch_add(1, Ordering::SeqCst);
                            let now = counts.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            counts.peak_in_flight.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(delay).await;
                            counts.in_flight.fetch_sub(1, Ordering::SeqCst);
                            let body: Vec<u8> = (0..1024).map(crate::pattern_byte).collect();
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(
                                bytes::Bytes::from(body),
                            )))
                        }
                    });
                    let _ = match protocol {
                        Protocol::Http2 => {
                            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                .max_concurrent_streams(1000)
                                .serve_connection(io, service)
                                .await
                        }
                        Protocol::Http1 => {
                            hyper::server::conn::http1::Builder::new()
                                .serve_connection(io, service)
                                .await
                        }
                    };
                });
            }
        });
        Ok(AlpnServer { addr, counts, task })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// TLS connections accepted (handshake done).
    pub fn connections(&self) -> u64 {
        self.counts.connections.load(Ordering::SeqCst)
    }

    /// Requests received.
    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::SeqCst)
    }

    /// The most requests that were in flight at once.
    pub fn peak_in_flight(&self) -> u64 {
        self.counts.peak_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for AlpnServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
