//! Kills the helpers a prover left behind outside its process group: every
//! process whose environment carries its run's tag (`setsid` keeps the
//! environment). One that cleared its environment escapes; nothing short
//! of a cgroup would catch it.
//!
//! This runs at the end of every job. Reading the environment of every
//! process of the host cost ~160 syscalls a job on an idle machine, and
//! more on a busy one. Only processes started after the prover can be its
//! helpers, so only their environments are read: the pids handed out since
//! the prover's, probed one by one when they are few, else picked from the
//! listing of `/proc`.

use std::io::Read;
use std::path::Path;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// Kills every process holding the environment entry `wanted`
/// (`NAME=value`) among those started after process `leader`.
pub(super) fn kill(wanted: &str, leader: u32) {
    // Unknown (no procfs entry, a kernel without it): every process counts.
    let window = last_pid().map(|last| PidWindow {
        after: leader,
        last,
    });
    // Grown by the first environment read: usually no pid was handed out
    // during the job, and 64 KiB allocated for nothing each job made the
    // heap grow and shrink (page faults) at every job.
    let mut killer = Killer {
        wanted: wanted.as_bytes(),
        environ: Vec::new(),
    };
    // Usually only a few pids were handed out during the job: opening
    // each one's entry (absent ones fail at once) costs less than listing
    // every process of the host. A pid may name a thread, whose entry
    // exists though unlisted; its environment is its process's.
    if let Some(pids) = window.and_then(PidWindow::few) {
        pids.for_each(|pid| killer.check(pid));
        return;
    }
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return;
    };
    processes
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|&pid| window.is_none_or(|w| w.contains(pid)))
        .for_each(|pid| killer.check(pid));
}

/// Kills the processes whose environment holds `wanted`, reading each into
/// one buffer with as few syscalls as procfs allows.
struct Killer<'a> {
    wanted: &'a [u8],
    environ: Vec<u8>,
}

impl Killer<'_> {
    fn check(&mut self, pid: u32) {
        let Ok(raw) = i32::try_from(pid) else {
            return;
        };
        // Gone, or another user's (unreadable, and not ours to kill).
        let path = format!("/proc/{pid}/environ");
        if read_environ(Path::new(&path), &mut self.environ).is_err() {
            return;
        }
        if self
            .environ
            .split(|&b| b == 0)
            .any(|var| var == self.wanted)
        {
            // It carries this run's tag, so the prover started it.
            let _ = signal::kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
    }
}

/// Up to how many pids handed out during a job are probed one by one
/// rather than found by listing `/proc`.
const FEW_PIDS: u32 = 256;

/// The last pid the kernel handed out in this process's pid namespace.
fn last_pid() -> Option<u32> {
    // One read into a stack buffer (a pid has at most 7 digits):
    // `read_to_string` would add a `statx` and a second read for the end.
    let mut text = [0u8; 16];
    let read = std::fs::File::open("/proc/sys/kernel/ns_last_pid")
        .ok()?
        .read(&mut text)
        .ok()?;
    std::str::from_utf8(&text[..read]).ok()?.trim().parse().ok()
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
    /// Its pids, when there are at most [`FEW_PIDS`] and it does not wrap.
    fn few(self) -> Option<std::ops::RangeInclusive<u32>> {
        (self.after <= self.last && self.last - self.after <= FEW_PIDS)
            .then(|| self.after + 1..=self.last)
    }

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
    use super::{FEW_PIDS, PidWindow};

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
        assert_eq!(w.few().map(Iterator::count), Some(0));
    }

    #[test]
    fn only_a_small_unwrapped_window_is_probed_pid_by_pid() {
        let small = PidWindow {
            after: 100,
            last: 103,
        };
        assert_eq!(
            small.few().map(Iterator::collect),
            Some(vec![101, 102, 103])
        );
        let large = PidWindow {
            after: 100,
            last: 100 + FEW_PIDS + 1,
        };
        assert!(large.few().is_none());
        let wrapped = PidWindow {
            after: 4_194_300,
            last: 3,
        };
        assert!(wrapped.few().is_none());
    }
}
