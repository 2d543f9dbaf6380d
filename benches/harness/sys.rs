//! What every part of the bench needs from the system: the machine's
//! description, its load, a child process timed with its rusage, a running
//! one's CPU time, free ports, the test tools, and min/median/max over
//! repeats.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The machine a report was taken on.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub ram_gib: f64,
    pub kernel: String,
}

impl Machine {
    /// Reads /proc: CPU model, online cores, RAM, kernel release.
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let ram_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ram_gib: ram_kib / 1024.0 / 1024.0,
            kernel,
        }
    }
}

/// The 1-minute load average now: other people's compiles on the shared
/// machine show here, and the report lists it beside each measurement.
pub fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// One timed process: wall clock from spawn to exit, and the rusage wait4
/// returns (the process and the children it waited for: its provers).
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub wall: Duration,
    pub cpu: Duration,
    /// Peak resident set of the process (or its largest waited-for child).
    pub maxrss_kib: u64,
    /// The 1-minute load average just before the run.
    pub load: f64,
}

/// Spawns `command` and waits for it with wait4; fails on a non-zero exit.
pub fn measure(command: &mut Command) -> Result<Measured, String> {
    let load = load();
    let started = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("spawn {command:?}: {e}"))?;
    let (status, usage) = wait4(&child)?;
    let wall = started.elapsed();
    if status != 0 {
        return Err(format!("{command:?} exited with wait status {status:#x}"));
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Measured {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        maxrss_kib: usage.ru_maxrss as u64,
        load,
    })
}

/// wait4(2) on `child`: its wait status and rusage.
pub fn wait4(child: &Child) -> Result<(i32, libc::rusage), String> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child, with valid out-pointers.
        let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        if rc >= 0 {
            return Ok((status, usage));
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4: {error}"));
        }
    }
}

/// Sends SIGTERM to `child` (a role or a follower that runs until told).
pub fn terminate(child: &Child) {
    // SAFETY: kill(2) on our own child, not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// The CPU time (user + system) process `pid` has used so far, from
/// `/proc/<pid>/stat`; `None` once it is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (which may hold spaces), fields 3 onwards;
    // utime and stime are fields 14 and 15, in clock ticks.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A test tool (`anvil`, `nats-server`): `<repo>/.deps/bin/<name>`, else on
/// PATH, as `make test` installs them.
pub fn tool(name: &str) -> PathBuf {
    let local = repo().join(".deps/bin").join(name);
    if local.is_file() {
        return local;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: run scripts/install-test-deps.sh"))
}

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Waits until `ready()` holds, polling every 20 ms, for up to `limit`.
pub fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ready()
}

/// Min, median and max of some repeats.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Stats {
    /// Of `values` (at least one).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Stats {
        let mut v: Vec<f64> = values.into_iter().collect();
        assert!(!v.is_empty(), "no values");
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Stats {
            min: v[0],
            median,
            max: v[v.len() - 1],
        }
    }

    /// `median (min–max)` with `decimals` digits.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

/// Compiles one C source of `benches/` with `cc -O2` into `out`.
pub fn cc(source: &str, out: &Path) -> Result<(), String> {
    let status = Command::new("cc")
        .args(["-O2", "-Wall", "-pthread", "-o"])
        .arg(out)
        .arg(repo().join("benches").join(source))
        .status()
        .map_err(|e| format!("cc: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cc {source} failed: {status}"))
    }
}
