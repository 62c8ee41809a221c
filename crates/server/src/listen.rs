//! The HTTP accept loop, with the bounds an unauthenticated peer meets first: at most
//! `max_connections_per_client` open connections per client address (beyond: closed at
//! accept, before any byte is read), and `header_timeout` to send a request's head — from the
//! connection's start and again whenever it sits idle between requests — so connections that
//! send nothing, or drip a header line at a time, are closed instead of holding descriptors.
//! Responses that stream (agent assignments, events, log follows) are not limited: the
//! timeout covers only reading a request's head.

use crate::metrics::Metrics;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::Service;

/// Bounds of the accept loop (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct ListenLimits {
    pub header_timeout: Duration,
    pub max_connections_per_client: usize,
}

impl Default for ListenLimits {
    fn default() -> Self {
        ListenLimits {
            header_timeout: Duration::from_secs(30),
            max_connections_per_client: 4096,
        }
    }
}

/// Open connections per client address; an address leaves the map with its last connection,
/// so the map holds at most as many entries as there are open connections.
#[derive(Default)]
struct PerClient(parking_lot::Mutex<HashMap<IpAddr, usize>>);

/// One counted connection; uncounts itself when dropped.
struct Slot {
    clients: Arc<PerClient>,
    ip: IpAddr,
    metrics: Arc<Metrics>,
}

impl PerClient {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize, metrics: &Arc<Metrics>) -> Option<Slot> {
        let mut m = self.0.lock();
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            if *n == 0 {
                m.remove(&ip);
            }
            return None;
        }
        *n += 1;
        metrics.http_connections.inc();
        Some(Slot {
            clients: self.clone(),
            ip,
            metrics: metrics.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.clients.0.lock();
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
        self.metrics.http_connections.dec();
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `signal` resolves; once
/// `stopped` turns, long-lived connections (event and log streams) get 3 s to finish, then
/// are dropped. The TLS handshake must finish within the header timeout too.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    metrics: Arc<Metrics>,
    signal: impl Future<Output = ()> + Send + 'static,
    mut stopped: watch::Receiver<bool>,
) {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let accept = async move {
        let clients = Arc::new(PerClient::default());
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut make = app.into_make_service_with_connect_info::<SocketAddr>();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        tokio::pin!(signal);
        loop {
            let (tcp, addr) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors (or another transient error): wait a little
                        // instead of spinning; closing connections frees them.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut signal => break,
            };
            let max = limits.max_connections_per_client;
            let Some(slot) = clients.take(addr.ip(), max, &metrics) else {
                metrics.http_connections_refused.inc();
                drop(tcp);
                continue;
            };
            nodelay(&tcp);
            // The router with this connection's peer address (`ConnectInfo`); infallible.
            let Ok(svc) = make.call(addr).await;
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            let Some(acceptor) = tls.clone() else {
                let conn = graceful.watch(http.serve_connection(TokioIo::new(tcp), svc));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, peer = %addr, "connection ended with an error");
                    }
                    drop(slot);
                });
                continue;
            };
            // The handshake runs in the connection's task, bounded like a request's head; the
            // graceful-shutdown watch starts once it is done.
            let (http, watcher, metrics) = (http.clone(), graceful.watcher(), metrics.clone());
            tokio::spawn(async move {
                let hs = tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await;
                let stream = match hs {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        metrics.tls_handshake_failures.inc();
                        tracing::debug!(error = %e, peer = %addr, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        metrics.tls_handshake_failures.inc();
                        return;
                    }
                };
                let conn = watcher.watch(http.serve_connection(TokioIo::new(stream), svc));
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, peer = %addr, "connection ended with an error");
                }
                drop(slot);
            });
        }
        drop(listener);
        graceful.shutdown().await;
    };
    tokio::select! {
        _ = accept => {}
        _ = async {
            // Fails only once the sender is gone: stop waiting then too.
            let _ = stopped.changed().await;
            tokio::time::sleep(Duration::from_secs(3)).await;
        } => {}
    }
}

/// Small request/response exchanges with agents: never wait on Nagle's algorithm.
fn nodelay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}
