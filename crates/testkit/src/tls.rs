//! A TLS-terminating proxy with a test certificate authority, so tests can
//! reach the real PostgreSQL and RabbitMQ over TLS (they run without it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt, copy_bidirectional};
use tokio::net::{TcpListener, TcpStream};

/// A certificate authority made for one test, with its certificate in a PEM
/// file (for `sslrootcert=` / `RABBITMQ_CA_FILE`).
pub struct TestCa {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
    pub pem_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().expect("a CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("the CA certificate");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pem_file = dir.path().join("ca.pem");
        std::fs::write(&pem_file, cert.pem()).expect("ca.pem");
        Self {
            key,
            cert,
            pem_file,
            _dir: dir,
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    fn issue(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate().expect("a server key");
        let params = rcgen::CertificateParams::new(names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>())
            .expect("server parameters");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("the server certificate");
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

/// What the proxy speaks before TLS.
#[derive(Clone, Copy)]
pub enum Upgrade {
    /// PostgreSQL: the client asks with an `SSLRequest`, the proxy says `S`.
    Postgres,
    /// TLS from the first byte (`amqps://`).
    Direct,
}

/// Accepts TLS with a certificate for `names` signed by `ca`, and forwards
/// the decrypted bytes to `target`.
pub struct TlsProxy {
    pub addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
}

impl TlsProxy {
    pub async fn start(target: SocketAddr, upgrade: Upgrade, ca: &TestCa, names: &[&str]) -> Self {
        let (chain, key) = ca.issue(names);
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("the server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the TLS proxy");
        let addr = listener.local_addr().expect("proxy address");
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&handshakes);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    if matches!(upgrade, Upgrade::Postgres) {
                        // SSLRequest: length 8, code 80877103.
                        let mut request = [0u8; 8];
                        if inbound.read_exact(&mut request).await.is_err()
                            || request != [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]
                            || inbound.write_all(b"S").await.is_err()
                        {
                            return;
                        }
                    }
                    let Ok(mut tls) = acceptor.accept(inbound).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = copy_bidirectional(&mut tls, &mut outbound).await;
                });
            }
        });
        Self { addr, handshakes }
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}
