//! TLS to PostgreSQL (rustls), as libpq reads `sslmode` in the URL:
//!
//! - `disable`: no TLS.
//! - `prefer` (the default) and `require`: TLS (`require`: or no connection); the server's
//!   certificate is not checked, unless `sslrootcert=PATH` is given, which makes it `verify-ca`.
//! - `verify-ca`: TLS, the chain checked against `sslrootcert` (else the system's roots).
//! - `verify-full`: as `verify-ca`, and the host name must match the certificate.
//!
//! tokio-postgres knows only `disable/prefer/require`: the URL it gets has `verify-*` turned
//! into `require` and `sslrootcert` taken out; the checking is done by the verifier here.

use crate::StoreError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, SignatureScheme};
use std::sync::Arc;

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// The URL for tokio-postgres and the TLS connector that checks what `sslmode` asks.
pub(crate) fn connector(
    url: &str,
) -> Result<(String, tokio_postgres_rustls::MakeRustlsConnect), StoreError> {
    let bad = StoreError::Tls;
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let (mut mode, mut root) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", m)) => mode = Some(m.to_string()),
            Some(("sslrootcert", p)) => root = Some(p.to_string()),
            _ => kept.push(pair.to_string()),
        }
    }
    let (pg_mode, check) = match (mode.as_deref(), root.is_some()) {
        (Some("disable"), _) => ("disable", Check::Nothing),
        (None | Some("prefer"), false) => ("prefer", Check::Nothing),
        (None | Some("prefer") | Some("require"), true) | (Some("verify-ca"), _) => {
            ("require", Check::Chain)
        }
        (Some("require"), false) => ("require", Check::Nothing),
        (Some("verify-full"), _) => ("require", Check::ChainAndName),
        (Some(other), _) => {
            return Err(bad(format!(
                "sslmode={other}: expected disable, prefer, require, verify-ca or verify-full"
            )))
        }
    };
    kept.push(format!("sslmode={pg_mode}"));
    let url = format!("{base}?{}", kept.join("&"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?;
    let config = if check == Check::Nothing {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
            .with_no_client_auth()
    } else {
        let roots = roots(root.as_deref()).map_err(bad)?;
        let webpki =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad(e.to_string()))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Checked {
                inner: webpki,
                name: check == Check::ChainAndName,
            }))
            .with_no_client_auth()
    };
    Ok((url, tokio_postgres_rustls::MakeRustlsConnect::new(config)))
}

/// The CA of `sslrootcert`, or the system's roots.
fn roots(path: Option<&str>) -> Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    match path {
        Some(p) => {
            let certs = CertificateDer::pem_file_iter(p)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslrootcert={p}: {e}"))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("sslrootcert={p}: no usable CA certificate"));
            }
        }
        None => {
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    Ok(store)
}

/// `prefer`/`require` without a root: encryption without authentication (as libpq).
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` (the chain) and `verify-full` (the chain and the host name).
#[derive(Debug)]
struct Checked {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: bool,
}

impl ServerCertVerifier for Checked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_read_as_libpq_reads_it() {
        let (u, _) = connector("postgres://u@h/db").unwrap();
        assert_eq!(u, "postgres://u@h/db?sslmode=prefer");
        let (u, _) = connector("postgres://u@h/db?sslmode=verify-full&connect_timeout=3").unwrap();
        assert_eq!(u, "postgres://u@h/db?connect_timeout=3&sslmode=require");
        let (u, _) = connector("postgres://u@h/db?sslmode=disable").unwrap();
        assert!(u.ends_with("sslmode=disable"));
        assert!(connector("postgres://u@h/db?sslmode=bogus").is_err());
        let err = connector("postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent")
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("sslrootcert=/nonexistent"),
            "{err}"
        );
    }
}
