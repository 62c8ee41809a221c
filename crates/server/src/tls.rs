//! TLS on the server (rustls, ring provider).
//!
//! - Certificates from files (`--tls-cert`/`--tls-key`): loaded at start, and again on SIGHUP
//!   or when either file's modification time changes; a reload that fails keeps serving the
//!   old certificate and says why.
//! - Or created for you ([`ensure_cluster_ca`] + [`issue_server_cert`]): a cluster CA kept in
//!   `<data>/tls/` (`ca.pem` to hand to clients and agents, `ca.key` private), and a server
//!   certificate for this server's names, issued afresh at every start.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("cannot create certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Where the server's certificate chain and key are read from.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The crypto provider of every TLS endpoint in Zenith.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_err(&files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&files.cert, e))?;
    if chain.is_empty() {
        return Err(file_err(&files.cert, "no CERTIFICATE in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_err(&files.key, e))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| file_err(&files.key, e))
}

/// The certificate in force, swapped whole on reload.
#[derive(Debug)]
pub struct Reloading {
    files: TlsFiles,
    current: parking_lot::RwLock<Arc<CertifiedKey>>,
    stamp: parking_lot::Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Reloading {
    pub fn open(files: TlsFiles) -> Result<Arc<Reloading>, TlsError> {
        let stamp = (mtime(&files.cert), mtime(&files.key));
        let key = load(&files)?;
        Ok(Arc::new(Reloading {
            files,
            current: parking_lot::RwLock::new(Arc::new(key)),
            stamp: parking_lot::Mutex::new(stamp),
        }))
    }

    /// Loads the files again; on error the certificate in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamp = (mtime(&self.files.cert), mtime(&self.files.key));
        let key = load(&self.files)?;
        *self.current.write() = Arc::new(key);
        *self.stamp.lock() = stamp;
        Ok(())
    }

    /// Whether either file changed since the last load.
    fn changed(&self) -> bool {
        *self.stamp.lock() != (mtime(&self.files.cert), mtime(&self.files.key))
    }

    /// The rustls configuration serving this certificate (HTTP/1.1).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut c = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(c))
    }

    /// Reloads on SIGHUP and when the files change (checked every `every`), until `stop`.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        metrics: Arc<crate::metrics::Metrics>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP; certificates reload on file change only");
                None
            }
        };
        let mut tick = tokio::time::interval(every);
        loop {
            let asked = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
                _ = stop.changed() => return,
            };
            if !asked && !self.changed() {
                continue;
            }
            let span = tracing::info_span!("tls_reload", cert = %self.files.cert.display());
            let _g = span.enter();
            match self.reload() {
                Ok(()) => {
                    metrics.tls_reloads.get_or_create(&ok_label(true)).inc();
                    tracing::info!("TLS certificate reloaded");
                }
                Err(e) => {
                    metrics.tls_reloads.get_or_create(&ok_label(false)).inc();
                    tracing::error!(error = %e, "TLS certificate reload failed; the old one stays in force");
                    // Do not retry a broken file every tick: wait for its next change.
                    *self.stamp.lock() = (mtime(&self.files.cert), mtime(&self.files.key));
                }
            }
        }
    }
}

fn ok_label(ok: bool) -> crate::metrics::ResultLabel {
    crate::metrics::ResultLabel {
        result: if ok { "ok" } else { "error" },
    }
}

/// The cluster CA's subject; fixed, so the issuer of a new server certificate matches the CA
/// kept on disk (the CA is told apart by its key).
const CA_NAME: &str = "Zenith cluster CA";

fn ca_params() -> Result<rcgen::CertificateParams, rcgen::Error> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name
        .push(rcgen::DnType::CommonName, CA_NAME);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let (y, m, d) = today();
    p.not_before = rcgen::date_time_ymd(y, m, d);
    p.not_after = rcgen::date_time_ymd(y + 10, m, d);
    Ok(p)
}

fn today() -> (i32, u8, u8) {
    use chrono::Datelike;
    // Yesterday: a peer whose clock is a little behind still accepts the certificate.
    let secs = (crate::clock::Clock::new().now() / 1000) as i64;
    let t = chrono::DateTime::from_timestamp(secs - 86_400, 0).unwrap_or_default();
    // Day capped at 28: the same day ten years on always exists.
    (t.year(), t.month() as u8, t.day().min(28) as u8)
}

/// The cluster CA in `dir` (`ca.pem`, `ca.key`), created on first use.
pub struct ClusterCa {
    pub cert_path: PathBuf,
    key: rcgen::KeyPair,
}

/// Writes `text` to `path` private to this user (0600), whole or not at all (a temporary
/// file of this process's, synced, then renamed): keys, certificates, token files, the CLI's
/// config.
pub fn write_private(path: &Path, text: &str) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| file_err(&tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| file_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}

/// Loads the CA kept in `dir`, or creates one (the directory 0700, the key 0600).
pub fn ensure_cluster_ca(dir: &Path) -> Result<ClusterCa, TlsError> {
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| file_err(dir, e))?;
    }
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    if cert_path.exists() && key_path.exists() {
        let pem = std::fs::read_to_string(&key_path).map_err(|e| file_err(&key_path, e))?;
        let key = rcgen::KeyPair::from_pem(&pem).map_err(|e| file_err(&key_path, e))?;
        return Ok(ClusterCa { cert_path, key });
    }
    let key = rcgen::KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    write_private(&key_path, &key.serialize_pem())?;
    write_private(&cert_path, &cert.pem())?;
    Ok(ClusterCa { cert_path, key })
}

/// Issues a server certificate for `names` (DNS names or IP addresses) signed by `ca`, and
/// writes it with its new key into `dir` (`server.pem`, `server.key`).
pub fn issue_server_cert(
    ca: &ClusterCa,
    names: &[String],
    dir: &Path,
) -> Result<TlsFiles, TlsError> {
    let issuer = rcgen::Issuer::new(ca_params()?, &ca.key);
    let key = rcgen::KeyPair::generate()?;
    let mut p = rcgen::CertificateParams::new(names.to_vec())?;
    p.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().map_or("zenith", String::as_str),
    );
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let (y, m, d) = today();
    p.not_before = rcgen::date_time_ymd(y, m, d);
    // Reissued at every start; two years outlasts any server's uptime.
    p.not_after = rcgen::date_time_ymd(y + 2, m, d);
    let cert = p.signed_by(&key, &issuer)?;
    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    write_private(&files.key, &key.serialize_pem())?;
    write_private(&files.cert, &cert.pem())?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_chain_loads_and_the_ca_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ensure_cluster_ca(dir.path()).unwrap();
        let files =
            issue_server_cert(&ca, &["localhost".into(), "127.0.0.1".into()], dir.path()).unwrap();
        let r = Reloading::open(files.clone()).unwrap();
        r.server_config().unwrap();
        let first = std::fs::read(&ca.cert_path).unwrap();
        let again = ensure_cluster_ca(dir.path()).unwrap();
        assert_eq!(std::fs::read(&again.cert_path).unwrap(), first, "CA reused");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A broken file on reload keeps the certificate in force.
        std::fs::write(&files.cert, "garbage").unwrap();
        assert!(r.reload().is_err());
        assert!(r.current.read().end_entity_cert().is_ok());
    }
}
