//! The EthProofs reporter (actor and HTTP edge) against a local server that
//! implements the API: the bodies of the three calls, and what each answer
//! makes the reporter do (500, 429 with Retry-After, 409, 400, 401, 404),
//! and the rate limit in a burst. Messages come from the in-process bus;
//! `tests/ethproofs_roles.rs` runs the same over NATS with real provers.
//! Last, `orchestrator run` over a range reports every block before it exits.

mod ethproofs_support;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ethproofs_support::{CLUSTER, FakeEthProofs, KEY, Request};
use orchestrator_actors::actors::{EthProofsReporter, RateLimit, ReporterConfig, pump};
use orchestrator_actors::backoff::Backoff;
use orchestrator_actors::edges::JobSource;
use orchestrator_actors::edges::Publisher;
use orchestrator_actors::edges::ethproofs::HttpEthProofs;
use orchestrator_actors::edges::local::LocalBus;
use orchestrator_actors::messages::{
    CompletedProof, DeadLetter, Envelope, JobEvent, JobStatus, queues,
};
use orchestrator_actors::shutdown::Shutdown;
use serde_json::{Map, Value, json};

/// Deadlock guard for one wait; never a speed expectation.
const TIMEOUT: Duration = Duration::from_secs(20);

fn event(block: u64, queue: &str, status: JobStatus) -> (&'static str, Envelope) {
    let event = JobEvent {
        block: Some(block),
        pool: "pool".into(),
        queue: queue.into(),
        job: format!("block-{block}"),
        attempt: 1,
        status,
        at_ms: 1,
        proving_ms: None,
        output_bytes: None,
        error: None,
    };
    (queues::JOB_EVENTS, event.envelope())
}

fn queued(block: u64) -> (&'static str, Envelope) {
    event(block, queues::BLOCKS, JobStatus::Queued)
}

fn proved(
    block: u64,
    proof: &str,
    proving_ms: Option<u64>,
    extra: Value,
) -> (&'static str, Envelope) {
    let extra: Map<String, Value> = serde_json::from_value(extra).unwrap();
    let proof = CompletedProof {
        block,
        prover: "mock-prover".into(),
        proof: Value::String(proof.into()),
        latency_ms: 0,
        proving_ms,
        block_hash: None,
        orphaned: false,
        extra,
    };
    let id = format!("completed-{block}");
    (
        queues::COMPLETED_PROOFS,
        Envelope::new(id, serde_json::to_vec(&proof).unwrap()),
    )
}

/// How a reporter run ended.
struct Outcome {
    requests: Vec<Request>,
    dead: Vec<DeadLetter>,
    exit: Option<i32>,
}

/// What a reporter reports with, and how it stops.
struct Setup {
    key: &'static str,
    cluster: u64,
    limit: RateLimit,
    /// Role mode: a refused key or cluster stops the process (code 1).
    role: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            key: KEY,
            cluster: CLUSTER,
            limit: RateLimit {
                requests: 60,
                window: Duration::from_secs(60),
            },
            role: true,
        }
    }
}

/// Runs a reporter on `messages` until the fake's requests satisfy `done`
/// or the process is asked to exit.
fn report(
    fake: &FakeEthProofs,
    setup: Setup,
    messages: Vec<(&'static str, Envelope)>,
    done: impl Fn(&[Request]) -> bool,
) -> Outcome {
    let system = actix::System::new();
    let shutdown = Shutdown::new();
    system.block_on(async {
        let bus = LocalBus::new();
        let input = bus.subscribe(&[queues::COMPLETED_PROOFS, queues::JOB_EVENTS]);
        let mut dead = bus.subscribe(&[queues::DEAD_LETTER]);
        let api = HttpEthProofs::new(fake.url(), setup.key.to_owned().into(), TIMEOUT).unwrap();
        let mut config = ReporterConfig::new(setup.cluster);
        config.limit = setup.limit;
        config.retry = Backoff::new(Duration::from_millis(50), Duration::from_millis(200));
        let mut reporter = EthProofsReporter::new(Arc::new(api), config);
        if setup.role {
            reporter = reporter.with_lifeline(shutdown.lifeline(1, "reporter stopped"));
        }
        let reporter = actix::prelude::Actor::start(reporter);
        pump(Box::new(input), reporter.recipient(), &shutdown);
        for (queue, message) in messages {
            bus.publish(queue, message).await.unwrap();
        }
        let deadline = Instant::now() + TIMEOUT;
        while !done(&fake.requests()) && !shutdown.is_triggered() {
            assert!(
                Instant::now() < deadline,
                "timed out: {:?}",
                fake.requests()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut letters = Vec::new();
        while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(100), dead.next()).await
        {
            letters.push(serde_json::from_slice(&d.payload).unwrap());
        }
        Outcome {
            requests: fake.requests(),
            dead: letters,
            exit: shutdown.reason().map(|e| e.code),
        }
    })
}

/// A queued event for block 999 after the messages under test: once it is
/// posted, everything before it is settled (one report at a time, in order).
fn sentinel() -> (&'static str, Envelope) {
    queued(999)
}

fn sentinel_posted(requests: &[Request]) -> bool {
    requests.iter().any(|r| r.block() == 999)
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn the_three_calls_carry_the_documented_bodies() {
    let fake = FakeEthProofs::start();
    let messages = vec![
        queued(100),
        event(100, queues::BLOCKS, JobStatus::Proving),
        // Not EthProofs' business: a failure, a step job, a proved event.
        event(100, queues::BLOCKS, JobStatus::Failed),
        event(100, queues::STEPS, JobStatus::Queued),
        event(100, queues::BLOCKS, JobStatus::Proved),
        proved(100, "0x00ff10", Some(1234), json!({"cycles": 0})),
        proved(
            101,
            "0xABcd",
            Some(5),
            json!({"proving_time": 777, "proving_cycles": 42, "verifier_id": "v1"}),
        ),
        proved(102, "not hex", None, json!({})),
        sentinel(),
    ];
    let out = report(&fake, Setup::default(), messages, sentinel_posted);
    let bodies: Vec<(String, Value)> = out
        .requests
        .iter()
        .map(|r| (r.call.clone(), r.body.clone()))
        .collect();
    let expected = vec![
        (
            "queued",
            json!({"block_number": 100, "cluster_id": CLUSTER}),
        ),
        (
            "proving",
            json!({"block_number": 100, "cluster_id": CLUSTER}),
        ),
        (
            "proved",
            json!({"block_number": 100, "cluster_id": CLUSTER, "proving_time": 1234, "proof": base64(&[0x00, 0xff, 0x10])}),
        ),
        (
            "proved",
            json!({"block_number": 101, "cluster_id": CLUSTER, "proving_time": 777, "proof": base64(&[0xab, 0xcd]), "proving_cycles": 42, "verifier_id": "v1"}),
        ),
        (
            "proved",
            json!({"block_number": 102, "cluster_id": CLUSTER, "proving_time": 1, "proof": base64(b"not hex")}),
        ),
        (
            "queued",
            json!({"block_number": 999, "cluster_id": CLUSTER}),
        ),
    ];
    let expected: Vec<(String, Value)> = expected
        .into_iter()
        .map(|(c, b)| (c.to_owned(), b))
        .collect();
    assert_eq!(bodies, expected);
    for request in &out.requests {
        assert_eq!(
            request.auth.as_deref(),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert_eq!(request.status, 200, "{request:?}");
    }
    assert!(out.dead.is_empty() && out.exit.is_none());
}

#[test]
fn server_errors_are_retried_until_accepted() {
    let fake = FakeEthProofs::start();
    fake.script(&[(500, None), (503, None)]);
    let messages = vec![proved(7, "0x01", Some(3), json!({})), sentinel()];
    let out = report(&fake, Setup::default(), messages, sentinel_posted);
    let statuses: Vec<u16> = out.requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 503, 200, 200], "{:?}", out.requests);
    assert!(out.requests[..3].iter().all(|r| r.block() == 7));
    assert!(out.dead.is_empty() && out.exit.is_none());
}

#[test]
fn too_many_requests_waits_for_retry_after() {
    let fake = FakeEthProofs::start();
    fake.script(&[(429, Some(1))]);
    let out = report(
        &fake,
        Setup::default(),
        vec![queued(7), sentinel()],
        sentinel_posted,
    );
    let statuses: Vec<u16> = out.requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200, 200]);
    let waited = out.requests[1].at - out.requests[0].at;
    // The backoff alone would wait 50 ms.
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
}

#[test]
fn conflict_counts_as_done() {
    let fake = FakeEthProofs::start();
    fake.script(&[(409, None)]);
    let messages = vec![proved(7, "0x01", Some(3), json!({})), sentinel()];
    let out = report(&fake, Setup::default(), messages, sentinel_posted);
    let statuses: Vec<u16> = out.requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [409, 200], "409 is not retried");
    assert!(out.dead.is_empty() && out.exit.is_none());
}

#[test]
fn bad_request_dead_letters_that_report_and_goes_on() {
    let fake = FakeEthProofs::start();
    fake.script(&[(400, None)]);
    let messages = vec![proved(7, "0x01", Some(3), json!({})), sentinel()];
    let out = report(&fake, Setup::default(), messages, sentinel_posted);
    let statuses: Vec<u16> = out.requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [400, 200], "400 is not retried");
    assert_eq!(out.dead.len(), 1, "one dead letter");
    let letter = &out.dead[0];
    assert_eq!(letter.queue, queues::COMPLETED_PROOFS);
    assert!(
        letter.error.contains("block 7 with 400") && letter.error.contains("bad request"),
        "{}",
        letter.error
    );
    assert!(out.exit.is_none());
}

#[test]
fn a_bad_key_stops_the_role_after_one_request() {
    let fake = FakeEthProofs::start();
    let setup = Setup {
        key: "wrong-key",
        ..Setup::default()
    };
    let out = report(&fake, setup, vec![queued(1), queued(2), sentinel()], |_| {
        false
    });
    assert_eq!(out.exit, Some(1));
    let statuses: Vec<u16> = out.requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401], "no retry storm");
    assert!(out.dead.is_empty(), "the report is kept for a fixed key");
}

#[test]
fn an_unknown_cluster_stops_the_role_after_one_request() {
    let fake = FakeEthProofs::start();
    let setup = Setup {
        cluster: 7,
        ..Setup::default()
    };
    let out = report(&fake, setup, vec![queued(1), queued(2), sentinel()], |_| {
        false
    });
    assert_eq!(out.exit, Some(1));
    let statuses: Vec<u16> = out.requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [404]);
}

#[test]
fn a_bad_key_in_a_standalone_run_turns_reporting_off_not_the_run() {
    let fake = FakeEthProofs::start();
    let setup = Setup {
        key: "wrong-key",
        role: false,
        ..Setup::default()
    };
    // Absence can only be watched for a while: half a second after the
    // first answer, a reporter still posting would have posted the rest.
    let started = Instant::now();
    let out = report(&fake, setup, vec![queued(1), queued(2), sentinel()], |r| {
        !r.is_empty() && started.elapsed() > Duration::from_millis(500)
    });
    assert_eq!(out.exit, None, "the run goes on");
    let statuses: Vec<u16> = out.requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401], "no request after the refusal");
}

#[test]
fn a_burst_stays_under_the_rate_limit() {
    let fake = FakeEthProofs::start();
    let limit = RateLimit {
        requests: 5,
        window: Duration::from_secs(1),
    };
    let setup = Setup {
        limit,
        ..Setup::default()
    };
    let messages: Vec<_> = (1..=16).map(queued).collect();
    let out = report(&fake, setup, messages, |r| r.len() == 16);
    let times: Vec<Instant> = out.requests.iter().map(|r| r.at).collect();
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .filter(|t| t.duration_since(*start) < limit.window)
            .count();
        assert!(
            in_window <= limit.requests,
            "{in_window} requests within {:?} from request {i}",
            limit.window
        );
    }
    // 16 requests at 5 per second: the last one at least 3 s after the first.
    assert!(times[15] - times[0] >= Duration::from_millis(2900));
}

#[test]
fn a_range_run_reports_every_block_before_it_exits() {
    let fake = FakeEthProofs::start();
    let (run, status) = support::run_range("ethproofs-run", 1, 4, |run| {
        run.env("ETHPROOFS_API_URL", fake.url())
            .env("ETHPROOFS_API_KEY", KEY)
            .env("ETHPROOFS_CLUSTER_ID", CLUSTER.to_string())
    });
    assert!(status.success(), "{status}: {}", run.stderr());
    let requests = fake.requests();
    for block in 1..=4 {
        for call in ["queued", "proving", "proved"] {
            let posted = requests
                .iter()
                .filter(|r| r.call == call && r.block() == block && r.status == 200)
                .count();
            assert_eq!(posted, 1, "{call} of block {block}: {requests:?}");
        }
    }
    assert!(!run.stderr().contains(KEY), "the API key is in the log");
}
