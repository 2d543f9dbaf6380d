//! Provers die with the orchestrator, even when it is killed with `kill -9`.
//!
//! No guard runs on `kill -9`, and `PR_SET_PDEATHSIG` would need a
//! `pre_exec` hook, which makes std fork the whole orchestrator for every
//! job instead of using `posix_spawn`. Instead, each runner starts one small
//! shell at its creation: its stdin is a pipe whose write end only this
//! process holds (std opens pipes close-on-exec, so no prover inherits it).
//! When this process dies or drops the runner, the kernel closes that end,
//! the shell's `read` sees end-of-file, and the shell kills every process
//! whose environment carries the runner's owner token, which every prover
//! gets and its helpers inherit, even those that left its process group
//! with `setsid`. Jobs pay nothing for it: no message per job.

use std::hash::{BuildHasher, Hasher};
use std::io::PipeWriter;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// Set in every prover's environment to the token of the runner that
/// started it, so the watchdog finds the prover and its helpers.
pub(super) const OWNER_VAR: &str = "ORCHESTRATOR_OWNER";

/// The watchdog's script. `$1` is `OWNER_VAR=<token>`, passed as an argument,
/// never in the environment: the shell must not find itself, nor its `grep`.
/// It waits for end-of-file on stdin, then kills the owner's processes and
/// their process groups (a group member that cleared its environment still
/// dies with its group). It scans again until a pass finds nothing, as a
/// helper may fork between a scan and its kill; the passes are bounded, as
/// a process stuck in the kernel keeps its environment until it is gone.
const SCRIPT: &str = r#"trap '' HUP INT
while read -r _; do :; done
pass=0
while [ "$pass" -lt 10 ]; do
  found=
  for file in $(grep -lzxF -e "$1" /proc/[0-9]*/environ 2>/dev/null); do
    pid=${file#/proc/}
    found="$found ${pid%/environ}"
  done
  [ -n "$found" ] || exit 0
  for pid in $found; do kill -9 -"$pid" "$pid"; done 2>/dev/null
  pass=$((pass + 1))
done"#;

/// One runner's watchdog: the owner token its provers carry and the write
/// end of the watchdog's stdin, whose closing sets it off.
#[derive(Debug)]
pub(super) struct Watchdog {
    token: String,
    /// Never written to: dropping it (with the runner, or at this process's
    /// death) is the signal. `None` when the watchdog could not be started.
    _alive: Option<PipeWriter>,
}

impl Watchdog {
    /// Starts the watchdog for a new runner. If it cannot be started, the
    /// runner still works and says so once: only `kill -9` loses its cover.
    pub(super) fn start() -> Self {
        let token = new_token();
        let alive = match spawn(&token) {
            Ok(alive) => Some(alive),
            Err(e) => {
                tracing::warn!(
                    shell = SHELL,
                    error = %e,
                    "could not start the watchdog that kills provers if the orchestrator is killed outright (kill -9); \
                     provers then outlive such a kill: check that {SHELL} can run"
                );
                None
            }
        };
        Self {
            token,
            _alive: alive,
        }
    }

    /// The value of [`OWNER_VAR`] in this runner's provers.
    pub(super) fn token(&self) -> &str {
        &self.token
    }
}

/// An absolute path, so std spawns the watchdog with `posix_spawn` too.
const SHELL: &str = "/bin/sh";

/// `<pid>-<random>`: unique to this runner among the processes alive now,
/// also after its pid is reused.
fn new_token() -> String {
    // `RandomState` is seeded from the OS's random source; that is enough
    // for a name that only needs to differ from the others.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("{}-{:016x}", std::process::id(), hasher.finish())
}

/// Starts the watchdog shell; returns the write end of its stdin.
fn spawn(token: &str) -> std::io::Result<PipeWriter> {
    let (read_end, write_end) = std::io::pipe()?;
    let child = Command::new(SHELL)
        .arg("-c")
        .arg(SCRIPT)
        .arg("orchestrator-watchdog")
        .arg(format!("{OWNER_VAR}={token}"))
        .stdin(read_end)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group: Ctrl-C to the terminal's group, and our kills of
        // prover groups, never reach it.
        .process_group(0)
        .spawn()?;
    // Reaps it once it has done its scan (when the runner is dropped), so a
    // long-lived process or a test run collects no zombie. If this process
    // dies first, the watchdog outlives it, as it must, and init reaps it.
    let mut child = child;
    std::thread::Builder::new()
        .name("prover-watchdog-reaper".into())
        .spawn(move || {
            let _ = child.wait();
        })?;
    Ok(write_end)
}
