//! Role mode configured like the original template: its services' commands
//! and environment blocks, copied from its compose files, run unchanged and
//! prove blocks; `init` can run any number of times; and a bad value stops a
//! role at once with exit code 2 and one stderr line naming the key and value.

mod nats_support;
mod support;

use std::time::Duration;

use nats_support::checks::{announced_blocks, each_block_exactly, window};
use nats_support::layout::{self, template_service};
use nats_support::{BACKLOG, Cluster, Role, mock_bin};

/// Deadlock guard for a process expected to exit by itself.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn template_services_prove_blocks_unchanged() {
    let cluster = Cluster::start("roles-template");
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 5);
    let mock = mock_bin("mock-prover");
    // No `init`: the template has none, its services create what they need.
    let _roles = [
        template_service("mock-prover", "dispatcher", layout::BLOCK_PROVER)
            .env([("BINARY", mock.as_str())]),
        template_service("proof-collector", "collector", layout::PROOF_COLLECTOR),
        template_service("block-collector", "collector", layout::BLOCK_COLLECTOR)
            .env([("NEXT_BLOCK", first.to_string())]),
    ]
    .map(|role| cluster.spawn(&role));
    let mut completed = cluster.tap("completed_proofs");
    let mut blocks = cluster.tap("blocks");

    cluster.await_completed_once(&mut completed, &window);
    cluster.check(blocks.read_for(nats_support::LINGER));
    let announced = cluster.check(announced_blocks(&blocks.records));
    cluster.check(each_block_exactly("blocks", &window, announced, 1));
}

#[test]
fn init_twice_succeeds_both_times() {
    let cluster = Cluster::start("roles-init");
    cluster.init();
    cluster.init();
    // What init made is usable: a reader can open the stream.
    cluster.tap("blocks");
}

/// Runs `collector` with `env` and checks that it exits 2, writing one line
/// that names `key` and `value`.
fn assert_rejected(test: &str, env: &[(&str, &str)], key: &str, value: &str) {
    let cluster = Cluster::start(test);
    let role = Role::new("collector", "collector").env(env.iter().copied());
    let (process, status) = cluster.run_to_exit(&role, EXIT_TIMEOUT);
    let stderr = process.stderr();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let [line] = lines[..] else {
        cluster.fail(&format!(
            "expected one stderr line, got {}:\n{stderr}",
            lines.len()
        ));
    };
    if status.code() != Some(2) {
        cluster.fail(&format!("expected exit code 2, got {status}"));
    }
    let names_key = line.to_lowercase().contains(&key.to_lowercase());
    if !names_key || !line.contains(value) {
        cluster.fail(&format!(
            "stderr line does not name {key} and {value:?}: {line}"
        ));
    }
}

#[test]
fn unknown_strategy_exits_2_naming_it() {
    let env = [("STRATEGY", "Nope")];
    assert_rejected("roles-bad-strategy", &env, "STRATEGY", "Nope");
}

#[test]
fn invalid_num_inputs_exits_2_naming_it() {
    let env = [("STRATEGY", "Match"), ("NUM_INPUTS", "abc")];
    assert_rejected("roles-bad-num-inputs", &env, "NUM_INPUTS", "abc");
}

/// A role started before its NATS server (compose starts them together)
/// waits for it, saying so, instead of failing or hammering it.
#[test]
fn init_started_before_nats_waits_for_it() {
    use std::io::{BufRead, BufReader};

    let mut server = nats_support::NatsServer::start();
    server.kill();
    let mut init = nats_support::spawn_init(&server.url(), &[]);
    let pid = init.id();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(90));
        // SAFETY: plain kill(2) of our child, a deadlock guard; a reaped pid only errs.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let mut lines = BufReader::new(init.stderr.take().expect("piped stderr")).lines();
    let mut log = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        let retrying = line.contains("NATS not ready; retrying");
        log.push(line);
        if retrying {
            break;
        }
    }
    assert!(
        log.last().is_some_and(|l| l.contains("retrying")),
        "init ended without waiting for NATS:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter().any(|l| l.contains("the server did not answer")),
        "the connection errors say where to look:\n{}",
        log.join("\n")
    );
    server.restart();
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let status = init.wait().expect("wait for init");
    let rest = rest.join().unwrap();
    assert!(
        status.success(),
        "init did not finish once NATS was up ({status}):\n{}",
        rest.join("\n")
    );
}
