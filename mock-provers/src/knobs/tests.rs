use super::*;

const SINGLE: Spec = Spec {
    default_name: "mock-prover",
    default_prove_time_ms: 1000,
    accepts_steps: false,
};
const MULTI: Spec = Spec {
    default_name: "mock-multistep-prover",
    default_prove_time_ms: 0,
    accepts_steps: true,
};

fn resolve(spec: &Spec, flags: &[(&str, &str)], env: &[(&str, &str)]) -> Result<Knobs, String> {
    let extra: Vec<_> = flags
        .iter()
        .map(|(f, v)| (f.to_string(), v.to_string()))
        .collect();
    let lookup = |var: &str| {
        env.iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.to_string())
    };
    Knobs::resolve(spec, &extra, lookup).map_err(|err| {
        assert_eq!(err.exit_code(), prover_sdk::EXIT_USAGE);
        err.to_string()
    })
}

#[test]
fn defaults_come_from_the_spec() {
    let knobs = resolve(&SINGLE, &[], &[]).unwrap();
    let expected = Knobs {
        name: "mock-prover".into(),
        prove_time: Duration::from_secs(1),
        failure_rate: 0.0,
        steps: None,
        log_interval: Duration::ZERO,
        proof_len: DEFAULT_PROOF_LEN,
        helpers: 0,
    };
    assert_eq!(knobs, expected);
    assert_eq!(
        resolve(&MULTI, &[], &[]).unwrap().prove_time,
        Duration::ZERO
    );
}

#[test]
fn env_is_used_and_flags_win() {
    let env = [
        ("MOCK_PROVER_NAME", "env"),
        ("MOCK_PROVE_TIME_MS", "5"),
        ("MOCK_FAILURE_RATE", "0.25"),
        ("MOCK_STEPS", "3"),
    ];
    let knobs = resolve(&MULTI, &[], &env).unwrap();
    assert_eq!(
        (
            knobs.name.as_str(),
            knobs.prove_time.as_millis(),
            knobs.failure_rate,
            knobs.steps
        ),
        ("env", 5, 0.25, Some(3))
    );

    let flags = [
        ("--name", "flag"),
        ("--prove-time-ms", "7"),
        ("--failure-rate", "1"),
        ("--expect-steps", "4"),
    ];
    let knobs = resolve(&MULTI, &flags, &env).unwrap();
    assert_eq!(
        (
            knobs.name.as_str(),
            knobs.prove_time.as_millis(),
            knobs.failure_rate,
            knobs.steps
        ),
        ("flag", 7, 1.0, Some(4))
    );
}

#[test]
fn empty_env_counts_as_unset() {
    let knobs = resolve(
        &SINGLE,
        &[],
        &[("MOCK_PROVER_NAME", ""), ("MOCK_FAILURE_RATE", "")],
    )
    .unwrap();
    assert_eq!(
        (knobs.name.as_str(), knobs.failure_rate),
        ("mock-prover", 0.0)
    );
}

#[test]
fn invalid_values_name_their_source() {
    let err = resolve(&SINGLE, &[("--failure-rate", "1.5")], &[]).unwrap_err();
    assert_eq!(
        err,
        "invalid --failure-rate value '1.5': expected a probability from 0.0 to 1.0"
    );
    let err = resolve(&SINGLE, &[], &[("MOCK_FAILURE_RATE", "NaN")]).unwrap_err();
    assert!(
        err.starts_with("invalid MOCK_FAILURE_RATE value 'NaN'"),
        "{err}"
    );
    let err = resolve(&SINGLE, &[], &[("MOCK_PROVE_TIME_MS", "-1")]).unwrap_err();
    assert!(
        err.starts_with("invalid MOCK_PROVE_TIME_MS value '-1'"),
        "{err}"
    );
    let err = resolve(&SINGLE, &[("--name", "")], &[]).unwrap_err();
    assert!(err.starts_with("invalid --name value ''"), "{err}");
    let err = resolve(&MULTI, &[("--steps", "0")], &[]).unwrap_err();
    assert!(err.starts_with("invalid --steps value '0'"), "{err}");
}

#[test]
fn unknown_and_conflicting_flags_are_rejected() {
    let err = resolve(&SINGLE, &[("--steps", "3")], &[]).unwrap_err();
    assert!(
        err.starts_with("unknown argument '--steps'") && err.contains("[--failure-rate VALUE]"),
        "{err}"
    );
    assert!(!err.contains("--steps VALUE"), "{err}");
    let err = resolve(&MULTI, &[("--steps", "3"), ("--expect-steps", "3")], &[]).unwrap_err();
    assert_eq!(
        err,
        "--steps and --expect-steps set the same thing; give only one"
    );
}

#[test]
fn single_step_prover_ignores_mock_steps_env() {
    assert_eq!(
        resolve(&SINGLE, &[], &[("MOCK_STEPS", "junk")])
            .unwrap()
            .steps,
        None
    );
}

#[test]
fn realism_knobs_come_from_env_or_flags() {
    let env = [
        ("MOCK_LOG_INTERVAL_MS", "250"),
        ("MOCK_PROOF_BYTES", "4000000"),
        ("MOCK_HELPERS", "2"),
    ];
    for spec in [&SINGLE, &MULTI] {
        let knobs = resolve(spec, &[], &env).unwrap();
        assert_eq!(
            (
                knobs.log_interval.as_millis(),
                knobs.proof_len,
                knobs.helpers
            ),
            (250, 4_000_000, 2)
        );
        let flags = [
            ("--log-interval-ms", "0"),
            ("--proof-bytes", "18"),
            ("--helpers", "64"),
        ];
        let knobs = resolve(spec, &flags, &env).unwrap();
        assert_eq!(
            (knobs.log_interval, knobs.proof_len, knobs.helpers),
            (Duration::ZERO, 18, 64)
        );
        let empty = [
            ("MOCK_LOG_INTERVAL_MS", ""),
            ("MOCK_PROOF_BYTES", ""),
            ("MOCK_HELPERS", ""),
        ];
        assert_eq!(
            resolve(spec, &[], &empty).unwrap(),
            resolve(spec, &[], &[]).unwrap()
        );
    }
}

#[test]
fn invalid_realism_values_name_their_source() {
    let err = resolve(&SINGLE, &[("--proof-bytes", "17")], &[]).unwrap_err();
    assert_eq!(
        err,
        "invalid --proof-bytes value '17': expected a whole number of characters, at least 18"
    );
    let err = resolve(&MULTI, &[], &[("MOCK_LOG_INTERVAL_MS", "abc")]).unwrap_err();
    assert!(
        err.starts_with("invalid MOCK_LOG_INTERVAL_MS value 'abc': expected a whole number"),
        "{err}"
    );
    let err = resolve(&SINGLE, &[], &[("MOCK_HELPERS", "65")]).unwrap_err();
    assert_eq!(
        err,
        "invalid MOCK_HELPERS value '65': expected a whole number of helper processes from 0 to 64"
    );
    let err = resolve(&SINGLE, &[("--helpers", "-1")], &[]).unwrap_err();
    assert!(err.starts_with("invalid --helpers value '-1'"), "{err}");
}
