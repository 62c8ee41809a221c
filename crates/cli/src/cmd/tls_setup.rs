//! How a server speaks on its listener: HTTPS with the operator's certificate
//! (`--tls-cert/--tls-key`), HTTPS with certificates made for it (`--tls`, and the default on
//! any address other machines can reach), or plain HTTP (loopback, or `--insecure-http`).

use anyhow::Context;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use zenith_server::tls::TlsFiles;

/// TLS flags shared by `zenith up` and `zenith server`.
#[derive(clap::Args, Debug, Clone)]
pub struct TlsOpts {
    /// Serve HTTPS with this certificate chain (PEM); reloaded on SIGHUP and when the file
    /// changes. Needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with certificates made for you: a cluster CA kept in DATA_DIR/tls (hand
    /// tls/ca.pem to clients and agents) and a server certificate for this machine's names
    /// and addresses. The default when listening on a non-loopback address.
    #[arg(long, conflicts_with_all = ["tls_cert", "insecure_http"])]
    tls: bool,
    /// Another name or address the made certificate must cover (repeatable), e.g. a load
    /// balancer's DNS name.
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
    /// Serve plain HTTP on a non-loopback address: tokens, job environments and output cross
    /// the network in clear. Only behind a TLS-terminating proxy or on a trusted network.
    #[arg(long, conflicts_with = "tls_cert")]
    insecure_http: bool,
}

/// What the listener speaks, decided from the flags and the address.
pub struct Decided {
    pub files: Option<TlsFiles>,
    /// The CA that signed the made certificate, for local clients and agents.
    pub ca: Option<PathBuf>,
}

impl Decided {
    pub fn scheme(&self) -> &'static str {
        if self.files.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

pub fn decide(
    o: &TlsOpts,
    listen: SocketAddr,
    data_dir: &Path,
    advertise: Option<&str>,
) -> anyhow::Result<Decided> {
    if let (Some(cert), Some(key)) = (&o.tls_cert, &o.tls_key) {
        return Ok(Decided {
            files: Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            ca: None,
        });
    }
    let reachable = !listen.ip().is_loopback();
    if !o.tls && (!reachable || o.insecure_http) {
        if reachable {
            tracing::warn!(%listen, "serving plain HTTP on a non-loopback address (--insecure-http): tokens and job data cross the network in clear");
            eprintln!("warning: plain HTTP on {listen} (--insecure-http): tokens and job data cross the network in clear");
        }
        return Ok(Decided {
            files: None,
            ca: None,
        });
    }
    let dir = data_dir.join("tls");
    let ca = zenith_server::tls::ensure_cluster_ca(&dir)
        .with_context(|| format!("cannot set up the cluster CA in {}", dir.display()))?;
    let names = cert_names(listen, advertise, &o.tls_san);
    let files = zenith_server::tls::issue_server_cert(&ca, &names, &dir)
        .context("cannot make the server certificate")?;
    Ok(Decided {
        files: Some(files),
        ca: Some(ca.cert_path),
    })
}

/// Names a made certificate covers: loopback, this host's name and addresses, the listen
/// and advertised hosts, and the extra names asked for.
fn cert_names(listen: SocketAddr, advertise: Option<&str>, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    names.push(zenith_agent::hostname());
    if listen.ip().is_unspecified() {
        names.extend(local_addresses().iter().map(IpAddr::to_string));
    } else {
        names.push(listen.ip().to_string());
    }
    if let Some(host) = advertise.and_then(url_host) {
        names.push(host);
    }
    names.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    names
}

/// The host of an `http(s)://host:port/...` URL (brackets of an IPv6 address removed).
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    Some(host.to_string())
}

/// This machine's interface addresses (what agents on other machines may dial).
fn local_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| a.address)
        .filter_map(|s| {
            if let Some(v4) = s.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .filter(|ip| !ip.is_unspecified())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            url_host("https://a.example:7700/x").as_deref(),
            Some("a.example")
        );
        assert_eq!(url_host("http://[::1]:7700").as_deref(), Some("::1"));
        assert_eq!(url_host("http://10.0.0.5").as_deref(), Some("10.0.0.5"));
        assert_eq!(url_host("nope"), None);
    }

    #[test]
    fn names_cover_loopback_and_extras_once() {
        let n = cert_names(
            "127.0.0.1:7700".parse().unwrap(),
            Some("https://lb.example:443"),
            &["lb.example".into(), "10.1.1.1".into()],
        );
        assert!(n.contains(&"localhost".to_string()));
        assert_eq!(n.iter().filter(|x| *x == "lb.example").count(), 1);
        assert!(n.contains(&"10.1.1.1".to_string()));
    }
}
