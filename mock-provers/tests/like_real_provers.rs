//! The knobs that make the mocks behave like real zkVM provers rather than
//! the template's silent one-second mocks, run on the real binaries: progress
//! lines on both pipes, proofs of megabytes, and helper processes that
//! outlive a killed prover.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::{abbreviate, assert_block_proof, assert_block_proof_of_len, assert_proof_hex, run};
use serde_json::Value;

const SINGLE: &str = env!("CARGO_BIN_EXE_mock-prover");
const MULTI: &str = env!("CARGO_BIN_EXE_mock-multistep-prover");
/// How long any awaited condition may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(15);

#[test]
fn without_the_new_knobs_output_is_the_templates() {
    let run = run(SINGLE, "1", &["--prove-time-ms", "0"], &[]);
    assert_block_proof(run.success(), 1, "mock-prover");
    assert_eq!(
        (run.stdout.as_str(), run.stderr.as_str()),
        ("Running prover.\n", "")
    );
    let run = common::run(MULTI, "1", &[], &[]);
    run.success();
    assert_eq!(
        (run.stdout.as_str(), run.stderr.as_str()),
        ("Running prover.\n", "")
    );
}

#[test]
fn progress_goes_to_both_pipes_within_the_prove_time() {
    let started = Instant::now();
    let args = ["--prove-time-ms", "1500", "--log-interval-ms", "200"];
    let run = run(SINGLE, "100", &args, &[]);
    let elapsed = started.elapsed();
    assert_block_proof(run.success(), 100, "mock-prover");
    // Every 200 ms, and once more at the end of the 1500 ms.
    let lines: Vec<String> = (1..=8)
        .map(|k| {
            format!(
                "block 100 step {k}/8 ({}%)",
                (k * 200).min(1500) * 100 / 1500
            )
        })
        .collect();
    let stdout: Vec<String> = std::iter::once("Running prover.".to_owned())
        .chain(lines.iter().map(|line| format!("progress: {line}")))
        .collect();
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), stdout);
    let stderr: Vec<String> = lines
        .iter()
        .map(|line| format!("stderr progress: {line}"))
        .collect();
    assert_eq!(run.stderr.lines().collect::<Vec<_>>(), stderr);
    // Printing must not add to the prove time (8 × 200 ms would make it 3.1 s).
    assert!(
        (Duration::from_millis(1500)..Duration::from_millis(2500)).contains(&elapsed),
        "took {elapsed:?}"
    );

    // The env var works too, and the multistep mock shares the knob.
    let env = [
        ("MOCK_PROVE_TIME_MS", "300"),
        ("MOCK_LOG_INTERVAL_MS", "100"),
    ];
    let run = common::run(MULTI, "7", &[], &env);
    run.success();
    assert_eq!(
        run.stdout,
        "Running prover.\nprogress: block 7 step 1/3 (33%)\n\
         progress: block 7 step 2/3 (66%)\nprogress: block 7 step 3/3 (100%)\n"
    );
    assert_eq!(run.stderr.lines().count(), 3, "{}", run.stderr);
}

#[test]
fn big_proofs_have_the_exact_length_and_depend_on_block_and_name() {
    const N: usize = 3_000_000;
    let args = ["--prove-time-ms", "0", "--proof-bytes", "3000000"];
    let prove = |block: &str, name: &str| {
        let run = run(SINGLE, block, &args, &[("MOCK_PROVER_NAME", name)]);
        assert_block_proof_of_len(run.success(), block.parse().unwrap(), name, N)
    };
    let proof = prove("23839700", "a");
    assert_eq!(prove("23839700", "a"), proof, "same block and name");
    assert_ne!(prove("23839701", "a"), proof, "another block");
    assert_ne!(prove("23839700", "b"), proof, "another name");

    let env = [("MOCK_PROVE_TIME_MS", "0"), ("MOCK_PROOF_BYTES", "3000000")];
    let run = common::run(SINGLE, "23839700", &["--name", "a"], &env);
    assert_eq!(
        assert_block_proof_of_len(run.success(), 23839700, "a", N),
        proof
    );
}

#[test]
fn multistep_steps_and_aggregate_honour_proof_bytes() {
    const N: usize = 150_000;
    let env = [("MOCK_STEPS", "10"), ("MOCK_PROOF_BYTES", "150000")];
    let tasks: Vec<Value> = serde_json::from_str(run(MULTI, "42", &[], &env).success()).unwrap();
    let proofs: Vec<Value> = tasks
        .iter()
        .map(|task| {
            serde_json::from_str(run(MULTI, &task.to_string(), &[], &env).success()).unwrap()
        })
        .collect();
    for proof in &proofs {
        assert_proof_hex(proof["data"]["proof"].as_str().unwrap(), N);
    }
    assert_ne!(proofs[0]["data"]["proof"], proofs[1]["data"]["proof"]);
    let group = Value::from(proofs).to_string();
    assert!(group.len() > 1 << 20, "group of {} bytes", group.len());
    let args = ["--proof-bytes", "150000"];
    let aggregate = run(MULTI, &group, &args, &[("MOCK_STEPS", "10")]);
    assert_block_proof_of_len(aggregate.success(), 42, "mock-multistep-prover", N);
}

#[test]
fn invalid_knob_values_exit_2_naming_the_knob() {
    for bin in [SINGLE, MULTI] {
        run(bin, "1", &["--proof-bytes", "5"], &[]).failure(
            2,
            "invalid --proof-bytes value '5': expected a whole number of characters, at least 18",
        );
        run(bin, "1", &[], &[("MOCK_PROOF_BYTES", "4MB")])
            .failure(2, "invalid MOCK_PROOF_BYTES value '4MB'");
        run(bin, "1", &[], &[("MOCK_LOG_INTERVAL_MS", "abc")]).failure(
            2,
            "invalid MOCK_LOG_INTERVAL_MS value 'abc': expected a whole number of milliseconds",
        );
        run(bin, "1", &["--log-interval-ms=-5"], &[])
            .failure(2, "invalid --log-interval-ms value '-5'");
        run(bin, "1", &["--helpers", "65"], &[])
            .failure(2, "invalid --helpers value '65': expected a whole number of helper processes from 0 to 64");
        run(bin, "1", &[], &[("MOCK_HELPERS", "two")])
            .failure(2, "invalid MOCK_HELPERS value 'two'");
    }
}

#[test]
fn helpers_outlive_a_killed_prover_until_its_group_is_killed() {
    let started = Instant::now();
    let mut prover = Spawned::start(SINGLE, &["--helpers", "2", "--prove-time-ms", "600000"]);
    let prover_pid = prover.child.id();
    let helpers = prover.helpers(2);
    for helper in &helpers {
        // Its first line: the helper is up and has taken the prover's name.
        prover.await_alive_lines(helper.pid, 1);
        let stat = stat(helper.pid).expect("helper not running");
        assert_eq!(
            (stat.comm.as_str(), stat.ppid, stat.pgrp),
            ("mock-prover", prover_pid, prover_pid),
            "helper {helper:?}: a child of the prover, in its process group"
        );
    }

    prover.child.kill().unwrap(); // SIGKILL, to the prover alone
    prover.child.wait().unwrap();
    let killed = Instant::now();
    // A helper says it is alive when it starts and then every 2 s, so its
    // line number `beats` was printed at least 2 s × `beats` after `started`:
    // a line numbered past the kill proves the helper lived on.
    let beats = ((killed - started).as_secs() / 2 + 1) as usize;
    for helper in &helpers {
        prover.await_alive_lines(helper.pid, beats + 1);
        assert!(helper.is_running(), "{helper:?} died with the prover");
    }

    // What the orchestrator must do: kill the prover's whole process group.
    assert_eq!(
        unsafe { libc::kill(-(prover_pid as i32), libc::SIGKILL) },
        0
    );
    for helper in &helpers {
        helper.await_gone();
    }
}

#[test]
fn a_prover_that_ends_normally_leaves_no_helper_behind() {
    for (failure_rate, code) in [("0", 0), ("1", 1)] {
        let args = ["--helpers", "2", "--prove-time-ms", "50"];
        let mut prover = Spawned::start(
            SINGLE,
            &[&args[..], &["--failure-rate", failure_rate]].concat(),
        );
        let helpers = prover.helpers(2);
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = prover.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the prover did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(code), "failure rate {failure_rate}");
        for helper in &helpers {
            helper.await_gone();
        }
    }
}

/// A prover started in a process group of its own, with stderr read line by
/// line in the background. Dropping it kills the prover and any helper still
/// running, so a failing test leaves nothing behind.
struct Spawned {
    child: Child,
    lines: Receiver<String>,
    /// Every stderr line received so far.
    seen: Vec<String>,
    helpers: Vec<Helper>,
    _dir: tempfile::TempDir,
}

impl Spawned {
    fn start(bin: &str, args: &[&str]) -> Spawned {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("in.json"), "7").unwrap();
        let mut child = Command::new(bin)
            .arg("--input-path")
            .arg(dir.path().join("in.json"))
            .arg("--output-path")
            .arg(dir.path().join("out.json"))
            .args(args)
            .env_clear()
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (sender, lines) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        // Ends at EOF, once the prover and every helper have closed stderr.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Spawned {
            child,
            lines,
            seen: Vec::new(),
            helpers: Vec::new(),
            _dir: dir,
        }
    }

    /// Receives stderr lines until `done(all lines so far)`; panics after
    /// [`PATIENCE`] or at EOF, naming `what` was awaited. Notes each helper
    /// as soon as its `helper started: pid PID` line arrives, so that even a
    /// failing test kills it.
    fn await_lines(&mut self, what: &str, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(pid) = line.strip_prefix("helper started: pid ") {
                        let pid = pid
                            .parse()
                            .unwrap_or_else(|_| panic!("bad line: {}", abbreviate(&line)));
                        let start = stat(pid).map(|stat| stat.start);
                        self.helpers.push(Helper { pid, start });
                    }
                    self.seen.push(line);
                }
                Err(err @ (RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected)) => {
                    panic!("no {what} on stderr ({err:?}); got: {:?}", self.seen)
                }
            }
        }
    }

    /// Waits for `count` `helper PID: alive` lines from helper `pid`.
    fn await_alive_lines(&mut self, pid: u32, count: usize) {
        let alive = format!("helper {pid}: alive");
        self.await_lines(&format!("{count} '{alive}' lines"), |lines| {
            lines.iter().filter(|line| **line == alive).count() >= count
        });
    }

    /// The first `count` helpers, from their `helper started: pid PID` lines.
    fn helpers(&mut self, count: usize) -> Vec<Helper> {
        let started = |lines: &[String]| {
            let prefix = "helper started: pid ";
            lines.iter().filter(|line| line.starts_with(prefix)).count()
        };
        self.await_lines(&format!("{count} 'helper started' lines"), |lines| {
            started(lines) >= count
        });
        assert_eq!(self.helpers.len(), count, "{:?}", self.seen);
        self.helpers.clone()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for helper in &self.helpers {
            if helper.is_running() {
                unsafe { libc::kill(helper.pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// A helper as first seen: its pid, and its start time unless it was
/// already gone, which tells it from a later process given the same pid.
#[derive(Debug, Clone)]
struct Helper {
    pid: u32,
    start: Option<u64>,
}

impl Helper {
    /// Still this helper, and not a zombie.
    fn is_running(&self) -> bool {
        stat(self.pid).is_some_and(|stat| stat.state != 'Z' && Some(stat.start) == self.start)
    }

    /// Waits until it is reaped, or a zombie its new parent has yet to reap.
    fn await_gone(&self) {
        let deadline = Instant::now() + PATIENCE;
        while self.is_running() {
            assert!(
                Instant::now() < deadline,
                "{self:?} still alive: {:?}",
                stat(self.pid)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The fields of `/proc/PID/stat` these tests look at.
#[derive(Debug)]
struct Stat {
    comm: String,
    state: char,
    ppid: u32,
    pgrp: u32,
    /// Clock ticks after boot.
    start: u64,
}

/// `None` once the process is gone (reaped).
fn stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID PGRP ... STARTTIME (the 22nd) ...": COMM may hold
    // spaces and ')', so the fields are counted from its last ')'.
    let (head, tail) = text.rsplit_once(')')?;
    let fields: Vec<&str> = tail.split_whitespace().collect();
    Some(Stat {
        comm: head.split_once('(')?.1.to_owned(),
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}
