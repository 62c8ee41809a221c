//! A real PostgreSQL server for tests: a fresh cluster in a temporary directory on a free
//! loopback port, stopped (immediately) when dropped. It speaks TLS (a certificate for
//! 127.0.0.1 signed by a CA of its own, [`PgServer::ca`]), so the default `sslmode=prefer`
//! of every test's URL encrypts; [`PgServer::start_tls_only`] refuses plaintext altogether.
//!
//! Uses Debian's server binaries (`scripts/deps.sh` installs the `postgresql` package).
//! PostgreSQL refuses to run as root, so under root the cluster belongs to the `postgres`
//! user and its commands run through `runuser`.
#![allow(clippy::disallowed_methods)] // test helper: waits on the real clock

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

/// Where the test cluster's TLS files go (outside the data directory, which initdb wants
/// empty).
fn tls_dir(dir: &Path) -> PathBuf {
    dir.join("tls")
}

/// The newest installed server's `bin` directory.
fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("ZENITH_PG_BIN") {
        return PathBuf::from(d);
    }
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_unstable();
    match versions.last() {
        Some(v) => PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")),
        None => panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: run ./scripts/deps.sh \
             (installs Debian's postgresql package) or set ZENITH_PG_BIN"
        ),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl PgServer {
    /// Initialises and starts a new cluster; the superuser is `zenith` (trust auth on loopback).
    pub fn start() -> PgServer {
        Self::start_with(false)
    }

    /// As [`start`](Self::start), with plaintext connections refused (TLS only).
    pub fn start_tls_only() -> PgServer {
        Self::start_with(true)
    }

    /// The CA (PEM) that signed the server's certificate: `sslrootcert=` of verify-* URLs.
    pub fn ca(&self) -> PathBuf {
        tls_dir(self.dir.path()).join("ca.pem")
    }

    fn start_with(tls_only: bool) -> PgServer {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("zenith-pg-")
            .tempdir()
            .expect("temp dir");
        let as_postgres = nix_is_root();
        let tls = tls_dir(dir.path());
        let ca = zenith_server::tls::ensure_cluster_ca(&tls).expect("test CA");
        zenith_server::tls::issue_server_cert(&ca, &["127.0.0.1".into(), "localhost".into()], &tls)
            .expect("test server certificate");
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "chown of the cluster directory to postgres failed");
        }
        let pg = PgServer {
            dir,
            bin,
            port: free_port(),
            as_postgres,
        };
        let data = pg.data().display().to_string();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "zenith",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        if tls_only {
            let hba = pg.data().join("pg_hba.conf");
            let rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
            std::fs::write(&hba, format!("hostnossl all all 0.0.0.0/0 reject\n{rules}"))
                .expect("write pg_hba.conf");
        }
        pg.start_again();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).output().expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server (again, after [`stop`](Self::stop)) on the same port and data.
    pub fn start_again(&self) {
        let data = self.data().display().to_string();
        let log = self.dir.path().join("server.log").display().to_string();
        let tls = tls_dir(self.dir.path());
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c ssl=on \
             -c ssl_cert_file={} -c ssl_key_file={}",
            self.port,
            self.dir.path().display(),
            tls.join("server.pem").display(),
            tls.join("server.key").display(),
        );
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "30", "start",
            ],
        );
        self.wait_ready();
    }

    /// Stops the server at once (`-m immediate`: like a crash; it recovers on start).
    pub fn stop(&self) {
        let data = self.data().display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = self.port.to_string();
        loop {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port, "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// URL of database `db` (created by [`create_db`](Self::create_db), or `postgres`).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://zenith@127.0.0.1:{}/{db}", self.port)
    }

    pub fn create_db(&self, db: &str) -> String {
        let port = self.port.to_string();
        let out = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "zenith", db])
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb {db}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(db)
    }

    /// Runs one SQL statement with psql and returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "zenith",
                "-d",
                db,
                "-XAtq",
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data().display().to_string();
        let exe = self.bin.join("pg_ctl");
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = cmd.args(["-D", &data, "-m", "immediate", "stop"]).output();
    }
}

/// A CA of its own in `dir` (PEM path), which signed nothing a test server presents.
pub fn foreign_ca(dir: &Path) -> PathBuf {
    zenith_server::tls::ensure_cluster_ca(dir)
        .expect("a CA")
        .cert_path
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
