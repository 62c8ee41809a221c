//! `zenith submit job.sh [ARGS...]`: a batch script, as sbatch takes one. Its `#ZENITH` lines
//! (before the first line of code) are submit options (`#ZENITH --cpus 2 --memory 4G`);
//! options on the command line win over them. The script's text travels in the job, run by
//! the interpreter its `#!` line names (`bash -c TEXT job.sh ARGS`, `python3 -c TEXT ARGS`), so
//! the node needs that interpreter, not the file.

use super::UsageError;
use std::path::Path;

/// Largest script sent (the job's argv limit is 1 MiB).
const MAX_SCRIPT_BYTES: u64 = 512 * 1024;

/// A script read from disk: its options and the argv that runs it.
#[derive(Debug, PartialEq)]
pub struct Script {
    /// Options from its `#ZENITH` lines, split as a shell would.
    pub directives: Vec<String>,
    pub command: Vec<String>,
    /// The file's name, the job's default name.
    pub name: String,
}

/// Interpreters whose `-c TEXT` runs a program given as text.
fn runs_text(program: &str) -> Option<bool> {
    let base = program.rsplit('/').next().unwrap_or(program);
    let shell = ["sh", "bash", "zsh", "ksh", "dash", "ash", "mksh"];
    if shell.contains(&base) {
        return Some(true);
    }
    let python = base.starts_with("python") || base.starts_with("pypy");
    python.then_some(false)
}

/// Reads `path` as a script, if it is one: `None` when no such file exists here (then it is a
/// program on the node's PATH).
pub fn read(path: &Path, args: &[String]) -> anyhow::Result<Option<Script>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m,
        _ => return Ok(None),
    };
    let shown = path.display();
    if meta.len() > MAX_SCRIPT_BYTES {
        return Err(UsageError(format!(
            "{shown} is larger than {} KiB: too big to send as a job; run it from a shared file system with -- (zenith submit --cwd DIR -- ./{shown})",
            MAX_SCRIPT_BYTES / 1024
        ))
        .into());
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read {shown}: {e}")))?;
    parse(&text, &path.to_string_lossy(), args).map(Some)
}

/// The script `text` named `name` with arguments `args`.
pub fn parse(text: &str, name: &str, args: &[String]) -> anyhow::Result<Script> {
    let first = text.lines().next().unwrap_or("");
    let Some(shebang) = first.strip_prefix("#!") else {
        return Err(UsageError(format!(
            "{name} has no #! line naming its interpreter (#!/bin/bash); to run a program instead, put it after --: zenith submit -- {name}"
        ))
        .into());
    };
    let interpreter: Vec<String> = shebang.split_whitespace().map(str::to_string).collect();
    // `#!/usr/bin/env [-S] python3`: the program is the first word after env's options.
    let program = match interpreter.first().map(String::as_str) {
        Some(p) if p.ends_with("/env") => interpreter[1..]
            .iter()
            .find(|w| !w.starts_with('-'))
            .cloned()
            .unwrap_or_default(),
        Some(p) => p.to_string(),
        None => String::new(),
    };
    let Some(is_shell) = runs_text(&program) else {
        return Err(UsageError(format!(
            "{name}: scripts run by sh, bash, zsh, ksh, dash or python are sent as text; for {:?}, put the program after -- with --cwd on a shared file system",
            if program.is_empty() { shebang.trim() } else { &program }
        ))
        .into());
    };
    let mut directives = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let line = line.trim();
        if let Some(opts) = line.strip_prefix("#ZENITH") {
            let words = shlex::split(opts).ok_or_else(|| {
                UsageError(format!(
                    "{name} line {}: unbalanced quotes in #ZENITH",
                    i + 1
                ))
            })?;
            directives.extend(words);
        } else if !(line.is_empty() || line.starts_with('#')) {
            break; // directives end where the code begins, as sbatch's do
        }
    }
    let base = name.rsplit('/').next().unwrap_or(name).to_string();
    let mut command = interpreter;
    command.push("-c".into());
    command.push(text.to_string());
    if is_shell {
        command.push(base.clone()); // $0
    }
    command.extend(args.iter().cloned());
    Ok(Script {
        directives,
        command,
        name: base,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_until_the_code_and_the_interpreter_from_the_shebang() {
        let text = "#!/bin/bash -e\n# a comment\n#ZENITH --cpus 2 --memory 1G\n#ZENITH --name 'my job'\n\necho hi\n#ZENITH --gpus 1\n";
        let s = parse(text, "dir/train.sh", &["a".into()]).unwrap();
        assert_eq!(
            s.directives,
            ["--cpus", "2", "--memory", "1G", "--name", "my job"]
        );
        assert_eq!(s.command[..3], ["/bin/bash", "-e", "-c"]);
        assert_eq!(s.command[3], text);
        assert_eq!(s.command[4..], ["train.sh", "a"]);
        assert_eq!(s.name, "train.sh");

        let py = parse("#!/usr/bin/env python3\nprint(1)\n", "p.py", &[]).unwrap();
        assert_eq!(py.command[..3], ["/usr/bin/env", "python3", "-c"]);
        assert_eq!(py.command.len(), 4);

        let e = parse("echo hi\n", "x.sh", &[]).unwrap_err().to_string();
        assert!(e.contains("no #! line"), "{e}");
        let e = parse("#!/usr/bin/node\n", "x.js", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"/usr/bin/node\""), "{e}");
        let e = parse("#!/bin/sh\n#ZENITH --name 'x\n", "q.sh", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
