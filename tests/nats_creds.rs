//! Decentralized NATS auth (operator mode): a real nats-server trusts only an
//! operator JWT and the account JWTs preloaded into its memory resolver. The
//! orchestrator's `init` role, given a credentials file (user JWT + NKey seed)
//! of a user of a JetStream-enabled account, logs in, creates its stream and
//! key-value bucket, and never logs the seed; a user of an account the server
//! was never told about gets nowhere.
//!
//! Everything is generated here with the `nkeys` crate, so no `nsc` is needed.

mod nats_support;
mod support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nats_support::NatsServer;
use nkeys::KeyPair;
use serde_json::{Value, json};

/// A v2 NATS JWT: `sub` (with claims `nats`) vouched for by `issuer`, whose
/// key signs "header.claims" the way the server verifies it.
fn jwt(issuer: &KeyPair, sub: &str, name: &str, nats: Value) -> String {
    let header = json!({"typ": "JWT", "alg": "ed25519-nkey"});
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // The jti only has to be unique; the server does not recompute it.
    let claims = json!({
        "jti": format!("{}{iat}", &sub[1..16]),
        "iat": iat,
        "iss": issuer.public_key(),
        "sub": sub,
        "name": name,
        "nats": nats,
    });
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = issuer.sign(signed.as_bytes()).expect("sign JWT");
    format!("{signed}.{}", b64(&signature))
}

/// A fresh account signed by `operator`. JetStream is off unless the limits
/// grant storage and streams, so `jetstream` sets them all to unlimited.
fn account(operator: &KeyPair, name: &str, jetstream: bool) -> (KeyPair, String) {
    let key = KeyPair::new_account();
    let mut limits = json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
    });
    if jetstream {
        for limit in ["disk_storage", "mem_storage", "streams", "consumer"] {
            limits[limit] = json!(-1);
        }
    }
    let nats = json!({"type": "account", "version": 2, "limits": limits});
    let token = jwt(operator, &key.public_key(), name, nats);
    (key, token)
}

/// A fresh user of `account` as a `.creds` file (the layout `nsc` writes),
/// and the user's seed, the secret that must never be logged.
fn user_creds(account: &KeyPair, dir: &Path, name: &str) -> (String, String) {
    let key = KeyPair::new_user();
    let nats = json!({
        "type": "user", "version": 2,
        "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
    });
    let token = jwt(account, &key.public_key(), name, nats);
    let seed = key.seed().expect("user seed");
    let text = format!(
        "-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    );
    let path = dir.join(format!("{name}.creds"));
    std::fs::write(&path, text).expect("write creds file");
    (path.display().to_string(), seed)
}

/// Runs `orchestrator init` with `NATS_CREDS=creds`, cut short after `limit`.
fn init(url: &str, creds: &str, limit: Duration) -> Output {
    nats_support::run_init(url, &[("NATS_CREDS", creds)], limit)
}

#[test]
fn credentials_file_logs_in_to_an_operator_mode_server() {
    let dir = support::temp_dir("nats-creds");
    let operator = KeyPair::new_operator();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "test-operator",
        json!({"type": "operator", "version": 2}),
    );
    // JetStream under an operator will not start without a system account
    // ("system account not setup"), so one is preloaded and named too.
    let (system_key, system_jwt) = account(&operator, "SYS", false);
    let (account_key, account_jwt) = account(&operator, "orchestrator", true);
    let config = dir.path().join("server.conf");
    // No store_dir: the harness passes `-js -sd`, and nats-server refuses a
    // store_dir given twice.
    std::fs::write(
        &config,
        format!(
            "operator: {operator_jwt}\n\
             system_account: {system}\n\
             resolver: MEMORY\n\
             resolver_preload: {{\n  {system}: {system_jwt}\n  {account}: {account_jwt}\n}}\n\
             jetstream: enabled\n",
            system = system_key.public_key(),
            account = account_key.public_key(),
        ),
    )
    .expect("write server config");
    let server = NatsServer::start_with(&["-c", &config.display().to_string()]);

    let (creds, seed) = user_creds(&account_key, dir.path(), "orchestrator");
    let output = init(&server.url(), &creds, Duration::from_secs(30));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "init failed: {log}\nserver log:\n{}",
        server.log()
    );
    assert!(log.contains("stream and key-value bucket ready"), "{log}");
    assert!(!log.contains(&seed), "the NKey seed reached the log: {log}");

    // Same operator, but an account the server's resolver does not hold:
    // signatures alone must not let its users in.
    let (stranger, _) = account(&operator, "stranger", true);
    let (creds, seed) = user_creds(&stranger, dir.path(), "stranger");
    let output = init(&server.url(), &creds, Duration::from_secs(4));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "unknown account got in: {log}");
    assert!(!log.contains("bucket ready"), "{log}");
    assert!(!log.contains(&seed), "the NKey seed reached the log: {log}");
    // Refused as unauthorized because its account is unknown, nothing else.
    assert!(log.contains("authorization violation"), "{log}");
    assert!(server.log().contains("account missing"), "{}", server.log());
}
