//! `orchestrator status` against a real nats-server and anvil. A small
//! pipeline runs (a window of three blocks, one prover whose proofs are over
//! the inline limit, so they travel through the object store, and a
//! matcher), plus one malformed block proof that the matcher dead-letters.
//! Then `status --json` must report what happened, number for number, and
//! the text output must carry the same facts. A server without the stream
//! and a server that is down each give one clear line and a non-zero exit,
//! in seconds.

mod nats_support;
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nats_support::checks::window;
use nats_support::layout::{mock_prover, proof_matcher, window_watcher};
use nats_support::{Cluster, FLOW_TIMEOUT, LINGER, NatsServer, harness_runtime};
use orchestrator_actors::edges::Publisher;
use orchestrator_actors::messages::DeadLetter;
use serde_json::Value;

/// The durable consumers of the test, named so the status rows can be found.
const PROVER: &str = "status-prover";
const MATCHER: &str = "status-matcher";
/// Over the 512 KiB inline limit: every proof goes through the object store.
const PROOF_BYTES: &str = "600000";
/// The malformed block proof: JSON without `block` or `prover`.
const BAD_ID: &str = "bad-proof";
const BAD_PROOF: &[u8] = br#"{"proof":"0xff"}"#;

/// What one `orchestrator status` run gave.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `orchestrator status ARGS` against `url`, with files under `dir`.
/// A run still going after 30 s (a deadlock guard) is killed and fails.
fn status(url: &str, dir: &Path, args: &[&str]) -> Run {
    let out = dir.join("status.stdout");
    let err = dir.join("status.stderr");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("status")
        .args(args)
        .env_clear()
        .envs(std::env::vars_os().filter(|(k, _)| k == "PATH" || k == "HOME"))
        .env("NATS_URL", url)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("status stdout file"))
        .stderr(std::fs::File::create(&err).expect("status stderr file"))
        .spawn()
        .expect("start orchestrator status");
    let exited = support::eventually(Duration::from_secs(30), || {
        child.try_wait().expect("try_wait status").is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let code = child.wait().expect("wait for status");
    assert!(
        exited,
        "`orchestrator status {args:?}` still running after 30 s"
    );
    Run {
        success: code.success(),
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        took: started.elapsed(),
    }
}

/// `status --json` against `cluster`, parsed; the test fails on an error.
fn status_json(cluster: &Cluster) -> Value {
    let run = status(&cluster.nats.url(), cluster.dir(), &["--json"]);
    if !run.success {
        cluster.fail(&format!("status --json failed:\n{}", run.stderr));
    }
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        cluster.fail(&format!("status --json is not JSON ({e}):\n{}", run.stdout))
    })
}

/// The consumer row called `name`.
fn consumer<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["consumers"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no consumer {name} in {:#}", status["consumers"]))
}

/// Whether every job is settled: nothing pending or in flight anywhere.
fn settled(status: &Value) -> bool {
    [PROVER, MATCHER].iter().all(|name| {
        status["consumers"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["name"] == *name))
            .is_some_and(|c| c["pending"] == 0 && c["in_flight"] == 0)
    })
}

#[test]
fn status_reports_what_a_small_pipeline_did() {
    let cluster = Cluster::start("status");
    cluster.init();
    let first = cluster.next_block_with_backlog(3);
    let window = window(first, 3);
    let last = window.end - 1;
    let _prover = cluster.spawn(
        &mock_prover("prover").env([("CONSUMER_NAME", PROVER), ("MOCK_PROOF_BYTES", PROOF_BYTES)]),
    );
    let _matcher = cluster.spawn(&proof_matcher().env([("CONSUMER_NAME", MATCHER)]));
    let _watcher = cluster.spawn(&window_watcher(&window));
    cluster.check(harness_runtime().block_on(async {
        let bus = nats_support::edge::bus(&cluster.nats, "status-test").await;
        nats_support::payloads::publish(&bus, "block_proofs", BAD_ID, BAD_PROOF)
            .await
            .map_err(|e| format!("publishing the malformed proof: {e}"))
    }));
    let mut completed = cluster.tap("completed_proofs");
    let proofs = cluster.await_completed_once(&mut completed, &window);
    let mut letters = cluster.tap("dead_letter");
    cluster.check(
        letters.wait_until(FLOW_TIMEOUT, "the malformed proof's dead letter", |r| {
            !r.is_empty()
        }),
    );
    cluster.check(letters.read_for(LINGER));
    let mut block_proofs = cluster.tap("block_proofs");
    cluster.check(block_proofs.read_for(LINGER));
    // Acks trail the publishes they follow: wait until every job is settled.
    let mut json = status_json(&cluster);
    if !support::eventually(FLOW_TIMEOUT, || {
        json = status_json(&cluster);
        settled(&json)
    }) {
        cluster.fail(&format!("jobs still pending or in flight:\n{json:#}"));
    }
    eprintln!("status --json:\n{json:#}");

    // The stream.
    assert_eq!(json["stream"]["name"], "modularorchestrator");
    assert_eq!(json["stream"]["subjects"][0], "modularorchestrator.>");
    let messages = json["stream"]["messages"]
        .as_u64()
        .expect("stream messages");
    assert!(messages > 0, "no messages in the stream: {json:#}");
    assert_eq!(
        json["stream"]["last_sequence"], messages,
        "nothing was deleted"
    );
    assert_eq!(json["stream"]["replicas"], 1);

    // The consumers: the prover read every block and holds none.
    let prover = consumer(&json, PROVER);
    assert_eq!(prover["pending"], 0, "{prover:#}");
    assert_eq!(prover["in_flight"], 0, "{prover:#}");
    assert_eq!(prover["redelivered"], 0, "{prover:#}");
    assert_eq!(
        prover["filter_subjects"],
        serde_json::json!(["modularorchestrator.blocks"])
    );
    let matcher = consumer(&json, MATCHER);
    let mut subjects: Vec<&str> = matcher["filter_subjects"]
        .as_array()
        .expect("matcher subjects")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "modularorchestrator.block_proofs",
            "modularorchestrator.blocks"
        ]
    );

    // The last block announced and the last proof completed.
    assert_eq!(json["last_block"], last, "the window ends at {last}");
    let newest = proofs.last().expect("completed proofs");
    assert_eq!(json["last_completed"]["block"], newest.block);
    assert_eq!(json["last_completed"]["prover"], "mock-prover");

    // The dead letter: the matcher's, with its reason.
    let dead = &json["dead_letters"];
    assert_eq!(dead["count"], letters.records.len() as u64);
    assert_eq!(
        dead["count"], 1,
        "one malformed message, one reader: {dead:#}"
    );
    let letter = &dead["newest"][0];
    assert_eq!(letter["consumer"], MATCHER);
    assert_eq!(letter["queue"], "block_proofs");
    assert_eq!(letter["id"], BAD_ID);
    let reason = letter["error"].as_str().expect("a reason");
    assert!(reason.contains("not a block proof"), "{reason}");
    assert!(reason.chars().count() <= 201, "unbounded reason: {reason}");

    // The object store holds every proof that was too large to travel.
    let stored = completed
        .records
        .iter()
        .chain(&block_proofs.records)
        .filter(|r| r.object.is_some())
        .count() as u64;
    assert!(
        stored >= 2 * window.clone().count() as u64,
        "proofs over the limit were not stored"
    );
    assert_eq!(json["payloads"]["name"], "modularorchestrator_payloads");
    assert_eq!(
        json["payloads"]["entries"], stored,
        "{:#}",
        json["payloads"]
    );
    assert!(json["payloads"]["bytes"].as_u64() > Some(600_000));
    assert_eq!(json["matcher"]["name"], "modularorchestrator_matcher");
    assert!(
        json["matcher"]["entries"].as_u64() >= Some(1),
        "{:#}",
        json["matcher"]
    );

    // The same facts as text.
    let run = status(&cluster.nats.url(), cluster.dir(), &[]);
    assert!(run.success, "{}", run.stderr);
    eprintln!("status:\n{}", run.stdout);
    let text = run.stdout;
    let has_line = |line: &str| text.lines().any(|l| l.trim_end() == line);
    for line in [
        format!("last block published: {last}"),
        format!(
            "last completed proof: block {} by mock-prover",
            newest.block
        ),
        "dead letters: 1".to_owned(),
    ] {
        assert!(has_line(&line), "no line {line:?} in:\n{text}");
    }
    for start in [
        "stream modularorchestrator on ".to_owned(),
        format!("object store modularorchestrator_payloads: {stored} objects, "),
        "matcher bucket modularorchestrator_matcher: ".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&start)),
            "no line starting {start:?} in:\n{text}"
        );
    }
    let row = |name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    assert_eq!(row(PROVER), [PROVER, "0", "0", "0", "blocks"], "{text}");
    assert_eq!(row(MATCHER)[..3], [MATCHER, "0", "0"], "{text}");
    let letter_line = text
        .lines()
        .find(|l| l.contains(BAD_ID))
        .unwrap_or_else(|| panic!("no dead-letter line in:\n{text}"));
    for part in [MATCHER, "block_proofs", "not a block proof"] {
        assert!(letter_line.contains(part), "{letter_line:?} lacks {part}");
    }
}

#[test]
fn a_server_without_the_stream_gives_one_line_and_a_non_zero_exit() {
    let server = NatsServer::start();
    let dir = support::temp_dir("status-no-stream");
    let run = status(&server.url(), dir.path(), &[]);
    assert!(!run.success, "exit 0 without a stream: {}", run.stdout);
    assert_eq!(run.stdout, "", "nothing on stdout");
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    assert!(
        run.stderr
            .contains("stream modularorchestrator does not exist")
            && run.stderr.contains("orchestrator init"),
        "{}",
        run.stderr
    );
    let again = status(&server.url(), dir.path(), &["--json"]);
    assert!(
        !again.success,
        "status created the stream: {}",
        again.stdout
    );
}

#[test]
fn a_server_that_is_down_gives_a_clear_error_within_seconds() {
    let dir = support::temp_dir("status-down");
    let url = format!("nats://127.0.0.1:{}", support::node::free_port());
    let run = status(&url, dir.path(), &["--json"]);
    assert!(!run.success, "exit 0 with no server: {}", run.stdout);
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    assert!(
        run.stderr.contains(&url) && run.stderr.contains("did not answer"),
        "{}",
        run.stderr
    );
    assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);
}

#[test]
fn the_newest_dead_letters_come_first_and_a_stored_one_is_read_back() {
    let server = NatsServer::start();
    let dir = support::temp_dir("status-letters");
    let letters = 8;
    harness_runtime().block_on(async {
        let bus = nats_support::edge::bus(&server, "status-letters").await;
        for n in 1..=letters {
            // The last letter carries a payload over the inline limit, so it
            // travels through the object store.
            let payload = if n == letters {
                vec![b'x'; 600_000]
            } else {
                n.to_string().into_bytes()
            };
            let error = format!("failure {n}: {}", "e".repeat(1000));
            let letter =
                DeadLetter::envelope("sp1", "blocks", &format!("block-{n}"), 3, &error, &payload);
            bus.publisher()
                .publish("dead_letter", letter)
                .await
                .expect("publish a dead letter");
        }
    });
    let run = status(&server.url(), dir.path(), &["--json"]);
    assert!(run.success, "{}", run.stderr);
    let json: Value = serde_json::from_str(&run.stdout).expect("status JSON");
    let dead = &json["dead_letters"];
    assert_eq!(dead["count"], letters);
    let ids: Vec<&str> = dead["newest"]
        .as_array()
        .expect("newest letters")
        .iter()
        .filter_map(|l| l["id"].as_str())
        .collect();
    assert_eq!(ids, ["block-8", "block-7", "block-6", "block-5", "block-4"]);
    for letter in dead["newest"].as_array().expect("newest letters") {
        assert_eq!(letter["consumer"], "sp1");
        assert_eq!(letter["attempts"], 3);
        let error = letter["error"].as_str().expect("a reason");
        assert!(error.starts_with("failure "), "{error}");
        assert_eq!(error.chars().count(), 201, "cut to 200 and marked: {error}");
    }
    assert_eq!(json["payloads"]["entries"], 1, "the large letter is stored");
}
