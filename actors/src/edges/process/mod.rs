//! The child-process edge: runs a prover binary for one job, following the
//! contract `BINARY --input-path IN.json --output-path OUT.json`.

mod output;
mod tagged;
mod watchdog;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use thiserror::Error;
use tokio::process::Command;

use self::output::{LineTags, Pipe, Tail};
use self::watchdog::{OWNER_VAR, Watchdog};
use super::{Job, JobFailure, JobRunner};

pub use output::MAX_LINE_BYTES;

/// How long the pipes are still read once the prover has exited and its
/// process group was killed: a helper that left the group may hold them open.
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// Set in every prover's environment to a value unique to its run. A helper
/// that left the prover's process group (`setsid`) still inherits it, so the
/// run's end finds and kills it too.
const JOB_TAG_VAR: &str = "ORCHESTRATOR_JOB_TAG";

/// Job directories made by this process so far, across all its runners
/// (several pools may share a work dir): the last part of each one's name,
/// so no two jobs of this process ever get the same directory, not even
/// while one's files are still being removed.
static JOB_DIRS: AtomicU64 = AtomicU64::new(0);

/// Why a prover binary cannot be used at all. Reported once, at start.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BinaryError {
    /// Nothing at that path, or not on `PATH`.
    #[error("prover binary {0} not found: set --binary / BINARY to an executable file")]
    NotFound(String),
    /// A file, but without execute permission.
    #[error(
        "prover binary {0} is not executable: run `chmod +x {0}` or point --binary / BINARY elsewhere"
    )]
    NotExecutable(String),
}

/// Runs a prover binary as a child process, one per job.
///
/// Exec, never a shell; each child leads its own process group so a timeout or
/// shutdown kills the prover's own children too. Children are started with
/// `posix_spawn` (no `pre_exec` hook, an absolute program path), so starting
/// one does not copy the orchestrator's memory map; a watchdog process
/// (`watchdog.rs`) instead of `PR_SET_PDEATHSIG` kills them if the
/// orchestrator is killed outright.
#[derive(Debug)]
pub struct ProcessRunner {
    binary: PathBuf,
    work_dir: PathBuf,
    timeout: Duration,
    envs: Vec<(String, String)>,
    /// Dropped with the runner, which sets the watchdog off.
    _watchdog: Watchdog,
}

impl ProcessRunner {
    /// A runner for `binary` (a path, or a name looked up on `PATH`) that
    /// keeps job files under `work_dir` and kills a job after `timeout`.
    ///
    /// Job directories left in `work_dir` by a process that is gone (an
    /// orchestrator killed with `kill -9` gets no chance to remove them)
    /// are removed here, before this runner starts any job.
    ///
    /// Starts this runner's watchdog (one `/bin/sh`, see `watchdog.rs`): when
    /// the runner is dropped or this process dies, whatever its provers left
    /// running is killed.
    pub fn new(binary: &Path, work_dir: PathBuf, timeout: Duration) -> Result<Self, BinaryError> {
        let binary = resolve_binary(binary)?;
        remove_stale_job_dirs(&work_dir);
        let watchdog = Watchdog::start();
        Ok(Self {
            binary,
            work_dir,
            timeout,
            envs: vec![(OWNER_VAR.into(), watchdog.token().into())],
            _watchdog: watchdog,
        })
    }

    /// Extra environment for every child, on top of the orchestrator's own.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// The resolved binary path.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    async fn run_in(&self, dir: &Path, job: &Job) -> Result<Vec<u8>, JobFailure> {
        let input_path = dir.join(INPUT_FILE);
        let output_path = dir.join(OUTPUT_FILE);
        // The job directory is this run's alone (its name holds our pid and
        // a count of this process's job dirs), so its path tags the run.
        let tag = dir.display().to_string();
        // A small file in a directory just made: a plain write costs three
        // syscalls, less than a hop to tokio's blocking pool and back.
        std::fs::write(&input_path, &job.input).map_err(|e| io_failure(&input_path, e))?;

        let mut command = Command::new(&self.binary);
        command
            .arg("--input-path")
            .arg(&input_path)
            .arg("--output-path")
            .arg(&output_path)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env(JOB_TAG_VAR, &tag)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(gpu) = &job.gpu {
            command.env("CUDA_VISIBLE_DEVICES", gpu);
        }
        // No `pre_exec` hook here, ever: any hook makes std fork the whole
        // orchestrator instead of using posix_spawn (CLONE_VM | CLONE_VFORK).
        let mut child = command.spawn().map_err(|e| JobFailure::Spawn {
            binary: self.binary.display().to_string(),
            reason: e.to_string(),
        })?;
        let group = child.id().map(|pid| GroupGuard {
            pgid: pid as i32,
            tag: tag.clone(),
        });
        let tags = LineTags {
            job: job.id.clone(),
            slot: job.slot,
        };
        let stderr_tail = Tail::default();
        // Aborted when dropped, so a job cut short leaves no reader behind.
        let readers = [
            child.stdout.take().map(|pipe| {
                tokio::spawn(output::forward(
                    pipe,
                    Pipe::Stdout,
                    tags.clone(),
                    Tail::default(),
                ))
            }),
            child.stderr.take().map(|pipe| {
                tokio::spawn(output::forward(
                    pipe,
                    Pipe::Stderr,
                    tags,
                    stderr_tail.clone(),
                ))
            }),
        ];
        let readers = AbortOnDrop(readers.into_iter().flatten().collect());

        let status = tokio::time::timeout(self.timeout, child.wait()).await;
        // Whatever happened, the prover's own children must not outlive it.
        drop(group);
        readers.finish(PIPE_GRACE).await;
        let stderr = stderr_tail.text();

        let status = match status {
            Err(_) => {
                return Err(JobFailure::Timeout {
                    millis: self.timeout.as_millis() as u64,
                });
            }
            Ok(status) => status.map_err(|e| JobFailure::Io {
                reason: format!("waiting for the prover: {e}"),
            })?,
        };
        if let Some(signal) = status.signal() {
            return Err(JobFailure::Killed { signal, stderr });
        }
        if !status.success() {
            return Err(JobFailure::Exit {
                code: status.code().unwrap_or(-1),
                stderr,
            });
        }
        // Just written by the child, so in the page cache, and at most a few
        // MiB (a proof): read in place rather than on tokio's blocking pool.
        let output = match std::fs::read(&output_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(JobFailure::MissingOutput);
            }
            Err(e) => return Err(io_failure(&output_path, e)),
        };
        serde_json::from_slice::<serde::de::IgnoredAny>(&output).map_err(|e| {
            JobFailure::InvalidOutput {
                reason: format!("not JSON ({e})"),
            }
        })?;
        Ok(output)
    }
}

#[async_trait]
impl JobRunner for ProcessRunner {
    async fn run(&self, job: &Job) -> Result<Vec<u8>, JobFailure> {
        let run = JOB_DIRS.fetch_add(1, Ordering::Relaxed);
        let safe_id = super::safe_name(&job.id);
        let dir = self
            .work_dir
            .join(format!("{safe_id}.{}.{run}", std::process::id()));
        make_job_dir(&self.work_dir, &dir).map_err(|e| io_failure(&dir, e))?;
        // Removed on drop too, so a job cut short by shutdown leaves no files.
        let cleanup = JobDir(dir.clone());
        let result = self.run_in(&dir, job).await;
        // The output is read: removing the files (unlinks and an rmdir,
        // each a journal update) is a task of its own on this thread, which
        // runs once the result is handed on, mostly while the worker's next
        // prover already runs. Measured faster than the blocking pool (no
        // other thread to wake). A task dropped unrun at shutdown drops the
        // guard, which removes the files all the same.
        tokio::spawn(async move { drop(cleanup) });
        result
    }
}

/// Makes a job's directory with one `mkdir`; the work dir itself is made
/// (with its parents) only when it is missing: at the first job, or after
/// something removed it.
fn make_job_dir(work_dir: &Path, dir: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(work_dir)?;
            std::fs::create_dir(dir)
        }
        // Left by an earlier process with this pid and not yet removed:
        // reused, as its files are overwritten.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Removes the job directories (`<job>.<pid>.<run>`, see
/// [`ProcessRunner::run`]) in `work_dir` whose process is gone, or is this
/// one: a runner is made before its process runs any job, so a directory
/// with this process's pid is left by an earlier process that had the same
/// pid (pid 1 in a restarted container). A directory of a live process is
/// kept: another orchestrator may share the work dir. Nothing else in
/// `work_dir` is touched, and a failure is only logged.
fn remove_stale_job_dirs(work_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return;
    };
    let own = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(job_dir_pid) else {
            continue;
        };
        if pid != own && process_exists(pid) || !entry.path().is_dir() {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(dir = %entry.path().display(), error = %e, "could not remove a stale job directory")
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, work_dir = %work_dir.display(), "removed job directories left by stopped processes");
    }
}

/// The pid in a job directory's name `<job>.<pid>.<run>`, if it is one
/// (`<job>` is a [`super::safe_name`], so it holds no dot).
fn job_dir_pid(name: &str) -> Option<u32> {
    let mut parts = name.split('.');
    let (job, pid, run) = (parts.next()?, parts.next()?, parts.next()?);
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some() || job.is_empty() || !all_digits(pid) || !all_digits(run) {
        return None;
    }
    pid.parse().ok()
}

/// Whether a process with `pid` exists (ours or another user's).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // No signal: only whether the process exists (EPERM: it does, not ours).
    matches!(
        signal::kill(Pid::from_raw(pid), None),
        Ok(()) | Err(Errno::EPERM)
    )
}

/// The pipe readers of one job; aborted if the job is dropped midway.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl AbortOnDrop {
    /// Waits up to `grace` for the readers to reach the end of their pipes,
    /// then gives up on them (a helper that escaped the group holds them).
    async fn finish(mut self, grace: Duration) {
        let handles = std::mem::take(&mut self.0);
        let abort: Vec<_> = handles.iter().map(|h| h.abort_handle()).collect();
        let all = futures_util::future::join_all(handles);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                "a process left by the prover still holds its output open; no longer reading it"
            );
            abort.iter().for_each(tokio::task::AbortHandle::abort);
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

/// Removes a job's directory when the job ends, however it ends.
struct JobDir(PathBuf);

/// The job files in a job's directory, as the contract's two paths name them.
const INPUT_FILE: &str = "input.json";
const OUTPUT_FILE: &str = "output.json";

impl Drop for JobDir {
    fn drop(&mut self) {
        // Usually the directory holds just the two job files: three unlinks
        // cost less than a directory walk (open, stat, read it twice, close).
        for file in [INPUT_FILE, OUTPUT_FILE] {
            let _ = std::fs::remove_file(self.0.join(file));
        }
        match std::fs::remove_dir(&self.0) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            // The prover left files of its own (a temp file beside the
            // output): the walk removes them too.
            Err(_) => {}
        }
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "could not remove job directory");
        }
    }
}

/// Kills a prover's process group, and every process that carries its run's
/// tag, when dropped: on exit, timeout, or when the job's future is dropped
/// at shutdown.
struct GroupGuard {
    pgid: i32,
    tag: String,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.pgid);
        // The group leader is the prover, so its helpers came after it.
        tagged::kill(&format!("{JOB_TAG_VAR}={}", self.tag), self.pgid as u32);
    }
}

fn kill_group(pgid: i32) {
    // A group this process created for a child; gone already is fine.
    let _ = signal::killpg(Pid::from_raw(pgid), Signal::SIGKILL);
}

fn io_failure(path: &Path, e: std::io::Error) -> JobFailure {
    JobFailure::Io {
        reason: format!("{}: {e}", path.display()),
    }
}

/// Finds `binary` as a path or on `PATH`, and checks it can be executed.
fn resolve_binary(binary: &Path) -> Result<PathBuf, BinaryError> {
    let shown = binary.display().to_string();
    // A bare name is looked up on PATH as exec would (executables only).
    let candidate = if binary.components().count() > 1 || binary.is_absolute() {
        Some(binary.to_path_buf())
    } else {
        which::which(binary).ok()
    };
    let path = candidate
        .filter(|p| p.is_file())
        .ok_or_else(|| BinaryError::NotFound(shown.clone()))?;
    let mode = path.metadata().map(|m| m.permissions().mode()).unwrap_or(0);
    if mode & 0o111 == 0 {
        return Err(BinaryError::NotExecutable(shown));
    }
    // Absolute, so each spawn execs it directly (std's posix_spawn path)
    // and a change of working directory cannot make it point elsewhere.
    std::path::absolute(&path).map_err(|_| BinaryError::NotFound(shown))
}

#[cfg(test)]
mod tests;
