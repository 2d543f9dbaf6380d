//! The parts of the simulated proving work that make a mock look like a real
//! zkVM prover to the orchestrator: progress lines on both
//! pipes for the whole prove time, and helper child processes (real provers
//! start GPU and witness helpers) that outlive the prover when it is killed,
//! so the orchestrator's process-group kill has something to take.

use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use prover_sdk::BoxError;

/// The internal first argument that turns a mock binary into a helper; not a
/// documented flag, only what a prover passes when it re-executes itself.
pub const HELPER_ARG: &str = "--mock-helper";
/// This process's executable on Linux.
const PROC_SELF_EXE: &str = "/proc/self/exe";
/// How often a helper says it is alive.
const HELPER_BEAT: Duration = Duration::from_secs(2);
/// A helper exits by itself after this long, so an orchestrator that fails to
/// kill it (or a test that kills only the prover) never litters a machine for good.
const HELPER_LIFETIME: Duration = Duration::from_secs(600);

/// Sleeps for `total`. With a non-zero `interval`, prints one progress line on
/// stdout and one on stderr after every interval and at the end, flushing each:
/// `progress: block B step K/N (P%)` and `stderr progress: block B step K/N (P%)`.
/// Each wake-up is an absolute deadline from the start, so printing does not
/// lengthen the run. A closed pipe is an error, as it would kill a real prover.
pub fn sleep_with_progress(
    block: u64,
    total: Duration,
    interval: Duration,
) -> Result<(), BoxError> {
    if interval.is_zero() {
        std::thread::sleep(total);
        return Ok(());
    }
    let start = Instant::now();
    let (total_ns, interval_ns) = (total.as_nanos(), interval.as_nanos());
    let steps = total_ns.div_ceil(interval_ns);
    for step in 1..=steps {
        let offset_ns = (interval_ns * step).min(total_ns);
        let offset = Duration::from_nanos(u64::try_from(offset_ns).unwrap_or(u64::MAX));
        if let Some(left) = (start + offset).checked_duration_since(Instant::now()) {
            std::thread::sleep(left);
        }
        let line = format!(
            "block {block} step {step}/{steps} ({}%)",
            offset_ns * 100 / total_ns
        );
        print_line(&mut io::stdout(), &format!("progress: {line}"))
            .map_err(|err| format!("cannot print progress on stdout: {err}"))?;
        print_line(&mut io::stderr(), &format!("stderr progress: {line}"))
            .map_err(|err| format!("cannot print progress on stderr: {err}"))?;
    }
    Ok(())
}

/// Writes `line` and a newline in one `write` and flushes, so that lines of
/// the prover and its helpers, which share the pipes, never interleave
/// (`writeln!` on unbuffered stderr writes piece by piece).
fn print_line(out: &mut impl Write, line: &str) -> io::Result<()> {
    out.write_all(format!("{line}\n").as_bytes())?;
    out.flush()
}

/// The helper processes of one proving step. Dropping it (when the step ends,
/// successfully or not) kills and reaps them; if the prover is killed instead,
/// nothing runs and they stay, as a real prover's helpers would.
pub struct Helpers(Vec<Child>);

impl Helpers {
    /// Starts `count` helpers, each this same executable run as
    /// `EXE --mock-helper` with stdout and stderr inherited, in the prover's
    /// process group. Prints `helper started: pid PID` on stderr for each.
    pub fn start(count: usize) -> Result<Helpers, BoxError> {
        let mut helpers = Helpers(Vec::with_capacity(count));
        if count == 0 {
            return Ok(helpers);
        }
        // The running executable even if a rebuild has replaced the file
        // since (then `current_exe` names a deleted path), as tests that
        // rebuild the mocks while others run them do.
        let exe = match Path::new(PROC_SELF_EXE) {
            path if path.exists() => path.to_owned(),
            _ => std::env::current_exe()
                .map_err(|err| format!("cannot find this executable to start helpers: {err}"))?,
        };
        let arg0 = std::env::args_os()
            .next()
            .unwrap_or_else(|| exe.clone().into());
        for _ in 0..count {
            // On error, the helpers started so far are killed when `helpers` drops.
            let child = Command::new(&exe)
                .arg0(&arg0)
                .arg(HELPER_ARG)
                .stdin(Stdio::null())
                .spawn()
                .map_err(|err| format!("cannot start helper {}: {err}", exe.display()))?;
            let _ = print_line(
                &mut io::stderr(),
                &format!("helper started: pid {}", child.id()),
            );
            helpers.0.push(child);
        }
        Ok(helpers)
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // Fails only if the helper already exited; `wait` reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The whole life of a helper: `helper PID: alive` on stderr every
/// [`HELPER_BEAT`], deliberately ignoring its parent's death and closed pipes
/// (someone else must kill it), until [`HELPER_LIFETIME`] is over.
pub fn helper_main() -> ExitCode {
    // Started as /proc/self/exe, the kernel names the process `exe`; take the
    // prover's name back (at most 15 bytes) so `ps` and tests can tell it.
    let name = std::env::args_os().next().map(PathBuf::from);
    if let Some(name) = name.as_deref().and_then(Path::file_name) {
        let name = name.as_encoded_bytes();
        let _ = std::fs::write("/proc/self/comm", &name[..name.len().min(15)]);
    }
    let pid = std::process::id();
    let start = Instant::now();
    loop {
        let _ = print_line(&mut io::stderr(), &format!("helper {pid}: alive"));
        let left = HELPER_LIFETIME.saturating_sub(start.elapsed());
        if left.is_zero() {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(left.min(HELPER_BEAT));
    }
}
