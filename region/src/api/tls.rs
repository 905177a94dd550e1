//! How the API is served: HTTPS when a certificate is configured, plain HTTP
//! only on loopback unless explicitly allowed.
//!
//! HTTPS is rustls (ring provider) through tokio-rustls, behind axum's own
//! `serve` via a [`Listener`], so both transports share one server path,
//! graceful shutdown and `ConnectInfo<SocketAddr>`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::Listener;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::ApiConfig;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in flight at once; more connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;

/// How the API is to be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// HTTPS with this certificate chain and key (PEM files).
    Https {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// Private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// Plain HTTP; `exposed` when that is on a non-loopback address (allowed
    /// explicitly, e.g. behind a TLS-terminating proxy).
    Plaintext {
        /// Whether the plaintext listener is reachable from other hosts.
        exposed: bool,
    },
}

/// Decides the transport from the configuration, refusing plain HTTP on a
/// non-loopback address unless `allow_plaintext` is set: API keys travel in
/// every request, and in clear they are anyone's on the path.
pub fn transport(config: &ApiConfig, listen: SocketAddr) -> anyhow::Result<Transport> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Ok(Transport::Https {
            cert: cert.clone(),
            key: key.clone(),
        }),
        (Some(_), None) | (None, Some(_)) => anyhow::bail!(
            "[api] tls_cert and tls_key (EDGEMETAL_API_TLS_CERT / EDGEMETAL_API_TLS_KEY) \
             must be set together"
        ),
        (None, None) => {
            let exposed = !listen.ip().to_canonical().is_loopback();
            if exposed && !config.allow_plaintext {
                anyhow::bail!(
                    "refusing to serve the API in plain HTTP on {listen}, which is not a \
                     loopback address: set [api] tls_cert and tls_key (EDGEMETAL_API_TLS_CERT, \
                     EDGEMETAL_API_TLS_KEY), or, behind a TLS-terminating proxy, \
                     [api] allow_plaintext = true (EDGEMETAL_API_ALLOW_PLAINTEXT=1)"
                );
            }
            Ok(Transport::Plaintext { exposed })
        }
    }
}

/// Loads a PEM certificate chain and key into a rustls server configuration.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the API certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("invalid PEM in the API certificate {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("no certificate found in {}", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a private key from {}", key.display()))?;
    // The provider is named, not taken from the process default, so that no
    // other crate's choice of provider can change (or break) the API's TLS.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the API certificate and key do not make a usable pair")?;
    // axum serves HTTP/1.1 only (no http2 feature).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS listener for `axum::serve`.
///
/// Handshakes run in their own tasks (bounded in number and time) so that a
/// slow or silent client cannot hold up everyone else's connections.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    /// Serves TLS on `tcp` with `config`.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local_addr = tcp.local_addr()?;
        let (sender, accepted) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), sender));
        Ok(TlsListener {
            accepted,
            local_addr,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        // Take a slot before accepting, so excess connections queue in the
        // kernel rather than in our memory.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(%error, "cannot accept an API connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if sender.is_closed() {
            return;
        }
        let acceptor = acceptor.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // Small requests and responses: do not wait to coalesce them.
            let _ = stream.set_nodelay(true);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = sender.send((tls, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(connection) => connection,
            // The accept loop only ends once this listener is gone; should it
            // end otherwise, accept nothing rather than spin.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(cert: Option<&str>, key: Option<&str>, allow_plaintext: bool) -> ApiConfig {
        ApiConfig {
            tls_cert: cert.map(PathBuf::from),
            tls_key: key.map(PathBuf::from),
            allow_plaintext,
            ..ApiConfig::default()
        }
    }

    fn at(address: &str) -> SocketAddr {
        address.parse().unwrap()
    }

    #[test]
    fn plaintext_is_for_loopback_unless_allowed() {
        let none = api(None, None, false);
        for loopback in [
            "127.0.0.1:5240",
            "127.8.9.1:1",
            "[::1]:5240",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert_eq!(
                transport(&none, at(loopback)).unwrap(),
                Transport::Plaintext { exposed: false },
                "{loopback}"
            );
        }
        for exposed in ["0.0.0.0:5240", "192.0.2.1:80", "[::]:5240"] {
            assert!(transport(&none, at(exposed)).is_err(), "{exposed}");
            assert_eq!(
                transport(&api(None, None, true), at(exposed)).unwrap(),
                Transport::Plaintext { exposed: true }
            );
        }
    }

    #[test]
    fn tls_needs_both_files_and_then_serves_anywhere() {
        assert!(transport(&api(Some("c.pem"), None, false), at("0.0.0.0:1")).is_err());
        assert!(transport(&api(None, Some("k.pem"), true), at("127.0.0.1:1")).is_err());
        assert_eq!(
            transport(&api(Some("c.pem"), Some("k.pem"), false), at("0.0.0.0:443")).unwrap(),
            Transport::Https {
                cert: "c.pem".into(),
                key: "k.pem".into()
            }
        );
    }

    #[test]
    fn unreadable_or_empty_pem_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = dir.path().join("missing.pem");
        let error = server_config(&missing, &missing).unwrap_err();
        assert!(format!("{error:#}").contains("missing.pem"), "{error:#}");
        let error = server_config(&empty, &empty).unwrap_err();
        assert!(format!("{error:#}").contains("no certificate"), "{error:#}");
    }
}
