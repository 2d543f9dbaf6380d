//! The live dashboard in a real browser: while a pipeline proves a real
//! anvil chain with slow mock provers (`orchestrator run`, or the roles on a
//! real nats-server with three fan-out provers and the proof matcher serving
//! the page), headless Chromium, driven by playwright-core
//! (`tests/browser/dashboard.mjs`), loads the page and watches a block go
//! from proving to proved, with its proving time, its size and the prover's
//! success rate.
//!
//! Needs Debian's `chromium` and `tests/browser/node_modules`, both from
//! `scripts/install-test-deps.sh`; without them the test says so in one line
//! and passes. `DASHBOARD_SCREENSHOT=docs/dashboard.png` keeps the role
//! test's screenshot there (how the README's picture is made).

mod nats_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nats_support::{Cluster, Role};
use support::http::get_ok as get;
use support::node::free_port;
use support::{Anvil, RunBuilder, eventually};

/// Where playwright-core is installed by the deps script.
fn browser_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// What the browser test needs, or the one line saying what is missing.
fn tools() -> Result<PathBuf, String> {
    let chromium = std::env::var_os("CHROMIUM").map_or("/usr/bin/chromium".into(), PathBuf::from);
    if !chromium.is_file() {
        return Err(format!(
            "{} not found (Debian package chromium; scripts/install-test-deps.sh installs it as root)",
            chromium.display()
        ));
    }
    if !browser_tests()
        .join("node_modules/playwright-core")
        .is_dir()
    {
        return Err(
            "tests/browser/node_modules/playwright-core missing: run scripts/install-test-deps.sh"
                .into(),
        );
    }
    Ok(chromium)
}

/// Runs the browser check against the page on `port`: `Err` with what the
/// script said when a check failed. The screenshot goes to `screenshot`.
fn check_in_browser(chromium: &Path, port: u16, screenshot: &Path) -> Result<String, String> {
    let output = Command::new("node")
        .current_dir(browser_tests())
        .env("CHROMIUM", chromium)
        .arg("dashboard.mjs")
        .arg(format!("http://127.0.0.1:{port}/"))
        .arg(screenshot)
        .output()
        .expect("node runs (Node.js is a test dependency)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(said)
    } else {
        Err(said)
    }
}

/// Waits for the page and its API on `port`: `Err` saying which is missing.
fn await_dashboard(port: u16) -> Result<(), String> {
    if !eventually(Duration::from_secs(60), || {
        get(port, "/api/dashboard").is_some()
    }) {
        return Err(format!("the dashboard never answered on port {port}"));
    }
    let page = get(port, "/").unwrap_or_default();
    if !page.contains("<title>ethproofs-orchestrator</title>") {
        return Err(format!("/ is not the dashboard page: {page:.200}"));
    }
    Ok(())
}

#[test]
fn dashboard_shows_blocks_change_status_live() {
    let chromium = match tools() {
        Ok(chromium) => chromium,
        Err(missing) => {
            eprintln!("skipping the dashboard browser test: {missing}");
            return;
        }
    };
    let anvil = Anvil::start();
    let port = free_port();
    // 2.5 s per proof: every block is seen proving for a couple of polls.
    let mut run = RunBuilder::new("dashboard", &anvil.url())
        .args(["--from", &anvil.finalized().to_string()])
        .args(["--workers", "2", "--metrics-port", &port.to_string()])
        .env("MOCK_PROVE_TIME_MS", "2500")
        .env("MOCK_PROOF_BYTES", "1500")
        .spawn();
    if let Err(why) = await_dashboard(port) {
        run.fail(&why);
    }
    match check_in_browser(&chromium, port, &run.dir().join("dashboard.png")) {
        Ok(said) => eprintln!("{said}"),
        Err(said) => run.fail(&format!("the browser check failed:\n{said}")),
    }
    let status = run.stop();
    run.assert_exit_code(status, 0);
}

#[test]
fn the_proof_matcher_serves_the_dashboard_of_fan_out_provers() {
    let chromium = match tools() {
        Ok(chromium) => chromium,
        Err(missing) => {
            eprintln!("skipping the dashboard browser test: {missing}");
            return;
        }
    };
    let cluster = Cluster::start("dashboard-roles");
    cluster.init();
    let port = free_port();
    let _matcher = cluster.spawn(
        &Role::new("proof-matcher", "proof-matcher").args(["--metrics-port", &port.to_string()]),
    );
    // Three prover setups, each proving every block (distinct consumer
    // names), at different speeds, as in compose's ethproofs setup.
    let _provers: Vec<_> = [("sp1", "3000"), ("risc0", "2500"), ("zisk", "2000")]
        .into_iter()
        .map(|(name, ms)| {
            let name = format!("{name}-prover");
            cluster.spawn(&Role::new(&name, "prover").env([
                ("CONSUMER_NAME", name.as_str()),
                ("MOCK_PROVER_NAME", name.as_str()),
                ("MOCK_PROVE_TIME_MS", ms),
                ("MOCK_PROOF_BYTES", "1500"),
            ]))
        })
        .collect();
    let next = cluster.anvil.finalized().to_string();
    let _watcher = cluster
        .spawn(&Role::new("block-watcher", "block-watcher").env([("NEXT_BLOCK", next.as_str())]));
    if let Err(why) = await_dashboard(port) {
        cluster.fail(&why);
    }
    let screenshot = cluster.dir().join("dashboard.png");
    match check_in_browser(&chromium, port, &screenshot) {
        Ok(said) => eprintln!("{said}"),
        Err(said) => cluster.fail(&format!("the browser check failed:\n{said}")),
    }
    // Every prover has its column, fed from NATS.
    let api = get(port, "/api/dashboard").unwrap_or_default();
    let api: serde_json::Value = serde_json::from_str(&api).expect("/api/dashboard is JSON");
    let provers: Vec<&str> = api["provers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        provers,
        ["risc0-prover", "sp1-prover", "zisk-prover"],
        "{api}"
    );
    if let Some(keep) = std::env::var_os("DASHBOARD_SCREENSHOT") {
        let keep = Path::new(env!("CARGO_MANIFEST_DIR")).join(keep);
        std::fs::copy(&screenshot, &keep).expect("copy the screenshot");
    }
}
