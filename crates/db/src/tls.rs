//! TLS to PostgreSQL, configured as with libpq through `DATABASE_URL`'s
//! query parameters:
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | absent, `disable`, `allow` | no | — |
//! | `prefer` | if the server offers it | not checked (checked as `verify-ca` with `sslrootcert`) |
//! | `require` | required | not checked (checked as `verify-ca` with `sslrootcert`) |
//! | `verify-ca` | required | signed by a trusted CA |
//! | `verify-full` | required | signed by a trusted CA and issued for the host |
//!
//! `sslrootcert=/path/ca.pem` names the trusted CAs (default: the system's);
//! `sslrootcert=system` asks for the system's explicitly. `sslcert` and
//! `sslkey` (PEM) present a client certificate. Unlike libpq, an absent
//! `sslmode` means no TLS: say `require` or `verify-full` to get it.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Ca,
    Full,
}

/// The TLS part of a `DATABASE_URL`.
#[derive(Debug, Clone, Default)]
pub struct TlsParams {
    mode: Option<(SslMode, Verify)>,
    root_cert: Option<String>,
    client_cert: Option<String>,
    client_key: Option<String>,
}

/// Splits libpq's TLS parameters off a `postgres://` URL; tokio-postgres
/// knows `sslmode` only up to `require`, and none of the file parameters.
/// A `key=value` connection string is returned as it is (its `sslmode`
/// means what tokio-postgres makes of it, without certificate checks).
pub fn split_url(url: &str) -> Result<(String, TlsParams), String> {
    let as_is = || {
        // tokio-postgres' own default is `prefer`; tronpay's is no TLS.
        let mode = (!url.contains("sslmode")).then_some((SslMode::Disable, Verify::Nothing));
        Ok((
            url.to_owned(),
            TlsParams {
                mode,
                ..TlsParams::default()
            },
        ))
    };
    // Taken apart as text: a URL parser refuses libpq's host lists
    // (`postgres://u:p@db1:5432,db2:5432/x`), which tokio-postgres accepts.
    let Some((scheme, _)) = url.split_once("://") else {
        return as_is();
    };
    if !matches!(scheme, "postgres" | "postgresql") {
        return as_is();
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params = TlsParams::default();
    // The query is filtered piece by piece, as written: decoding and
    // re-encoding it would turn `%20` into `+`, which tokio-postgres keeps.
    let mut kept = Vec::new();
    for piece in query.split('&').filter(|piece| !piece.is_empty()) {
        let Some((key, value)) = url::form_urlencoded::parse(piece.as_bytes()).next() else {
            continue;
        };
        let value = value.into_owned();
        match key.as_ref() {
            "sslmode" => {
                params.mode = Some(match value.as_str() {
                    "disable" | "allow" => (SslMode::Disable, Verify::Nothing),
                    "prefer" => (SslMode::Prefer, Verify::Nothing),
                    "require" => (SslMode::Require, Verify::Nothing),
                    "verify-ca" => (SslMode::Require, Verify::Ca),
                    "verify-full" => (SslMode::Require, Verify::Full),
                    other => {
                        return Err(format!(
                            "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                        ));
                    }
                });
            }
            "sslrootcert" => params.root_cert = Some(value),
            "sslcert" => params.client_cert = Some(value),
            "sslkey" => params.client_key = Some(value),
            _ => kept.push(piece.to_owned()),
        }
    }
    params.mode = Some(params.checked_mode()?);
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, params))
}

impl TlsParams {
    /// The mode the URL's parameters ask for, refusing the combinations that
    /// would look secure without being so (libpq 16's rules for
    /// `sslrootcert=system`, and no silent plain text).
    fn checked_mode(&self) -> Result<(SslMode, Verify), String> {
        let files = self.root_cert.is_some() || self.client_cert.is_some() || self.client_key.is_some();
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err("sslcert and sslkey go together".into());
        }
        let system = self.root_cert.as_deref() == Some("system");
        match self.mode {
            None if system => Ok((SslMode::Require, Verify::Full)),
            None if files => Err("sslrootcert/sslcert/sslkey without sslmode: add sslmode=verify-full \
                 (or verify-ca, require)"
                .into()),
            None => Ok((SslMode::Disable, Verify::Nothing)),
            Some((_, verify)) if system && verify != Verify::Full => {
                Err("sslrootcert=system trusts every public CA, so it needs sslmode=verify-full".into())
            }
            Some((_, Verify::Ca)) if self.root_cert.is_none() => {
                Err("sslmode=verify-ca needs sslrootcert=<the CA file>: any public CA would pass otherwise".into())
            }
            Some(mode) => Ok(mode),
        }
    }

    /// The mode to give tokio-postgres (`None`: leave the URL's own).
    pub fn ssl_mode(&self) -> Option<SslMode> {
        self.mode.map(|(mode, _)| mode)
    }

    /// The rustls configuration, or `None` when TLS is off.
    pub fn client_config(&self, url_mode: SslMode) -> Result<Option<Arc<ClientConfig>>, String> {
        let (mode, mut verify) = self.mode.unwrap_or((url_mode, Verify::Nothing));
        if mode == SslMode::Disable {
            return Ok(None);
        }
        // libpq: with a root certificate, `require` checks the chain.
        if verify == Verify::Nothing && self.root_cert.is_some() {
            verify = Verify::Ca;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?;
        let builder = match verify {
            Verify::Nothing => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Relaxed { provider, chain: None })),
            Verify::Ca | Verify::Full => {
                let roots = Arc::new(self.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                    .build()
                    .map_err(|error| format!("sslrootcert: {error}"))?;
                if verify == Verify::Full {
                    builder.with_webpki_verifier(webpki)
                } else {
                    builder.dangerous().with_custom_certificate_verifier(Arc::new(Relaxed {
                        provider,
                        chain: Some(webpki),
                    }))
                }
            }
        };
        let config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let certs = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|error| format!("sslcert {cert}: {error}"))?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|error| format!("sslkey {key}: {error}"))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|error| format!("sslcert/sslkey: {error}"))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Some(Arc::new(config)))
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        match self.root_cert.as_deref() {
            None | Some("system") => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
            }
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(Path::new(path))
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|error| format!("sslrootcert {path}: {error}"))?;
                roots.add_parsable_certificates(certs);
            }
        }
        if roots.is_empty() {
            return Err(format!(
                "sslrootcert {}: no CA certificate found",
                self.root_cert.as_deref().unwrap_or("(the system's)")
            ));
        }
        Ok(roots)
    }
}

/// The relaxed libpq modes. Without `chain` (`require`/`prefer` without a
/// CA): encryption, no authentication of the server. With it (`verify-ca`):
/// the chain must lead to a trusted CA, the name is not checked. Handshake
/// signatures are checked either way.
#[derive(Debug)]
struct Relaxed {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// tokio-postgres' TLS hook over tokio-rustls.
#[derive(Clone)]
pub struct MakeRustls(pub Arc<ClientConfig>);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        Ok(RustlsConnect {
            connector: tokio_rustls::TlsConnector::from(Arc::clone(&self.0)),
            name,
        })
    }
}

pub struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move { Ok(RustlsStream(self.connector.connect(self.name, stream).await?)) })
    }
}

/// An encrypted connection to PostgreSQL. (No channel binding: SCRAM
/// authenticates without `-PLUS`.)
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_parameters_are_taken_off_the_url() {
        let (url, params) =
            split_url("postgres://u:p@db:5432/x?sslmode=verify-full&sslrootcert=/ca.pem&application_name=a").unwrap();
        assert_eq!(url, "postgres://u:p@db:5432/x?application_name=a");
        assert_eq!(params.ssl_mode(), Some(SslMode::Require));
        assert_eq!(params.mode.map(|(_, verify)| verify), Some(Verify::Full));
        assert_eq!(params.root_cert.as_deref(), Some("/ca.pem"));

        let (url, params) = split_url("postgres://db/x?sslmode=disable").unwrap();
        assert_eq!(url, "postgres://db/x");
        assert_eq!(params.client_config(SslMode::Prefer).unwrap().map(|_| ()), None);

        let (url, params) = split_url("host=db user=u sslmode=require").unwrap();
        assert_eq!(
            (url.as_str(), params.ssl_mode()),
            ("host=db user=u sslmode=require", None)
        );
        // Other parameters pass through exactly as written.
        let (url, _) = split_url("postgres://db/x?options=-c%20search_path%3Dx&sslmode=require&a=b+c").unwrap();
        assert_eq!(url, "postgres://db/x?options=-c%20search_path%3Dx&a=b+c");

        // libpq's host lists (failover): the hosts and the password stay as
        // written, only the TLS parameters leave.
        let (url, params) = split_url(
            "postgres://tronpay:p%40ss@db1:5432,db2:5433/tronpay?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=/ca.pem",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://tronpay:p%40ss@db1:5432,db2:5433/tronpay?target_session_attrs=read-write"
        );
        assert_eq!(params.mode, Some((SslMode::Require, Verify::Full)));
        let config: tokio_postgres::Config = url.parse().unwrap();
        assert_eq!(config.get_hosts().len(), 2);
        assert_eq!(config.get_ports(), [5432, 5433]);
        assert_eq!(config.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(
            config.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );

        // libpq 16: the system's roots mean verify-full.
        let (_, params) = split_url("postgres://db/x?sslrootcert=system").unwrap();
        assert_eq!(params.mode, Some((SslMode::Require, Verify::Full)));

        for plain in ["postgres://db/x", "host=db user=u"] {
            assert_eq!(
                split_url(plain).unwrap().1.ssl_mode(),
                Some(SslMode::Disable),
                "{plain}"
            );
        }
    }

    #[test]
    fn bad_tls_parameters_are_named() {
        assert!(
            split_url("postgres://db/x?sslmode=on")
                .unwrap_err()
                .contains("sslmode=on")
        );
        assert!(
            split_url("postgres://db/x?sslcert=/c.pem")
                .unwrap_err()
                .contains("sslkey")
        );
        for (url, expected) in [
            ("postgres://db/x?sslmode=require&sslrootcert=system", "verify-full"),
            ("postgres://db/x?sslmode=verify-ca&sslrootcert=system", "verify-full"),
            ("postgres://db/x?sslmode=verify-ca", "sslrootcert"),
            ("postgres://db/x?sslrootcert=/ca.pem", "without sslmode"),
            ("postgres://db/x?sslcert=/c.pem&sslkey=/k.pem", "without sslmode"),
        ] {
            let error = split_url(url).unwrap_err();
            assert!(error.contains(expected), "{url}: {error}");
        }
        let (_, params) = split_url("postgres://db/x?sslmode=verify-ca&sslrootcert=/nonexistent.pem").unwrap();
        assert!(
            params
                .client_config(SslMode::Require)
                .unwrap_err()
                .contains("/nonexistent.pem")
        );
    }
}
