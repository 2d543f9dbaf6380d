//! Kills the helpers a prover left behind outside its process group: every
//! process whose environment carries its run's tag (`setsid` keeps the
//! environment). One that cleared its environment escapes; nothing short
//! of a cgroup would catch it.
//!
//! This runs at the end of every job. Reading the environment of every
//! process of the host cost ~160 syscalls a job on an idle machine, and
//! more on a busy one; only processes started after the prover can be its
//! helpers, so only their environments are read.

use std::io::Read;
use std::path::Path;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// Kills every process holding the environment entry `wanted`
/// (`NAME=value`) among those started after process `leader`.
pub(super) fn kill(wanted: &str, leader: u32) {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return;
    };
    let pids: Vec<u32> = processes
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    // Read after the listing, so every pid in it was handed out by then.
    // Unknown (no procfs entry, a kernel without it): every process counts.
    let window = last_pid().map(|last| PidWindow {
        after: leader,
        last,
    });
    // Each environment is read into one buffer, with as few syscalls as
    // procfs allows.
    let mut environ = Vec::with_capacity(ENVIRON_CHUNK);
    for pid in pids {
        if window.is_some_and(|w| !w.contains(pid)) {
            continue;
        }
        // Other users' processes are unreadable, and not ours to kill.
        if read_environ(
            &Path::new("/proc").join(pid.to_string()).join("environ"),
            &mut environ,
        )
        .is_err()
        {
            continue;
        }
        if environ
            .split(|&b| b == 0)
            .any(|var| var == wanted.as_bytes())
        {
            // It carries this run's tag, so the prover started it.
            if let Ok(pid) = i32::try_from(pid) {
                let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// The last pid the kernel handed out in this process's pid namespace.
fn last_pid() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The pids handed out after `after`, up to and including `last`. Pids are
/// handed out in increasing order and wrap at `pid_max`, so the window may
/// wrap too; a pid reused since (a process that was in the window and
/// ended) is in it as well, which only costs a read.
#[derive(Debug, Clone, Copy)]
struct PidWindow {
    after: u32,
    last: u32,
}

impl PidWindow {
    fn contains(self, pid: u32) -> bool {
        if self.after <= self.last {
            self.after < pid && pid <= self.last
        } else {
            self.after < pid || pid <= self.last
        }
    }
}

/// How much of a process's environment one `read` asks for.
const ENVIRON_CHUNK: usize = 64 * 1024;

/// Reads `/proc/<pid>/environ` into `buffer` (cleared first): open, read,
/// close, and more reads only for an environment over [`ENVIRON_CHUNK`].
/// `std::fs::read` would add a `statx` (useless: procfs says size 0) and
/// several growing reads plus one to see the end.
fn read_environ(path: &Path, buffer: &mut Vec<u8>) -> std::io::Result<()> {
    buffer.clear();
    let mut file = std::fs::File::open(path)?;
    loop {
        let start = buffer.len();
        buffer.resize(start + ENVIRON_CHUNK, 0);
        let read = file.read(&mut buffer[start..])?;
        buffer.truncate(start + read);
        // procfs fills a read up to its size while the environment lasts,
        // so a short read is the end: no extra read to see 0 bytes.
        if read < ENVIRON_CHUNK {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PidWindow;

    #[test]
    fn the_window_holds_the_pids_handed_out_after_the_leader() {
        let w = PidWindow {
            after: 100,
            last: 200,
        };
        assert!(
            !w.contains(100),
            "the leader itself is killed with its group"
        );
        assert!(w.contains(101) && w.contains(200));
        assert!(!w.contains(99) && !w.contains(201) && !w.contains(1));
    }

    #[test]
    fn the_window_wraps_with_the_pids() {
        let w = PidWindow {
            after: 4_194_000,
            last: 50,
        };
        assert!(w.contains(4_194_001) && w.contains(4_194_303));
        assert!(w.contains(1) && w.contains(50));
        assert!(!w.contains(51) && !w.contains(4_194_000) && !w.contains(300));
    }

    #[test]
    fn nothing_was_handed_out_when_the_leader_is_the_last() {
        let w = PidWindow {
            after: 300,
            last: 300,
        };
        assert!(!w.contains(300) && !w.contains(301) && !w.contains(299));
    }
}
