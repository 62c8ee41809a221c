//! `zenith submit job.sh ARGS`: a batch script with `#ZENITH` option lines, as sbatch takes
//! one; the command line's options win over the script's; a relative program path gets a hint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

#[test]
fn a_script_with_directives_runs_with_its_options_and_arguments() {
    let c = Cluster::up(&[]);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("train.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n# nightly training\n#ZENITH --cpus 0.5 --memory 64M\n#ZENITH --label team=ml --name 'nightly train'\n\necho \"args: $1 $2 from $0\"\necho \"task $ZENITH_TASK_INDEX\"\n#ZENITH --cpus 2\n",
    )
    .unwrap();
    let script = script.to_str().unwrap();

    // Options from the script; the command line's --memory wins over it.
    let out = c.cli(&["submit", "--memory", "32M", "-o", "json", script, "a", "b"]);
    assert!(out.status.success(), "{out:?}");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = j["id"].as_u64().unwrap();
    assert_eq!(j["spec"]["resources"]["cpus"], 0.5, "{j}");
    assert_eq!(j["spec"]["resources"]["memory"], 32 << 20, "{j}");
    assert_eq!(j["spec"]["labels"]["team"], "ml");
    assert_eq!(j["name"], "nightly train");
    assert_eq!(c.wait_final(id, 30)["state"], "succeeded");
    let logs = c.ok(&["job", "logs", &id.to_string()]);
    assert_eq!(logs, "args: a b from train.sh\ntask 0\n");

    // A script without #! is refused, saying how to run a program instead.
    let plain = dir.path().join("plain.sh");
    std::fs::write(&plain, "echo hi\n").unwrap();
    let out = c.cli(&["submit", plain.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no #! line"));
    // A directive that is not an option is refused.
    let bad = dir.path().join("bad.sh");
    std::fs::write(&bad, "#!/bin/sh\n#ZENITH echo\ntrue\n").unwrap();
    let out = c.cli(&["submit", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // Without a file of that name here, the word is a program on the node's PATH (no -- needed).
    let id = c.submit(&["echo", "plain", "--not-an-option"]);
    c.wait_final(id, 30);
    assert_eq!(
        c.ok(&["job", "logs", &id.to_string()]),
        "plain --not-an-option\n"
    );

    // `-- ./train.sh` from where the file is: a hint that it runs in the agent's directory.
    let out = zenith()
        .current_dir(dir.path())
        .env("ZENITH_SERVER", c.url())
        .env("ZENITH_TOKEN", &c.admin_token)
        .args(["submit", "--", "./train.sh"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("add --cwd ."));
}
