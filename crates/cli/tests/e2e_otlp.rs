//! With the `otlp` feature: `zenith up --otlp-endpoint URL` exports the job lifecycle's spans
//! (submit, commit, dispatch, run on the agent, report) over OTLP/HTTP, from both processes.
//! A minimal collector on loopback receives them.
#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

/// Accepts OTLP/HTTP posts and keeps their bodies.
fn collector() -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let keep = bodies.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let keep = keep.clone();
            std::thread::spawn(move || loop {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut len = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                keep.lock().unwrap().push(body);
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            });
        }
    });
    (port, bodies)
}

#[test]
fn the_job_lifecycle_is_exported_as_spans() {
    let (port, bodies) = collector();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut c = Cluster::up(&["--otlp-endpoint", &endpoint]);
    let id = c.submit(&["--", "echo", "traced"]);
    assert_eq!(c.wait_final(id, 30)["state"], "succeeded");
    // A graceful stop flushes both processes' exporters.
    let pid = c.server.as_ref().unwrap().pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let seen = |needle: &[u8]| {
        bodies
            .lock()
            .unwrap()
            .iter()
            .any(|b| b.windows(needle.len()).any(|w| w == needle))
    };
    wait_for("spans of both processes", 30, || {
        let all = [
            &b"submit"[..],
            b"commit",
            b"dispatch",
            b"report",
            b"run",
            b"zenith-server",
            b"zenith-agent",
            b"first_job",
            b"attempt",
        ]
        .iter()
        .all(|n| seen(n));
        all.then_some(())
    });
    let _ = c.server.take();
}
