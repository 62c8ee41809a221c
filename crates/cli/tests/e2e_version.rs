//! The build as a user and an operator see it: `zenith version` (client and server),
//! `GET /api/v1/version`, `GET /api/v1/openapi.json`, the `zenith_build_info` metric, shell completions, and no colour
//! codes in logs that go to a file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

#[test]
fn version_build_info_completions_and_plain_logs() {
    let c = Cluster::up(&[]);
    let v: serde_json::Value = serde_json::from_str(&c.ok(&["version", "-o", "json"])).unwrap();
    let want = env!("CARGO_PKG_VERSION");
    assert_eq!(v["client"]["version"], want, "{v}");
    assert_eq!(v["server"]["version"], want, "{v}");
    assert_eq!(v["server"]["protocol"], v["client"]["protocol"]);
    let text = c.ok(&["version"]);
    assert!(
        text.starts_with(&format!("zenith {want} (agent protocol ")),
        "{text}"
    );
    assert!(text.contains(&format!("server {want}")), "{text}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Any token reads it; none does not.
        let api = c.api();
        assert_eq!(api.get_json("/api/v1/version").await["version"], want);
        let anon = api.get_unauthenticated("/api/v1/version").await;
        assert_eq!(anon.status(), 401);
        // The API description needs no token and is the checked-in one.
        let doc = api.get_unauthenticated("/api/v1/openapi.json").await;
        assert_eq!(doc.status(), 200);
        let served = doc.text().await.unwrap();
        let checked_in = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/openapi.json"
        ))
        .unwrap();
        assert!(
            served == checked_in,
            "served description differs from docs/openapi.json"
        );
        let served: serde_json::Value = serde_json::from_str(&served).unwrap();
        assert!(served["paths"]["/api/v1/jobs"]["post"].is_object());
    });
    let metrics = raw_get(c.port, "/metrics", Some(&c.admin_token), None).unwrap();
    assert!(
        metrics.contains(&format!(
            "zenith_build_info{{version=\"{want}\",protocol=\""
        )),
        "{metrics}"
    );

    // Man pages: one per verb, as man(1) reads them.
    let man = tempfile::tempdir().unwrap();
    let out = zenith().arg("man").arg(man.path()).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    for page in [
        "zenith.1",
        "zenith-submit.1",
        "zenith-job-show.1",
        "zenith-context-use.1",
    ] {
        let text = std::fs::read_to_string(man.path().join(page)).unwrap();
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}: {text}"
        );
    }
    let submit = std::fs::read_to_string(man.path().join("zenith-submit.1")).unwrap();
    assert!(submit.contains("\\-\\-cpus"), "{submit}");

    // Completions for three shells, each knowing the verbs.
    for shell in ["bash", "zsh", "fish"] {
        let out = c.ok(&["completions", shell]);
        assert!(
            out.contains("submit") && out.contains("explain"),
            "{shell}: {out}"
        );
    }
    let bad = c.cli(&["completions", "cmd.exe"]);
    assert_eq!(bad.status.code(), Some(2));

    // The server's log goes to a file here: no terminal colour codes in it.
    let log = std::fs::read(c.server.as_ref().unwrap().log.clone()).unwrap();
    assert!(!log.is_empty());
    assert!(!log.contains(&0x1b), "ANSI escapes in a log file");

    // SIGHUP (`systemctl reload`, a closed terminal) does not end a server without TLS.
    let pid = c.server.as_ref().unwrap().pid();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    wait_for("the SIGHUP to be logged", 15, || {
        let log = std::fs::read_to_string(c.server.as_ref().unwrap().log.clone()).unwrap();
        log.contains("SIGHUP: nothing to reload").then_some(())
    });
    c.ok(&["version"]);
}
