//! `zenith man DIR`: a man page per verb (`zenith.1`, `zenith-submit.1`, `zenith-job-show.1`,
//! ...), made from the same definitions as `--help`.

use std::path::Path;

/// Writes the pages of `cmd` and every subcommand under it into `dir`; returns how many.
pub fn write_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd;
    cmd.build();
    write_tree(&cmd, "zenith", dir)
}

fn write_tree(cmd: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<usize> {
    // Named as the page is looked up (`man zenith-job-show`), titled the same.
    let mut text = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name.to_string())
        .render(&mut text)?;
    std::fs::write(dir.join(format!("{name}.1")), text)?;
    let mut n = 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        n += write_tree(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(n)
}
