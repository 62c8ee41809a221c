//! The CLI finds a server started on another port and data directory with no flags or
//! environment: `zenith up` writes the context `local` into the config file; contexts can be
//! listed, added, switched and deleted; `ZENITH_DATA_DIR` points every verb at a data
//! directory; a second `zenith up` on a busy data directory fails before printing its banner.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

/// A client verb with nothing but the test's config file (no server, token or data dir).
fn bare(args: &[&str]) -> std::process::Output {
    zenith()
        .env("ZENITH_DATA_DIR", "/nonexistent/zenith-data")
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = bare(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn zenith_up_writes_the_local_context_and_contexts_switch() {
    let c = Cluster::up(&[]);
    // The tour with a non-default port and data directory: no flags, no env.
    let id: u64 = ok(&["submit", "-o", "json", "--", "echo", "hello"])
        .parse::<serde_json::Value>()
        .map(|v| v["id"].as_u64().unwrap())
        .unwrap();
    ok(&["job", "wait", &id.to_string()]);
    let logs = ok(&["job", "logs", &id.to_string()]);
    assert_eq!(logs.trim(), "hello");

    let listed: serde_json::Value =
        serde_json::from_str(&ok(&["context", "list", "-o", "json"])).unwrap();
    assert_eq!(listed[0]["name"], "local", "{listed}");
    assert_eq!(listed[0]["current"], true);
    assert_eq!(listed[0]["server"], c.url());
    assert!(listed[0]["token-file"]
        .as_str()
        .unwrap()
        .ends_with("admin.token"));
    assert_eq!(ok(&["context", "current"]).trim(), "local");

    // Another context: unreachable, so a verb through it says so (exit 3); `--context`
    // picks one for a single command; `use` switches; a context's token goes to its server.
    ok(&[
        "context",
        "set",
        "far",
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "x",
    ]);
    assert_eq!(ok(&["context", "current"]).trim(), "local");
    let far = bare(&["jobs", "--context", "far"]);
    assert_eq!(far.status.code(), Some(3), "{far:?}");
    ok(&["context", "use", "far"]);
    assert_eq!(bare(&["jobs"]).status.code(), Some(3));
    // An explicit --server ignores the current context (its token is not sent elsewhere).
    let with_server = zenith()
        .env("ZENITH_DATA_DIR", c.data())
        .args(["jobs", "--server", &c.url(), "-o", "json"])
        .output()
        .unwrap();
    assert!(with_server.status.success(), "{with_server:?}");
    ok(&["context", "use", "local"]);
    ok(&["context", "delete", "far"]);
    let gone = bare(&["jobs", "--context", "far"]);
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no context named \"far\""));
    let bad = bare(&["context", "set", "x", "--server", "ftp://a"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("contexts.x.server"));

    // ZENITH_DATA_DIR alone finds the server's URL and token (no context).
    std::fs::remove_file(test_config_path()).unwrap();
    let by_dir = zenith()
        .env("ZENITH_DATA_DIR", c.data())
        .args(["job", "show", &id.to_string(), "-o", "json"])
        .output()
        .unwrap();
    assert!(by_dir.status.success(), "{by_dir:?}");

    // A second `zenith up` on the same data directory: the error, and no banner.
    let second = zenith()
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(c.data())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(err.contains("in use by another zenith"), "{err}");
    assert!(!err.contains("zenith is up"), "{err}");
}
