//! The operators' endpoints of a real run: `/metrics` scraped while a
//! pipeline proves blocks and after it, its counters held against what the
//! run printed; `/healthz` and `/readyz` (which follows a NATS outage and
//! waits for the RPC's first answer); a port that cannot be bound; and a
//! backfill's plain progress lines when stderr is not a terminal.

mod nats_support;
mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;

use serde_json::json;
use support::events::{self, sampled};
use support::http::get;
use support::node::free_port;
use support::{Anvil, RUN_TIMEOUT, RunBuilder, eventually};

/// One scrape of `/metrics`: each series (`name{labels}`) with its value.
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    fn take(port: u16) -> Option<Scrape> {
        let (status, body) = get(port, "/metrics")?;
        assert_eq!(status, 200, "/metrics answered {status}: {body}");
        let series = body
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("`series value`");
                let value = value
                    .parse()
                    .unwrap_or_else(|_| panic!("value of {line:?}"));
                (series.to_owned(), value)
            })
            .collect();
        Some(Scrape(series))
    }

    /// The sum of every series of metric `name` whose labels include each
    /// of `labels` (`key="value"`); 0 when there is none.
    fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                metric == name && labels.iter().all(|l| rest.contains(l))
            })
            .map(|(_, value)| value)
            .sum()
    }

    fn get(&self, name: &str) -> f64 {
        self.sum(name, &[])
    }
}

impl std::fmt::Display for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (series, value) in &self.0 {
            writeln!(f, "{series} {value}")?;
        }
        Ok(())
    }
}

#[test]
fn metrics_count_what_the_pipeline_did() {
    let from = 4;
    let anvil = Anvil::start();
    anvil.finalize_up_to(from + 9);
    // A chain that stands still: the run proves a known set of blocks and
    // then stays up, idle, for the scrape after it.
    anvil.rpc("evm_setIntervalMining", json!([0]));
    let head = anvil.finalized();
    let expected = head - from + 1;
    let port = free_port();
    let mut run = RunBuilder::new("metrics", &anvil.url())
        .args(["--from", &from.to_string()])
        .args(["--metrics-port", &port.to_string()])
        .env("MOCK_PROVE_TIME_MS", "300")
        .spawn();

    // During the run: every scrape is consistent, and one falls mid-run.
    let mut mid_run = None;
    let done = eventually(RUN_TIMEOUT, || {
        let Some(s) = Scrape::take(port) else {
            return false;
        };
        let started = s.get("orchestrator_jobs_started_total");
        let succeeded = s.get("orchestrator_jobs_succeeded_total");
        assert!(
            succeeded <= started && started <= expected as f64,
            "started {started}, succeeded {succeeded}, {expected} blocks:\n{s}"
        );
        assert!(
            s.get("orchestrator_blocks_published_total") <= expected as f64,
            "{s}"
        );
        if succeeded > 0.0 && succeeded < expected as f64 {
            mid_run = Some(succeeded);
        }
        succeeded == expected as f64
    });
    if !done {
        run.fail(&format!("{expected} jobs never succeeded per /metrics"));
    }
    assert!(
        mid_run.is_some(),
        "no scrape fell between the first and the last job"
    );

    // After it: the counters are what the run printed.
    run.read_until(RUN_TIMEOUT, "every block proved", |ev| {
        events::proved(ev).len() == expected as usize
    });
    assert_eq!(events::proved(&run.events), sampled(from, head, 1));
    let s = Scrape::take(port).expect("/metrics after the run");
    let n = expected as f64;
    let prover = ["prover=\"standalone\"", "queue=\"blocks\""];
    for (name, want) in [
        ("orchestrator_blocks_seen_total", n),
        ("orchestrator_blocks_published_total", n),
        ("orchestrator_finalized_head", head as f64),
        ("orchestrator_last_block_announced", head as f64),
        ("orchestrator_last_block_proved", head as f64),
        ("orchestrator_proving_lag_blocks", 0.0),
        ("orchestrator_jobs_in_flight", 0.0),
        ("orchestrator_worker_restarts_total", 0.0),
        ("orchestrator_intake_paused", 0.0),
        ("orchestrator_ack_errors_total", 0.0),
        ("orchestrator_publish_errors_total", 0.0),
    ] {
        assert_eq!(s.get(name), want, "{name}:\n{s}");
    }
    for (name, want) in [
        ("orchestrator_jobs_started_total", n),
        ("orchestrator_jobs_succeeded_total", n),
        ("orchestrator_jobs_failed_total", 0.0),
        ("orchestrator_jobs_retried_total", 0.0),
        ("orchestrator_jobs_dead_lettered_total", 0.0),
        ("orchestrator_proving_seconds_count", n),
        ("orchestrator_proof_bytes_count", n),
    ] {
        assert_eq!(s.sum(name, &prover), want, "{name}{prover:?}:\n{s}");
    }
    assert_eq!(
        s.sum(
            "orchestrator_proofs_completed_total",
            &["prover=\"mock-prover\""]
        ),
        n,
        "{s}"
    );
    // Every run took 300 ms: all in the lowest bucket, none past 10 s.
    assert_eq!(
        s.sum("orchestrator_proving_seconds_bucket", &["le=\"1\""]),
        n,
        "{s}"
    );
    assert_eq!(get(port, "/healthz").map(|(status, _)| status), Some(200));
    assert_eq!(
        get(port, "/readyz"),
        Some((200, "ready\n".to_owned())),
        "the RPC answers and no NATS is needed"
    );
}

#[test]
fn readyz_follows_the_nats_connection() {
    let anvil = Anvil::start();
    let mut nats = nats_support::NatsServer::start();
    let port = free_port();
    let run = RunBuilder::new("metrics-readyz", &anvil.url())
        .args(["--nats", &nats.url(), "--metrics-port", &port.to_string()])
        .spawn();
    let readyz = || get(port, "/readyz");
    if !eventually(RUN_TIMEOUT, || readyz().is_some_and(|(s, _)| s == 200)) {
        run.fail(&format!("never ready: {:?}", readyz()));
    }

    nats.kill();
    let mut answer = None;
    let unready = eventually(RUN_TIMEOUT, || {
        answer = readyz();
        answer.as_ref().is_some_and(|(s, _)| *s == 503)
    });
    if !unready {
        run.fail(&format!("still ready with NATS down: {answer:?}"));
    }
    let (_, reason) = answer.expect("an answer");
    assert!(
        reason.starts_with("NATS:") && reason.lines().count() == 1,
        "one line naming NATS: {reason:?}"
    );
    assert_eq!(
        get(port, "/healthz").map(|(s, _)| s),
        Some(200),
        "alive while NATS is down"
    );

    nats.restart();
    if !eventually(RUN_TIMEOUT, || readyz().is_some_and(|(s, _)| s == 200)) {
        run.fail(&format!(
            "not ready again after NATS came back: {:?}",
            readyz()
        ));
    }
}

#[test]
fn readyz_waits_for_the_rpc() {
    let rpc_port = free_port();
    let port = free_port();
    let run = RunBuilder::new(
        "metrics-readyz-rpc",
        &format!("http://127.0.0.1:{rpc_port}"),
    )
    .args(["--metrics-port", &port.to_string()])
    .spawn();
    let readyz = || get(port, "/readyz");
    let mut answer = None;
    if !eventually(RUN_TIMEOUT, || {
        answer = readyz();
        answer.is_some()
    }) {
        run.fail("/readyz never answered");
    }
    assert_eq!(
        answer,
        Some((503, "RPC: no answer yet\n".to_owned())),
        "no node listens yet"
    );
    let _anvil = Anvil::start_at(rpc_port);
    if !eventually(RUN_TIMEOUT, || readyz().is_some_and(|(s, _)| s == 200)) {
        run.fail(&format!("not ready once the node answers: {:?}", readyz()));
    }
}

/// The port a role logged it serves on (`address=0.0.0.0:PORT`), once it has.
fn served_port(role: &nats_support::RoleProcess) -> u16 {
    let mut port = None;
    let found = eventually(RUN_TIMEOUT, || {
        port = role
            .stderr()
            .lines()
            .find(|l| l.contains("serving /metrics"))
            .and_then(|l| l.split("address=0.0.0.0:").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok());
        port.is_some()
    });
    assert!(found, "{} never logged its metrics address", role.label());
    port.expect("a port")
}

#[test]
fn each_role_serves_the_metrics_of_its_own_work() {
    use nats_support::checks::window;
    use nats_support::layout::{mock_prover, proof_matcher, window_watcher};
    let cluster = nats_support::Cluster::start("metrics-roles");
    cluster.init();
    let blocks = window(cluster.next_block_with_backlog(nats_support::BACKLOG), 4);
    let n = blocks.clone().count() as f64;
    let prover = cluster.spawn(&mock_prover("prover").env([("CONSUMER_NAME", "sp1")]));
    let matcher = cluster.spawn(&proof_matcher());
    let _watcher = cluster.spawn(&window_watcher(&blocks));
    let mut completed = cluster.tap("completed_proofs");
    cluster.await_completed_once(&mut completed, &blocks);

    let prover_port = served_port(&prover);
    let sp1 = ["prover=\"sp1\"", "queue=\"blocks\""];
    let mut s = None;
    let counted = eventually(RUN_TIMEOUT, || {
        s = Scrape::take(prover_port);
        s.as_ref().is_some_and(|s| {
            s.sum("orchestrator_jobs_succeeded_total", &sp1) == n
                && s.sum("orchestrator_proving_seconds_count", &sp1) == n
        })
    });
    let s = s.expect("a scrape of the prover");
    assert!(
        counted,
        "the prover role counts its {n} jobs under its consumer name:\n{s}"
    );
    assert_eq!(
        s.sum("orchestrator_jobs_dead_lettered_total", &sp1),
        0.0,
        "{s}"
    );
    assert_eq!(s.get("orchestrator_ack_errors_total"), 0.0, "{s}");

    let matcher_port = served_port(&matcher);
    let last = (blocks.end - 1) as f64;
    let mut s = None;
    let matched = eventually(RUN_TIMEOUT, || {
        s = Scrape::take(matcher_port);
        s.as_ref().is_some_and(|s| {
            s.get("orchestrator_last_block_proved") == last
                && s.sum(
                    "orchestrator_proofs_completed_total",
                    &["prover=\"mock-prover\""],
                ) == n
        })
    });
    let s = s.expect("a scrape of the matcher");
    assert!(
        matched,
        "the matcher counts {n} completed proofs up to block {last}:\n{s}"
    );
    assert_eq!(s.get("orchestrator_proving_lag_blocks"), 0.0, "{s}");
    assert_eq!(
        s.get("orchestrator_jobs_started_total"),
        0.0,
        "the matcher runs no jobs: {s}"
    );
    assert_eq!(get(matcher_port, "/readyz").map(|(c, _)| c), Some(200));
}

#[test]
fn a_port_in_use_stops_the_start_with_one_line_naming_it() {
    let anvil = Anvil::start();
    let taken = TcpListener::bind("0.0.0.0:0").expect("bind a port");
    let port = taken.local_addr().expect("address").port();
    let mut run = RunBuilder::new("metrics-port-taken", &anvil.url())
        .args(["--metrics-port", &port.to_string()])
        .spawn();
    let status = run.wait_exit(RUN_TIMEOUT);
    run.assert_exit_code(status, 2);
    let stderr = run.stderr();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(
        errors.len() == 1 && errors[0].contains(&format!("port {port}")),
        "one error line naming port {port}: {stderr}"
    );
}

#[test]
fn a_backfill_without_a_terminal_logs_plain_progress_lines() {
    let (from, to) = (3, 7);
    let (run, status) = support::run_range("progress-lines", from, to, |b| b);
    run.assert_exit_code(status, 0);
    let stderr = run.stderr();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("range progress:"))
        .collect();
    let total = to - from + 1;
    assert!(
        lines.iter().any(|l| l.contains(&format!(
            "range progress: {total}/{total} blocks ({total} proved, 0 failed)"
        ))),
        "a last progress line with the totals: {lines:#?}\n{stderr}"
    );
    assert!(
        lines.iter().all(|l| l.contains("blocks/s, ETA")),
        "every line has a rate and an ETA: {lines:#?}"
    );
    assert!(
        !stderr.contains('\r') && !stderr.contains("\x1b["),
        "no progress bar drawn on a file"
    );
}
