//! A backfill in standalone mode keeps pace with its provers: the block
//! watcher announces a block only when the prover pool has room for it, so
//! a long range costs the same memory as a short one. Each prover here
//! waits at its own gate (a FIFO) until the test opens it, one block after
//! the other; whenever a prover is waiting, the blocks published so far
//! (`orchestrator_blocks_published_total`) must stay within a fixed number
//! of the jobs let through. A watcher that ran ahead would have published
//! the whole range before the first gate opened.

mod support;

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use support::events::sampled;
use support::http::get_ok;
use support::node::free_port;
use support::{Anvil, RUN_TIMEOUT, RunBuilder, eventually};

/// Blocks in the range: well beyond what may wait for the pool.
const BLOCKS: u64 = 300;
/// Workers of the run.
const WORKERS: u64 = 2;
/// The most blocks that may be published beyond those proved: the pool's
/// bounded queue (2 per worker + 32 in `standalone.rs`), the jobs running,
/// and slack. Far below `BLOCKS`, so a watcher running ahead shows.
const AHEAD_LIMIT: u64 = 100;

/// A prover that waits until the test opens `$GATES/<block>`, then proves.
const GATED_PROVER: &str = r#"#!/bin/sh
block="$(cat "$2")"
read -r _ < "$GATES/$block"
printf '{"block":%s,"proof":"0x00","prover":"gated"}' "$block" > "$4"
"#;

/// `orchestrator_blocks_published_total` from `/metrics` on `port` (0
/// before the first block); `None` while nothing answers there.
fn blocks_published(port: u16) -> Option<u64> {
    let metrics = get_ok(port, "/metrics")?;
    let value = metrics
        .lines()
        .find_map(|l| l.strip_prefix("orchestrator_blocks_published_total "));
    Some(value.map_or(0, |v| v.trim().parse::<f64>().expect("a counter") as u64))
}

/// Makes the FIFO `path`.
fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

/// Lets the prover waiting at `gate` through. Opening a FIFO for writing
/// returns once its reader has opened it, i.e. once that prover runs; the
/// open happens on a thread so a run that never gets there fails the test
/// after `RUN_TIMEOUT` instead of hanging it.
fn open_gate(gate: PathBuf) -> Option<()> {
    let (done, opened) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(std::fs::OpenOptions::new().write(true).open(&gate));
    });
    let mut fifo = opened.recv_timeout(RUN_TIMEOUT).ok()?.ok()?;
    fifo.write_all(b"go\n").ok()
}

#[test]
fn the_watcher_waits_for_a_slow_pool() {
    let anvil = Anvil::start();
    let from = 10;
    let to = from + BLOCKS - 1;
    anvil.finalize_up_to(to);
    let port = free_port();
    let builder = RunBuilder::new("backpressure", &anvil.url());
    let gates = builder.dir().join("gates");
    std::fs::create_dir(&gates).expect("gates dir");
    for block in from..=to {
        mkfifo(&gates.join(block.to_string()));
    }
    let prover = builder.dir().join("gated-prover.sh");
    std::fs::write(&prover, GATED_PROVER).expect("prover script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&prover, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut run = builder
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .args(["--workers", &WORKERS.to_string()])
        .args(["--metrics-port", &port.to_string()])
        .arg_path("--binary", &prover)
        .env("GATES", &gates)
        .spawn();

    let mut most_ahead = 0;
    for (released, block) in (from..=to).enumerate() {
        let released = released as u64;
        // Only `released` jobs got through their gate: whatever the
        // watcher published beyond them waits in the pool's queue.
        let mut published = None;
        if !eventually(RUN_TIMEOUT, || {
            published = blocks_published(port);
            published.is_some()
        }) {
            run.fail("/metrics never answered");
        }
        let published = published.unwrap_or_default();
        most_ahead = most_ahead.max(published.saturating_sub(released));
        if published > released + AHEAD_LIMIT {
            run.fail(&format!(
                "{published} blocks published while only {released} were proved: \
                 the watcher ran ahead of the pool (at most {AHEAD_LIMIT} may wait)"
            ));
        }
        if open_gate(gates.join(block.to_string())).is_none() {
            run.fail(&format!("the prover of block {block} never started"));
        }
    }
    let status = run.wait_exit(RUN_TIMEOUT);
    run.assert_exit_code(status, 0);
    run.assert_outcome(&sampled(from, to, 1), "gated", &Default::default());
    eprintln!("at most {most_ahead} blocks were published ahead of the proved ones");
}
