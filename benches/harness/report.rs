//! The measurements of one `make bench` and BENCHMARKS.md written from them:
//! every number as the median with min–max over the repeats, every
//! comparison as a ratio of medians taken in the same run.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use crate::latency::{self, Latencies, Run};
use crate::roles::{Backlog, Raw};
use crate::sys::{Machine, Measured, Stats};

/// Part 1, for one worker count: the floor and the orchestrator, repeat
/// by repeat.
pub struct Part1 {
    pub workers: usize,
    pub floor: Vec<Result<Measured, String>>,
    pub run: Vec<Result<Measured, String>>,
}

impl Part1 {
    pub fn new(workers: usize) -> Part1 {
        Part1 {
            workers,
            floor: Vec::new(),
            run: Vec::new(),
        }
    }
}

/// Part 2, for one range size.
pub struct Part2 {
    pub blocks: u64,
    pub runs: Vec<Result<Measured, String>>,
}

impl Part2 {
    pub fn new(blocks: u64) -> Part2 {
        Part2 {
            blocks,
            runs: Vec::new(),
        }
    }
}

/// Part 3: raw JetStream, and the backlog with 1 and 2 prover processes.
#[derive(Default)]
pub struct Part3 {
    pub raw: Vec<Result<Raw, String>>,
    pub roles: [Vec<Result<Backlog, String>>; 2],
}

/// Part 4: measured, or not possible with this build.
#[derive(Default)]
pub enum Part4 {
    #[default]
    NotRun,
    NotAvailable,
    Measured(Vec<Result<Run, String>>),
}

/// Everything one run of the bench found.
pub struct Results {
    pub machine: Machine,
    pub date: String,
    pub commit: String,
    pub repeats: usize,
    pub load_start: f64,
    pub load_end: f64,
    pub took_s: f64,
    pub part1: Vec<Part1>,
    pub part2: Vec<Part2>,
    pub part3: Option<Part3>,
    pub part4: Part4,
    pub throughput: Option<String>,
}

/// A command's trimmed stdout, or `unknown`.
fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Results {
    pub fn new(repeats: usize, load_start: f64) -> Results {
        let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"]);
        let commit = format!(
            "{}{}",
            output("git", &["rev-parse", "--short", "HEAD"]),
            if dirty == "unknown" {
                ""
            } else {
                " (with uncommitted changes)"
            }
        );
        Results {
            machine: Machine::read(),
            date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            commit,
            repeats,
            load_start,
            load_end: 0.0,
            took_s: 0.0,
            part1: Vec::new(),
            part2: Vec::new(),
            part3: None,
            part4: Part4::NotRun,
            throughput: None,
        }
    }
}

/// The successful values of some repeats, and the errors of the others.
fn split<T>(runs: &[Result<T, String>]) -> (Vec<&T>, Vec<&str>) {
    let ok = runs.iter().filter_map(|r| r.as_ref().ok()).collect();
    let errors = runs
        .iter()
        .filter_map(|r| r.as_ref().err().map(String::as_str))
        .collect();
    (ok, errors)
}

/// `value` against `target`: whether it is met, for the tables.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

fn ms_per(d: Duration, n: u64) -> f64 {
    d.as_secs_f64() * 1000.0 / n as f64
}

/// Stats of `f` over `values`, or `None` if there are none.
fn stats<T>(values: &[T], f: impl Fn(&T) -> f64) -> Option<Stats> {
    (!values.is_empty()).then(|| Stats::of(values.iter().map(f)))
}

fn show(s: Option<Stats>, decimals: usize) -> String {
    s.map_or("failed".to_owned(), |s| s.show(decimals))
}

fn max_load(runs: &[&Measured]) -> f64 {
    runs.iter().map(|m| m.load).fold(0.0, f64::max)
}

/// BENCHMARKS.md.
pub fn render(r: &Results) -> String {
    let mut o = String::new();
    let m = &r.machine;
    let _ = write!(
        o,
        "# Benchmarks\n\n\
What the orchestrator itself costs, apart from proving: each number is\n\
measured side by side with what it is compared to, in one run of\n\
`make bench` (`benches/harness/`), and shown as the median with min–max over\n\
{} repeats. Ratios are of medians. Real proofs take seconds to minutes;\n\
the goal is that orchestration never shows next to them.\n\n\
## Machine and run\n\n\
| | |\n|---|---|\n\
| command | `make bench` |\n\
| date | {} |\n\
| commit | {} |\n\
| CPU | {}, {} cores |\n\
| RAM | {:.1} GiB |\n\
| kernel | Linux {} |\n\
| load average (1 min) at start / end | {:.2} / {:.2} |\n\
| time | {:.0} s |\n\n\
The machine is shared: the load column of each table is the highest\n\
1-minute load average seen just before that row's runs. On 2 cores, a load\n\
well above 2 means someone else's compile took CPU from the measurement.\n\n",
        r.repeats,
        r.date,
        r.commit,
        m.cpu,
        m.cores,
        m.ram_gib,
        m.kernel,
        r.load_start,
        r.load_end,
        r.took_s,
    );
    let busy = r
        .part1
        .iter()
        .flat_map(|p| p.floor.iter().chain(&p.run))
        .chain(r.part2.iter().flat_map(|p| &p.runs))
        .filter_map(|m| m.as_ref().ok())
        .any(|m| m.load > m_cores(r));
    if busy || r.load_start > m_cores(r) {
        o.push_str(
            "**Load:** the 1-minute load average was above the core count during\n\
some of these runs: other processes took CPU, which lengthens wall times\n\
(ms/job, blocks/s, latency) more than CPU times. Ratios of runs taken side\n\
by side are affected less than absolute numbers.\n\n",
        );
    }
    part1(&mut o, r);
    part2(&mut o, r);
    part3(&mut o, r);
    part4(&mut o, r);
    if let Some(text) = &r.throughput {
        let _ = write!(
            o,
            "## Actors alone (`cargo bench -p orchestrator-actors --bench throughput`)\n\n\
In one process: blocks through the in-process bus → `ProverPool` →\n\
`ProofMatcher` with a runner that answers at once (the actors' and bus's\n\
own cost per block), then with the real `ProcessRunner` and a `sh` prover.\n\
Run by `make bench` just before the harness:\n\n```text\n{}\n```\n",
            text.trim()
        );
    }
    o
}

fn m_cores(r: &Results) -> f64 {
    r.machine.cores as f64
}

fn errors(o: &mut String, what: &str, errors: &[&str]) {
    for e in errors {
        let _ = writeln!(o, "\n- {what} failed: `{}`", e.replace('`', "'"));
    }
}

fn part1(o: &mut String, r: &Results) {
    if r.part1.is_empty() {
        return;
    }
    let _ = write!(
        o,
        "## 1. Standalone per job against a C floor (2,000 blocks)\n\n\
`orchestrator run --from 1 --to 2000 --workers N --binary noop_prover`\n\
(`benches/noop_prover.c`: reads the input, writes a fixed proof, exits)\n\
against `benches/floor.c`: N C loops doing only the per-job file and\n\
process work (job dir, input.json, posix_spawn, waitpid, output.json,\n\
cleanup). Per job = wall time / 2,000; CPU = user + system of the process\n\
and its provers (wait4). Target: ratio ≤ 1.3.\n\n\
| workers | floor, ms/job | orchestrator, ms/job | ratio | target | floor CPU, ms/job | orchestrator CPU, ms/job | CPU ratio | load |\n\
|---|---|---|---|---|---|---|---|---|\n"
    );
    let mut failed = Vec::new();
    for row in &r.part1 {
        let (floor, fe) = split(&row.floor);
        let (run, re) = split(&row.run);
        failed.extend(fe.into_iter().chain(re));
        let wall = |v: &[&Measured]| stats(v, |m| ms_per(m.wall, 2_000));
        let cpu = |v: &[&Measured]| stats(v, |m| ms_per(m.cpu, 2_000));
        let ratio = |a: Option<Stats>, b: Option<Stats>| match (a, b) {
            (Some(a), Some(b)) => Some(b.median / a.median),
            _ => None,
        };
        let wall_ratio = ratio(wall(&floor), wall(&run));
        let cpu_ratio = ratio(cpu(&floor), cpu(&run));
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            row.workers,
            show(wall(&floor), 3),
            show(wall(&run), 3),
            wall_ratio.map_or("–".into(), |x| format!("{x:.2}")),
            wall_ratio.map_or("–", |x| verdict(x <= 1.3)),
            show(cpu(&floor), 3),
            show(cpu(&run), 3),
            cpu_ratio.map_or("–".into(), |x| format!("{x:.2}")),
            max_load(&floor).max(max_load(&run)),
        );
    }
    errors(o, "a run", &failed);
    o.push('\n');
}

fn part2(o: &mut String, r: &Results) {
    let Some(base) = r.part2.first() else {
        return;
    };
    let _ = write!(
        o,
        "## 2. Per-block cost and peak memory by range (1 worker)\n\n\
`orchestrator run --from 1 --to N --workers 1` with the no-op prover.\n\
Peak RSS is the orchestrator's maximum resident set (wait4's ru_maxrss;\n\
the provers are far smaller). Target: per-block cost and peak RSS within\n\
15% of the smallest range's.\n\n\
| blocks | wall, ms/block | CPU, ms/block | blocks/s | peak RSS, MiB | per block vs {} | RSS vs {} | target | load |\n\
|---|---|---|---|---|---|---|---|---|\n",
        base.blocks, base.blocks
    );
    let (base_runs, _) = split(&base.runs);
    let per_block = |v: &[&Measured], n: u64| stats(v, |m| ms_per(m.wall, n));
    let rss = |v: &[&Measured]| stats(v, |m| m.maxrss_kib as f64 / 1024.0);
    let base_cost = per_block(&base_runs, base.blocks);
    let base_rss = rss(&base_runs);
    let mut failed = Vec::new();
    for row in &r.part2 {
        let (runs, e) = split(&row.runs);
        failed.extend(e);
        let cost = per_block(&runs, row.blocks);
        let mem = rss(&runs);
        let vs = |a: Option<Stats>, b: Option<Stats>| match (a, b) {
            (Some(a), Some(b)) => Some(a.median / b.median),
            _ => None,
        };
        let (c, m) = (vs(cost, base_cost), vs(mem, base_rss));
        let met = matches!((c, m), (Some(c), Some(m)) if c <= 1.15 && m <= 1.15);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            row.blocks,
            show(cost, 3),
            show(stats(&runs, |m| ms_per(m.cpu, row.blocks)), 3),
            show(
                stats(&runs, |m| row.blocks as f64 / m.wall.as_secs_f64()),
                0
            ),
            show(mem, 1),
            c.map_or("–".into(), |x| format!("{x:.2}")),
            m.map_or("–".into(), |x| format!("{x:.2}")),
            verdict(met),
            max_load(&runs),
        );
    }
    errors(o, "a run", &failed);
    o.push('\n');
}

/// Where role mode's CPU goes: per process, ms per block, median over the
/// repeats (start-up included), against part 1's whole-run CPU per job.
fn cpu_by_process(o: &mut String, p3: &Part3) {
    o.push_str("\nCPU per block by process, ms (median of the repeats; start-up included):\n");
    for (i, runs) in p3.roles.iter().enumerate() {
        let (ok, _) = split(runs);
        let Some(first) = ok.first() else {
            continue;
        };
        let parts: Vec<String> = first
            .cpu_ms_per_block
            .iter()
            .map(|(label, _)| {
                let of = |b: &&Backlog| {
                    b.cpu_ms_per_block
                        .iter()
                        .find(|(l, _)| l == label)
                        .map_or(f64::NAN, |(_, ms)| *ms)
                };
                let median = stats(&ok, of).map_or(f64::NAN, |s| s.median);
                format!("{label} {median:.2}")
            })
            .collect();
        let messages = |f: fn((f64, f64)) -> f64| {
            stats(&ok, |b| b.nats_messages_per_block.map_or(f64::NAN, f))
                .map_or(f64::NAN, |s| s.median)
        };
        let _ = writeln!(
            o,
            "- {} prover process(es): {}; NATS messages per block {:.1} in, {:.1} out",
            i + 1,
            parts.join(", "),
            messages(|m| m.0),
            messages(|m| m.1)
        );
    }
}

fn part3(o: &mut String, r: &Results) {
    let Some(p3) = &r.part3 else {
        return;
    };
    let _ = write!(
        o,
        "## 3. Role mode on loopback NATS (2,000-block backlog)\n\n\
A fresh `nats-server -js` per repeat, `orchestrator init`, one\n\
`proof-matcher` and 1 or 2 `prover` processes (1 worker each, one shared\n\
consumer, the no-op prover); then a `block-watcher` for 2,000 final\n\
blocks. Time: from the watcher's start to the last completed proof seen on\n\
`completed_proofs`. Compared with standalone at the same worker count\n\
(part 1's runs) and with raw JetStream on the same kind of server\n\
(async-nats alone, file storage: publish 2,000 messages one by one with\n\
`Nats-Msg-Id`, then pull + double-ack them one at a time, as a one-worker\n\
prover does, or 100 at a time).\n\n\
| setup | blocks/s | vs standalone, same workers | vs raw pull-1 + ack |\n|---|---|---|---|\n"
    );
    let (raw, raw_errors) = split(&p3.raw);
    let raw_one = stats(&raw, |x| x.pull_one);
    let mut failed: Vec<&str> = raw_errors;
    for (i, runs) in p3.roles.iter().enumerate() {
        let provers = i + 1;
        let (took, e) = split(runs);
        failed.extend(e);
        let rate = stats(&took, |b| 2_000.0 / b.took.as_secs_f64());
        let standalone = r
            .part1
            .iter()
            .find(|p| p.workers == provers)
            .and_then(|p| stats(&split(&p.run).0, |m| 2_000.0 / m.wall.as_secs_f64()));
        let ratio = |b: Option<Stats>| match (rate, b) {
            (Some(a), Some(b)) => format!("{:.2}", a.median / b.median),
            _ => "–".into(),
        };
        let _ = writeln!(
            o,
            "| roles, {provers} prover process(es) | {} | {} | {} |",
            show(rate, 0),
            ratio(standalone),
            ratio(raw_one)
        );
    }
    let _ = write!(
        o,
        "\nRaw JetStream, messages/s: publish one by one {}; pull 1 + ack {}; pull 100 + ack {}.\n",
        show(stats(&raw, |x| x.publish), 0),
        show(raw_one, 0),
        show(stats(&raw, |x| x.pull_batch), 0)
    );
    cpu_by_process(o, p3);
    errors(o, "a run", &failed);
    o.push('\n');
}

fn part4(o: &mut String, r: &Results) {
    let runs = match &r.part4 {
        Part4::NotRun => return,
        Part4::NotAvailable => {
            o.push_str(
                "## 4. Latency, block mined → prover started\n\n\
not measured: --follow not available (`orchestrator run --help` of this\n\
build does not list it).\n\n",
            );
            return;
        }
        Part4::Measured(runs) => runs,
    };
    let spacing = latency::SPACING.as_millis();
    let _ = write!(
        o,
        "## 4. Latency, block mined → prover started (`--follow latest`, WebSocket)\n\n\
`orchestrator run --follow latest --rpc ws://127.0.0.1:PORT` on an anvil that\n\
mines only when asked. Per block: the time just before the `evm_mine` call,\n\
to the CLOCK_REALTIME the no-op prover took first thing at its start\n\
(written to a file named after the block). Per repeat, 100 blocks {spacing} ms\n\
apart, then 100 blocks back to back (each mined as soon as the last one's\n\
prover started). Target: p99 ≤ 50 ms, for blocks {spacing} ms apart.\n\n\
Back to back measures anvil's WebSocket server more than the orchestrator: it\n\
leaves Nagle's algorithm on, so a `newHeads` notification it sends within\n\
40 ms of its answer to the orchestrator's last request waits for the\n\
orchestrator's delayed ACK (strace: the notification arrives ~40 ms after\n\
`evm_mine`; the prover starts ~3 ms after it). geth and reth set TCP_NODELAY,\n\
and real blocks are 0.25–12 s apart.\n\n\
| blocks | p50, ms | p99, ms | max, ms | blocks missing (no prover within 30 s) | target |\n|---|---|---|---|---|---|\n"
    );
    let ok: Vec<&Run> = runs.iter().filter_map(|r| r.as_ref().ok()).collect();
    let row = |o: &mut String, label: &str, half: fn(&Run) -> &Latencies, target: bool| {
        let p = |q: f64| stats(&ok, |r| half(r).percentile(q));
        let p99 = p(99.0);
        let missing: usize = ok.iter().map(|r| half(r).missing).sum();
        let verdict = match (target, p99) {
            (false, _) => "no target",
            (true, None) => "–",
            (true, Some(s)) => verdict(s.median <= 50.0 && missing == 0),
        };
        let _ = writeln!(
            o,
            "| {label} | {} | {} | {} | {missing} | {verdict} |",
            show(p(50.0), 1),
            show(p99, 1),
            show(p(100.0), 1),
        );
    };
    row(o, &format!("{spacing} ms apart"), |r| &r.spaced, true);
    row(o, "back to back", |r| &r.back_to_back, false);
    let failed: Vec<&str> = runs
        .iter()
        .filter_map(|r| r.as_ref().err().map(String::as_str))
        .collect();
    errors(o, "a run", &failed);
    o.push('\n');
}
