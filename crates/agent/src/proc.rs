//! The one spot that needs `unsafe`: a `pre_exec` hook in the forked child.

use tokio::process::Command;

/// Asks the kernel to SIGKILL the job's leader process if the agent dies, so a crashed agent
/// does not leave its jobs running unsupervised (the rest of the group is reaped by the next
/// agent start, see `Executor::reap_leftovers`).
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which
    // is async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}
