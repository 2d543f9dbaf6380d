//! NATS connection options against real servers that demand them: user and
//! password, token, TLS verified with a CA file, a credentials file. The
//! orchestrator's `init` role is the client; secrets must never reach its logs.

mod nats_support;
mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nats_support::NatsServer;

/// The secret the servers accept.
const SECRET: &str = "s3cret-Pa55";
/// A wrong secret handed to the client, which must not reach its log either.
const WRONG_SECRET: &str = "wr0ng-Pa55-handed-over";

use nats_support::{run_init as init, run_init_until};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_ok_without_secret(output: &Output) {
    let log = stderr(output);
    assert!(output.status.success(), "init failed: {log}");
    assert!(log.contains("stream and key-value bucket ready"), "{log}");
    assert!(!log.contains(SECRET), "a secret reached the log: {log}");
}

/// Whether `log` ends with the orchestrator's one-line error that the server
/// refused its credentials, naming the settings to check.
fn shows_authorization_refused(log: &str) -> bool {
    log.lines().any(|line| {
        line.starts_with("error: NATS at")
            && line.contains("refused the credentials (authorization violation)")
            && line.contains("NATS_PASSWORD")
    })
}

/// `init` with credentials `server` must refuse: it stops by itself (exit
/// code 1, one clear error line) instead of retrying forever, and it was
/// refused by the server, not cut short by the harness's deadlock guard.
fn init_refused(server: &NatsServer, env: &[(&str, &str)]) -> Output {
    let refused = init(&server.url(), env, Duration::from_secs(60));
    let log = stderr(&refused);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "init did not stop by itself on refused credentials: {log}"
    );
    assert!(
        shows_authorization_refused(&log),
        "init never said the server refused its credentials: {log}"
    );
    assert_eq!(
        log.matches("refused the credentials").count(),
        1,
        "the refusal should be logged once: {log}"
    );
    assert!(
        server.log().contains("authentication error"),
        "the server never refused a login: {}",
        server.log()
    );
    assert_refused_without(&refused, env);
    refused
}

/// [`run_init_until`] with a deadlock guard, never a speed expectation.
fn init_until(url: &str, env: &[(&str, &str)], refused: impl Fn(&str) -> bool) -> Output {
    run_init_until(url, env, Duration::from_secs(60), refused)
}

/// `output` is a run that got nowhere and whose log holds none of the
/// secrets it was handed in `env`, nor [`SECRET`].
fn assert_refused_without(output: &Output, env: &[(&str, &str)]) {
    let log = stderr(output);
    assert!(
        !output.status.success(),
        "init succeeded without valid credentials: {log}"
    );
    assert!(!log.contains("bucket ready"), "{log}");
    for (key, value) in env {
        if key.contains("PASSWORD") || key.contains("TOKEN") {
            assert!(!log.contains(value), "{key} reached the log: {log}");
        }
    }
    assert!(!log.contains(SECRET), "a secret reached the log: {log}");
}

#[test]
fn user_and_password() {
    let server = NatsServer::start_with(&["--user", "orchestrator", "--pass", SECRET]);
    let url = server.url();
    let good = [("NATS_USER", "orchestrator"), ("NATS_PASSWORD", SECRET)];
    assert_ok_without_secret(&init(&url, &good, Duration::from_secs(30)));
    let in_url = url.replace("nats://", &format!("nats://orchestrator:{SECRET}@"));
    assert_ok_without_secret(&init(&in_url, &[], Duration::from_secs(30)));
    let wrong = [
        ("NATS_USER", "orchestrator"),
        ("NATS_PASSWORD", WRONG_SECRET),
    ];
    init_refused(&server, &wrong);
}

/// Every command that talks to NATS, as an operator would start it.
const NATS_COMMANDS: &[(&str, &[(&str, &str)])] = &[
    ("init", &[]),
    ("block-watcher", &[]),
    ("prover", &[]),
    ("proof-matcher", &[]),
    ("step-collector", &[]),
    ("collector", &[("STRATEGY", "Proof")]),
    ("dispatcher", &[]),
];

/// Longest a refused command may take to stop: the server refuses at the
/// first attempt, so anything near this is a retry loop, not a refusal.
const REFUSED_WITHIN: Duration = Duration::from_secs(5);

/// Every role, handed a wrong password, stops by itself within seconds
/// with exit code 1 (2 is for usage errors) and one warning or error on
/// stderr: the error naming the settings to check. Nothing kills it.
#[test]
fn every_role_exits_1_with_one_line_on_refused_credentials() {
    let server = NatsServer::start_with(&["--user", "orchestrator", "--pass", SECRET]);
    let work = support::temp_dir("refused-roles");
    for (command, extra) in NATS_COMMANDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
            .arg(command)
            .env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| k == "PATH" || k == "HOME"))
            .env("NATS_URL", server.url())
            .env("NATS_USER", "orchestrator")
            .env("NATS_PASSWORD", WRONG_SECRET)
            .env("L1_RPC", "http://127.0.0.1:9")
            .env("RUST_LOG", "info")
            .env("METRICS_PORT", support::node::free_port().to_string())
            .env("NO_COLOR", "1")
            .envs(extra.iter().copied())
            .current_dir(work.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start orchestrator");
        let started = Instant::now();
        let mut status = None;
        support::eventually(REFUSED_WITHIN, || {
            status = child.try_wait().expect("try_wait");
            status.is_some()
        });
        let Some(status) = status else {
            let _ = child.kill();
            let output = child.wait_with_output().expect("wait for the killed role");
            panic!(
                "`{command}` still running {REFUSED_WITHIN:?} after refused credentials: {}",
                stderr(&output)
            );
        };
        let log = stderr(&child.wait_with_output().expect("stderr"));
        assert_eq!(
            status.code(),
            Some(1),
            "`{command}` exited with {status}: {log}"
        );
        // Info lines (e.g. where metrics are served) may come first; of
        // warnings and errors there is one, the refusal.
        let loud: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("error:") || l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        assert!(
            loud.len() == 1 && shows_authorization_refused(&log),
            "`{command}` should say one thing, the refusal; it said {} in {:?}:\n{log}",
            loud.len(),
            started.elapsed()
        );
        assert!(!log.contains(WRONG_SECRET), "`{command}`: {log}");
    }
}

#[test]
fn token() {
    let server = NatsServer::start_with(&["--auth", SECRET]);
    assert_ok_without_secret(&init(
        &server.url(),
        &[("NATS_TOKEN", SECRET)],
        Duration::from_secs(30),
    ));
    init_refused(&server, &[("NATS_TOKEN", WRONG_SECRET)]);
}

#[test]
fn tls_verified_with_a_ca_file() {
    let certs = support::temp_dir("nats-tls");
    make_certificates(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let (cert, key) = (file("server.pem"), file("server.key"));
    // With a password too, so both runs are handed a secret to keep.
    let server = NatsServer::start_with(&[
        "--tls",
        "--tlscert",
        &cert,
        "--tlskey",
        &key,
        "--user",
        "orchestrator",
        "--pass",
        SECRET,
    ]);
    let url = server.url().replace("nats://", "tls://");
    let login = [("NATS_USER", "orchestrator"), ("NATS_PASSWORD", SECRET)];
    let ca = file("ca.pem");
    let with_ca = [login.as_slice(), &[("NATS_CA", ca.as_str())]].concat();
    assert_ok_without_secret(&init(&url, &with_ca, Duration::from_secs(30)));
    // Without the CA the server's certificate cannot be trusted: the
    // handshake fails on the client's side, as the server's log tells.
    let distrusted = "tls: unknown certificate authority";
    let refused = init_until(&url, &login, |_| server.log().contains(distrusted));
    assert!(
        server.log().contains(distrusted),
        "the client never turned the certificate down (killed at the deadlock guard?): {}\n{}",
        stderr(&refused),
        server.log()
    );
    assert_refused_without(&refused, &login);
}

#[test]
fn unreadable_credentials_file_is_one_clear_error() {
    let server = NatsServer::start();
    let output = init(
        &server.url(),
        &[("NATS_CREDS", "/nonexistent/user.creds")],
        Duration::from_secs(30),
    );
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(
        log.contains("cannot read NATS credentials file /nonexistent/user.creds"),
        "{log}"
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, with openssl.
fn make_certificates(dir: &Path) {
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=test-ca",
            ],
        ]
        .concat(),
        [
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    ];
    for args in steps {
        let status = Command::new("openssl")
            .args(&args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "openssl {args:?} failed (is openssl installed?)"
        );
    }
}
