//! The command line: well formed, and each command takes only its flags.

use clap::CommandFactory;

use super::*;

#[test]
fn the_command_line_is_well_formed() {
    Cli::command().debug_assert();
}

fn keys(args: &[&str]) -> Result<Vec<&'static str>, clap::Error> {
    let matches = Cli::command().try_get_matches_from(args)?;
    Ok(overrides(&matches).into_iter().map(|(k, _)| k).collect())
}

#[test]
fn each_command_takes_only_its_flags() {
    for refused in [
        &["orchestrator", "prover", "--from", "5"][..],
        &["orchestrator", "proof-matcher", "--binary", "/x"],
        &["orchestrator", "block-watcher", "--workers", "2"],
        &["orchestrator", "init", "--json"],
        &["orchestrator", "run", "--consumer-name", "x"],
        &["orchestrator", "step-collector", "--rpc", "http://x"],
    ] {
        let err = keys(refused).expect_err(&refused.join(" "));
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument, "{err}");
    }
}

#[test]
fn given_flags_become_their_settings() {
    let run = keys(&[
        "orchestrator",
        "run",
        "--from",
        "5",
        "--to",
        "9",
        "--gpus",
        "0,1",
        "--json",
    ])
    .unwrap();
    assert_eq!(run, ["next_block", "to_block", "gpus", "json"]);
    let prover = keys(&[
        "orchestrator",
        "dispatcher",
        "--multiple-output",
        "--stream",
        "s",
        "--consumer-name",
        "sp1",
    ])
    .unwrap();
    assert_eq!(
        prover,
        [
            "multiple_output",
            "input_stream",
            "output_stream",
            "consumer_name"
        ]
    );
    let collector = keys(&[
        "orchestrator",
        "collector",
        "--strategy",
        "Match",
        "--num-inputs",
        "3",
    ])
    .unwrap();
    assert_eq!(collector, ["strategy", "num_inputs"]);
    let get = keys(&[
        "orchestrator",
        "proof",
        "get",
        "--block",
        "7",
        "--nats",
        "nats://h:4222",
    ])
    .unwrap();
    assert_eq!(get, ["nats_url"]);
}

#[test]
fn flag_values_reach_the_settings_with_their_types() {
    let matches = Cli::command()
        .try_get_matches_from([
            "orchestrator",
            "run",
            "--workers",
            "3",
            "--json",
            "--from",
            "5",
            "--job-timeout",
            "2m",
        ])
        .unwrap();
    let settings =
        crate::config::Settings::load(None, &std::collections::HashMap::new(), overrides(&matches))
            .unwrap();
    assert_eq!(settings.workers, 3);
    assert!(settings.json);
    assert_eq!(settings.next_block, Some(5));
    assert_eq!(settings.job_timeout, std::time::Duration::from_secs(120));
}
