//! `make bench`: what the orchestrator costs apart from proving, measured
//! side by side with what it is compared to, and written to BENCHMARKS.md.
//!
//! 1. `orchestrator run` per job against a C loop doing the same file and
//!    process work (`benches/floor.c`), 1 and 2 workers.
//! 2. `orchestrator run` per block and peak RSS at growing ranges.
//! 3. Role mode on loopback NATS against standalone and raw JetStream.
//! 4. Block mined → prover started, following `latest` over a WebSocket.
//!
//! Settings (environment): `BENCH_REPEATS` (3), `BENCH_SIZES`
//! (`2000,20000,100000`), `BENCH_PARTS` (`1,2,3,4`), `BENCH_OUT`
//! (`BENCHMARKS.md`), `BENCH_THROUGHPUT` (a file holding the output of
//! `cargo bench -p orchestrator-actors --bench throughput`, quoted in the
//! report), `BENCH_ORCHESTRATOR` (another build's binary, to compare two
//! versions with the same harness). Run through `make bench`, which builds and installs what this
//! needs; `cargo bench --bench harness` works once those are there.

mod chain;
mod latency;
mod report;
mod roles;
mod standalone;
mod sys;

use std::path::PathBuf;
use std::time::Instant;

use report::{Part1, Part2, Part3, Part4, Results};
use standalone::Kit;

/// The first block of every range (the chain is mined up to the largest).
const FROM: u64 = 1;
/// Blocks of parts 1 and 3.
const BACKLOG: u64 = 2_000;
/// Blocks measured in part 4.
const LATENCY_BLOCKS: usize = 100;

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

fn main() {
    let repeats: usize = env_or("BENCH_REPEATS", "3").parse().expect("BENCH_REPEATS");
    let sizes: Vec<u64> = env_or("BENCH_SIZES", "2000,20000,100000")
        .split(',')
        .map(|s| s.trim().parse().expect("BENCH_SIZES"))
        .collect();
    let parts = env_or("BENCH_PARTS", "1,2,3,4");
    let part = |n: &str| parts.split(',').any(|p| p.trim() == n);
    let out = PathBuf::from(env_or("BENCH_OUT", "BENCHMARKS.md"));
    let started = Instant::now();
    let mut results = Results::new(repeats, sys::load());

    let dir = std::env::temp_dir().join(format!("orchestrator-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let kit = Kit {
        orchestrator: std::env::var_os("BENCH_ORCHESTRATOR").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_orchestrator")),
            PathBuf::from,
        ),
        noop: dir.join("noop_prover"),
        floor: dir.join("floor"),
        dir: dir.clone(),
    };
    sys::cc("noop_prover.c", &kit.noop).expect("build noop_prover");
    sys::cc("floor.c", &kit.floor).expect("build floor");

    let largest = sizes
        .iter()
        .copied()
        .chain([BACKLOG])
        .max()
        .unwrap_or(BACKLOG);
    // Every range is final from the start: see `chain`.
    let genesis = FROM + largest + 1;
    let anvil = chain::Anvil::start(Some((genesis, &dir.join("genesis.json")))).expect("anvil");
    anvil
        .finalize_up_to(genesis)
        .expect("finalize the genesis block");

    if part("1") {
        for workers in [1, 2] {
            let mut row = Part1::new(workers);
            for r in 1..=repeats {
                say(&format!(
                    "part 1: {workers} worker(s), repeat {r}/{repeats}"
                ));
                row.floor
                    .push(standalone::floor(&kit, FROM, BACKLOG, workers));
                row.run
                    .push(standalone::run(&kit, &anvil, FROM, BACKLOG, workers));
            }
            results.part1.push(row);
        }
    }
    if part("2") {
        let mut rows: Vec<Part2> = sizes.iter().map(|&b| Part2::new(b)).collect();
        // Sizes interleaved within each repeat, so a burst of load from
        // someone else's compile does not fall on one size only.
        for r in 1..=repeats {
            for row in &mut rows {
                say(&format!(
                    "part 2: {} blocks, repeat {r}/{repeats}",
                    row.blocks
                ));
                row.runs
                    .push(standalone::run(&kit, &anvil, FROM, row.blocks, 1));
            }
        }
        results.part2 = rows;
    }
    if part("3") {
        let mut p3 = Part3::default();
        for r in 1..=repeats {
            say(&format!("part 3: raw JetStream, repeat {r}/{repeats}"));
            p3.raw.push(roles::raw(&kit, BACKLOG));
            for provers in [1, 2] {
                say(&format!(
                    "part 3: roles, {provers} prover(s), repeat {r}/{repeats}"
                ));
                p3.roles[provers - 1].push(roles::backlog(&kit, &anvil, FROM, BACKLOG, provers));
            }
        }
        results.part3 = Some(p3);
    }
    drop(anvil);
    if part("4") {
        results.part4 = if latency::available(&kit) {
            let mut runs = Vec::new();
            for r in 1..=repeats {
                say(&format!("part 4: latency, repeat {r}/{repeats}"));
                runs.push(latency::measure(&kit, LATENCY_BLOCKS));
            }
            Part4::Measured(runs)
        } else {
            Part4::NotAvailable
        };
    }
    results.throughput = std::env::var("BENCH_THROUGHPUT")
        .ok()
        .and_then(|path| std::fs::read_to_string(path).ok());
    results.load_end = sys::load();
    results.took_s = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);

    let text = report::render(&results);
    std::fs::write(&out, &text).expect("write the report");
    println!("{text}");
    say(&format!("wrote {}", out.display()));
}

/// A progress line on stderr.
fn say(what: &str) {
    eprintln!("bench [load {:.2}]: {what}", sys::load());
}
