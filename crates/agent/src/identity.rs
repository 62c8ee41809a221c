//! The node's identity (kept in the data directory, so several agents can share a machine)
//! and its detected resources.

use std::path::Path;
use zenith_model::{NodeId, Resources};

/// Reads `node.id` from `dir`, creating it on first start as `<hostname>-<random>`.
pub fn node_id(dir: &Path) -> std::io::Result<NodeId> {
    let path = dir.join("node.id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        if let Ok(id) = NodeId::parse(s.trim()) {
            return Ok(id);
        }
    }
    let host: String = hostname()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    let mut rnd = [0u8; 4];
    getrandom::fill(&mut rnd).map_err(|e| std::io::Error::other(e.to_string()))?;
    let raw = format!(
        "{}-{}",
        if host.is_empty() { "node" } else { &host },
        hex::encode(rnd)
    );
    let id = NodeId::parse(&raw).map_err(|e| std::io::Error::other(e.to_string()))?;
    {
        use std::io::Write;
        let mut f = crate::private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        f.write_all(id.as_str().as_bytes())?;
    }
    Ok(id)
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "node".into())
}

/// Cores and memory of this machine.
pub fn detect_resources() -> Resources {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    Resources {
        cpu_millis: cores * 1000,
        memory,
        ..Default::default()
    }
}
