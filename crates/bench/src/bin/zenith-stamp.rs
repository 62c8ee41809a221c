//! `zenith-stamp FILE`: writes the wall clock (ns since the epoch) to FILE and exits — the
//! first act of a benchmark job. A separate, std-only binary so that its own start-up (dynamic
//! loading of a large binary) does not count as the scheduler's latency.
#![allow(clippy::disallowed_methods)]

fn main() -> std::io::Result<()> {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(std::io::Error::other)?
        .as_nanos();
    let file = std::env::args_os()
        .nth(1)
        .ok_or_else(|| std::io::Error::other("usage: zenith-stamp FILE"))?;
    std::fs::write(file, ns.to_string())
}
