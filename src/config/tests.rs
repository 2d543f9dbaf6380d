//! Settings layering and validation, with the template's own environments.

use secrecy::ExposeSecret;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn file_then_environment_then_flags() {
    let dir = std::env::temp_dir().join(format!("orch-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("orchestrator.toml");
    std::fs::write(
        &file,
        "workers = 3\nevery = 10\nl1_rpc = \"http://file:8545\"\njob_timeout = \"2m\"\n",
    )
    .unwrap();
    let env = env(&[
        ("ORCHESTRATOR_EVERY", "100"),
        ("L1_RPC", "http://env:8545"),
        ("NEXT_BLOCK", "23839700"),
    ]);
    let flags = vec![("l1_rpc", config::Value::from("http://flag:8545"))];
    let s = Settings::load(Some(&file), &env, flags).unwrap();
    assert_eq!(
        (s.workers, s.every, s.l1_rpc.as_str()),
        (3, 100, "http://flag:8545")
    );
    assert_eq!(
        (s.next_block, s.job_timeout),
        (Some(23839700), Duration::from_secs(120))
    );
    assert_eq!(s.max_attempts, 3, "default kept");
}

/// The shared `.env` of the original template and each service's
/// environment, as its compose files have them.
#[test]
fn template_environments_load_as_they_are() {
    let shared = [
        ("L1_RPC", "http://127.0.0.1:8545"),
        ("NATS_URL", "nats://host:4223"),
        ("MESSAGE_BUS_TYPE", "NatsBasic"),
        ("STORAGE_TYPE", "Nats"),
        ("INPUT_STREAM", "modularorchestrator"),
        ("OUTPUT_STREAM", "modularorchestrator"),
        ("METRICS_PORT", "8888"),
    ];
    let services: [&[(&str, &str)]; 4] = [
        &[
            ("STRATEGY", "Block"),
            ("INPUT_QUEUE", "unused"),
            ("OUTPUT_QUEUE", "blocks"),
            ("NUM_INPUTS", "1"),
            ("SINGLE_OUTPUT", "true"),
            ("COLLECT_TIMEOUT_PERIOD_MILLIS", "500"),
            ("NEXT_BLOCK", "23839700"),
        ],
        &[
            ("STRATEGY", "Proof"),
            ("INPUT_QUEUE", "block_proofs,blocks"),
            ("OUTPUT_QUEUE", "completed_proofs"),
            ("NUM_INPUTS", "1"),
            ("SINGLE_OUTPUT", "true"),
            ("COLLECT_TIMEOUT_PERIOD_MILLIS", "500"),
        ],
        &[
            ("CONSUMER_NAME", "sp1-prover"),
            ("INPUT_QUEUE", "blocks"),
            ("OUTPUT_QUEUE", "block_proofs"),
            ("EXECUTOR_TYPE", "JsonExecutor"),
            ("BINARY", "/provers/sp1"),
        ],
        &[
            ("STRATEGY", "Match"),
            ("INPUT_QUEUE", "step_proofs"),
            ("OUTPUT_QUEUE", "collected_step_proofs"),
            ("NUM_INPUTS", "10"),
            ("SINGLE_OUTPUT", "false"),
            ("MULTIPLE_OUTPUT", "1"),
        ],
    ];
    for service in services {
        let s = Settings::load(None, &env(&[&shared[..], service].concat()), vec![]).unwrap();
        assert_eq!(s.nats_url.as_deref(), Some("nats://host:4223"));
    }
    let matcher = Settings::load(None, &env(&[&shared[..], services[3]].concat()), vec![]).unwrap();
    assert_eq!(
        (
            matcher.num_inputs,
            matcher.single_output,
            matcher.multiple_output
        ),
        (Some(10), Some(false), true)
    );
    let err = Settings::load(None, &env(&[("NUM_INPUTS", "ten")]), vec![])
        .unwrap_err()
        .to_string();
    assert!(err.contains("NUM_INPUTS"), "{err}");
    let err = Settings::load(None, &env(&[("EXECUTOR_TYPE", "ShellExecutor")]), vec![])
        .unwrap_err()
        .to_string();
    assert!(err.contains("JsonExecutor"), "{err}");
}

#[test]
fn bad_values_name_the_key() {
    let err = Settings::load(None, &env(&[("ORCHESTRATOR_WORKERS", "many")]), vec![])
        .unwrap_err()
        .to_string();
    assert!(err.contains("workers"), "{err}");
    let err = Settings::load(None, &env(&[("ORCHESTRATOR_WORKERS", "0")]), vec![])
        .unwrap_err()
        .to_string();
    assert!(err.contains("workers is 0"), "{err}");
    let err = Settings::load(None, &env(&[("ORCHESTRATOR_JOB_TIMEOUT", "soon")]), vec![])
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"soon\" is not a duration"), "{err}");
    let range = vec![
        ("next_block", config::Value::from(10u64)),
        ("to_block", config::Value::from(5u64)),
    ];
    assert!(
        Settings::load(None, &env(&[]), range)
            .unwrap_err()
            .to_string()
            .contains("before it starts")
    );
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let s = Settings::load(
        None,
        &env(&[
            ("NATS_USER", "u"),
            ("NATS_PASSWORD", "hunter2"),
            ("NATS_TOKEN", "t0ken"),
        ]),
        vec![],
    )
    .unwrap();
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("t0ken"),
        "{shown}"
    );
    let password = s.nats_password.as_ref().map(|p| p.expose_secret());
    assert_eq!(password, Some("hunter2"));
    // A numeric password is still a password, not a number.
    let digits = Settings::load(
        None,
        &env(&[("NATS_USER", "u"), ("NATS_PASSWORD", "12345")]),
        vec![],
    )
    .unwrap();
    let password = digits.nats_password.as_ref().map(|p| p.expose_secret());
    assert_eq!(password, Some("12345"));
}

#[test]
fn gpus_set_the_worker_count_and_conflicts_are_refused() {
    let s = Settings::load(None, &env(&[("ORCHESTRATOR_GPUS", "0, 1,2 ,3")]), vec![]).unwrap();
    assert_eq!(s.gpu_list(), ["0", "1", "2", "3"]);
    let flags = vec![("gpus", config::Value::from("GPU-a1b2,GPU-c3d4"))];
    let s = Settings::load(None, &env(&[]), flags).unwrap();
    assert_eq!(s.gpu_list(), ["GPU-a1b2", "GPU-c3d4"]);
    assert!(
        Settings::load(None, &env(&[]), vec![])
            .unwrap()
            .gpu_list()
            .is_empty()
    );

    let same = env(&[("ORCHESTRATOR_GPUS", "0,1"), ("ORCHESTRATOR_WORKERS", "2")]);
    assert!(Settings::load(None, &same, vec![]).is_ok());
    let clash = env(&[("ORCHESTRATOR_GPUS", "0,1"), ("ORCHESTRATOR_WORKERS", "3")]);
    let err = Settings::load(None, &clash, vec![])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2 GPUs") && err.contains("drop --workers"),
        "{err}"
    );
    let empty = env(&[("ORCHESTRATOR_GPUS", " , ")]);
    let err = Settings::load(None, &empty, vec![])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ORCHESTRATOR_GPUS") && err.contains("0,1,2,3"),
        "{err}"
    );
}

#[test]
fn in_progress_acks_must_come_before_the_ack_wait_runs_out() {
    let s = Settings::load(None, &env(&[]), vec![]).unwrap();
    assert_eq!(
        (s.ack_wait, s.progress_interval),
        (Duration::from_secs(30), Duration::from_secs(10))
    );
    let long = env(&[
        ("ORCHESTRATOR_ACK_WAIT", "5m"),
        ("ORCHESTRATOR_PROGRESS_INTERVAL", "1m"),
    ]);
    let s = Settings::load(None, &long, vec![]).unwrap();
    assert_eq!(s.ack_wait, Duration::from_secs(300));
    let late = env(&[
        ("ORCHESTRATOR_ACK_WAIT", "10s"),
        ("ORCHESTRATOR_PROGRESS_INTERVAL", "10s"),
    ]);
    let err = Settings::load(None, &late, vec![]).unwrap_err().to_string();
    assert!(
        err.contains("ORCHESTRATOR_PROGRESS_INTERVAL") && err.contains("ORCHESTRATOR_ACK_WAIT"),
        "{err}"
    );
}

#[test]
fn payload_settings_have_sane_defaults_and_refuse_zero() {
    let s = Settings::load(None, &env(&[]), vec![]).unwrap();
    assert_eq!(s.inline_payload_limit, 512 * 1024);
    assert_eq!(s.payload_retention, Duration::from_secs(7 * 24 * 3600));
    let s = Settings::load(
        None,
        &env(&[
            ("ORCHESTRATOR_INLINE_PAYLOAD_LIMIT", "100000"),
            ("ORCHESTRATOR_PAYLOAD_RETENTION", "2d"),
        ]),
        vec![],
    )
    .unwrap();
    assert_eq!(
        (s.inline_payload_limit, s.payload_retention),
        (100_000, Duration::from_secs(2 * 24 * 3600))
    );
    let zero = env(&[("ORCHESTRATOR_INLINE_PAYLOAD_LIMIT", "0")]);
    let err = Settings::load(None, &zero, vec![]).unwrap_err().to_string();
    assert!(err.contains("ORCHESTRATOR_INLINE_PAYLOAD_LIMIT"), "{err}");
}

#[test]
fn zero_durations_are_refused_with_their_variable() {
    for (var, key) in [
        ("ORCHESTRATOR_JOB_TIMEOUT", "job_timeout"),
        ("ORCHESTRATOR_POLL_INTERVAL", "poll_interval"),
        ("ORCHESTRATOR_GROUP_TIMEOUT", "group_timeout"),
    ] {
        let err = Settings::load(None, &env(&[(var, "0s")]), vec![])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{key} is 0")) && err.contains(var),
            "{err}"
        );
    }
}

#[test]
fn replicas_are_one_to_five() {
    assert_eq!(Settings::default().replicas, 1);
    let three = Settings::load(None, &env(&[("ORCHESTRATOR_REPLICAS", "3")]), vec![]).unwrap();
    assert_eq!(three.replicas, 3);
    for bad in ["0", "6"] {
        let err = Settings::load(None, &env(&[("ORCHESTRATOR_REPLICAS", bad)]), vec![])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("replicas (ORCHESTRATOR_REPLICAS) is {bad}"))
                && err.contains("expected 1 to 5"),
            "{err}"
        );
    }
}

#[test]
fn follow_and_backlog_are_checked_and_reach_the_watcher_and_the_pool() {
    use orchestrator_actors::actors::Backlog;
    use orchestrator_actors::edges::Follow;

    let defaults = Settings::load(None, &env(&[]), vec![]).unwrap();
    assert_eq!(defaults.follow(), Ok(Follow::Finalized));
    assert_eq!(defaults.backlog(), Ok(Backlog::All));
    assert_eq!(defaults.poll_interval, None, "smart polling by default");

    let s = Settings::load(
        None,
        &env(&[
            ("ORCHESTRATOR_FOLLOW", "LATEST"),
            ("ORCHESTRATOR_BACKLOG", "newest"),
            ("ORCHESTRATOR_MAX_AGE", "30s"),
            ("ORCHESTRATOR_POLL_INTERVAL", "250ms"),
        ]),
        vec![],
    )
    .unwrap();
    let watcher = crate::wiring::watcher_config(&s, None, "blocks");
    assert_eq!(watcher.follow, Follow::Latest);
    let newest = Backlog::Newest {
        max_age: Duration::from_secs(30),
    };
    assert_eq!(watcher.backlog, newest);
    assert_eq!(watcher.poll_interval, Some(Duration::from_millis(250)));
    let pool = crate::wiring::pool_config(&s, "p".into(), vec![], false);
    assert_eq!(pool.max_age, Some(Duration::from_secs(30)));
    let all = crate::wiring::pool_config(&defaults, "p".into(), vec![], false);
    assert_eq!(all.max_age, None, "backlog all proves every block");

    for (var, value, hint) in [
        ("ORCHESTRATOR_FOLLOW", "head", "finalized, safe or latest"),
        ("ORCHESTRATOR_BACKLOG", "oldest", "all (every block"),
        ("ORCHESTRATOR_MAX_AGE", "0s", "max_age is 0"),
    ] {
        let err = Settings::load(None, &env(&[(var, value)]), vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains(var) && err.contains(hint), "{var}: {err}");
    }
}
