//! A TCP proxy that can cut the network between an agent and the server: while cut, existing
//! connections are dropped and new ones are accepted but never answered (a black hole).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    /// Bumped on every cut, so that forwarding connections stop.
    epoch: watch::Sender<u64>,
    _thread: std::thread::JoinHandle<()>,
}

impl Proxy {
    /// Forwards 127.0.0.1:`port` (chosen here) to 127.0.0.1:`upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let (epoch, epoch_rx) = watch::channel(0u64);
        let cut2 = cut.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                let mut held: Vec<TcpStream> = Vec::new();
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    if cut2.load(Ordering::SeqCst) {
                        held.push(client); // black hole: accepted, never answered
                        continue;
                    }
                    held.clear();
                    let mut rx = epoch_rx.clone();
                    rx.borrow_and_update(); // only cuts after this point end the connection
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await
                        else {
                            return;
                        };
                        let mut client = client;
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = rx.changed() => {} // cut: drop both sides
                        }
                    });
                }
            });
        });
        Proxy {
            port,
            cut,
            epoch,
            _thread: thread,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cuts the network: live connections die, new ones hang.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.epoch.send_modify(|e| *e += 1);
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}
