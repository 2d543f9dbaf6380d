//! NATS connection options against real servers that demand them: user and
//! password, token, TLS verified with a CA file, a credentials file. The
//! orchestrator's `init` role is the client; secrets must never reach its logs.

mod nats_support;
mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nats_support::NatsServer;

const SECRET: &str = "s3cret-Pa55";

use nats_support::run_init as init;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_ok_without_secret(output: &Output) {
    let log = stderr(output);
    assert!(output.status.success(), "init failed: {log}");
    assert!(log.contains("stream and key-value bucket ready"), "{log}");
    assert!(!log.contains(SECRET), "a secret reached the log: {log}");
}

fn assert_refused_without_secret(output: &Output) {
    let log = stderr(output);
    assert!(
        !output.status.success(),
        "init succeeded without valid credentials: {log}"
    );
    assert!(!log.contains("bucket ready"), "{log}");
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
        ("NATS_PASSWORD", "wrong-Pa55"),
    ];
    let refused = init(&url, &wrong, Duration::from_secs(3));
    assert_refused_without_secret(&refused);
    assert!(
        stderr(&refused).to_lowercase().contains("authorization"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn token() {
    let server = NatsServer::start_with(&["--auth", SECRET]);
    assert_ok_without_secret(&init(
        &server.url(),
        &[("NATS_TOKEN", SECRET)],
        Duration::from_secs(30),
    ));
    assert_refused_without_secret(&init(
        &server.url(),
        &[("NATS_TOKEN", "nope")],
        Duration::from_secs(3),
    ));
}

#[test]
fn tls_verified_with_a_ca_file() {
    let certs = support::temp_dir("nats-tls");
    make_certificates(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let (cert, key) = (file("server.pem"), file("server.key"));
    let server = NatsServer::start_with(&["--tls", "--tlscert", &cert, "--tlskey", &key]);
    let url = server.url().replace("nats://", "tls://");
    assert_ok_without_secret(&init(
        &url,
        &[("NATS_CA", &file("ca.pem"))],
        Duration::from_secs(30),
    ));
    // Without the CA the server's certificate cannot be trusted.
    assert_refused_without_secret(&init(&url, &[], Duration::from_secs(3)));
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
