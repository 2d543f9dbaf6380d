//! The compose monitoring profile (`compose/docker-compose-monitoring.yml`)
//! checked without an engine: Grafana's dashboard JSON is well formed and
//! wired to the provisioned Prometheus data source, each of its queries
//! names only metrics this project exports, and Prometheus scrapes services
//! that exist on the port the setups serve metrics on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use orchestrator_actors::metrics as m;
use serde_json::Value;

fn compose(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("compose")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(compose(path)).unwrap_or_else(|e| panic!("compose/{path}: {e}"))
}

fn dashboard() -> Value {
    let text = read("monitoring/grafana/dashboards/orchestrator.json");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every metric the binary exports, by the names Prometheus stores.
fn exported() -> BTreeSet<String> {
    let counters_and_gauges = [
        m::BLOCKS_SEEN,
        m::BLOCKS_PUBLISHED,
        m::FINALIZED_HEAD,
        m::LAST_BLOCK_ANNOUNCED,
        m::LAST_BLOCK_PROVED,
        m::PROVING_LAG,
        m::PROOFS_COMPLETED,
        m::JOBS_STARTED,
        m::JOBS_SUCCEEDED,
        m::JOBS_FAILED,
        m::JOBS_RETRIED,
        m::JOBS_DEAD_LETTERED,
        m::JOBS_HANDED_BACK,
        m::JOBS_IN_FLIGHT,
        m::WORKER_RESTARTS,
        m::INTAKE_PAUSED,
        m::FAILURES_IN_A_ROW,
        m::PUBLISH_ERRORS,
        m::ACK_ERRORS,
    ];
    let histograms = [m::PROVING_SECONDS, m::PROOF_BYTES];
    let mut names: BTreeSet<String> = counters_and_gauges.iter().map(|n| n.to_string()).collect();
    for h in histograms {
        for suffix in ["_bucket", "_sum", "_count"] {
            names.insert(format!("{h}{suffix}"));
        }
    }
    names
}

/// The `orchestrator_*` names a PromQL expression reads.
fn metrics_in(expr: &str) -> Vec<&str> {
    expr.match_indices("orchestrator_")
        .map(|(at, _)| {
            let rest = &expr[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[test]
fn the_grafana_dashboard_uses_the_provisioned_data_source() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "ethproofs-orchestrator");
    let datasources = read("monitoring/grafana/provisioning/datasources/prometheus.yml");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(ids.insert(panel["id"].as_u64()), "{title}: duplicate id");
        for key in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        let uid = panel["datasource"]["uid"].as_str().unwrap_or_default();
        assert!(
            datasources.contains(&format!("uid: {uid}\n")),
            "{title}: data source uid {uid:?} is not provisioned"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            assert!(
                target["refId"].is_string(),
                "{title}: a query without refId"
            );
            assert!(target["expr"].is_string(), "{title}: a query without expr");
        }
    }
    let provider = read("monitoring/grafana/provisioning/dashboards/orchestrator.yml");
    let compose_file = read("docker-compose-monitoring.yml");
    assert!(
        provider.contains("path: /var/lib/grafana/dashboards")
            && compose_file.contains("./monitoring/grafana/dashboards:/var/lib/grafana/dashboards"),
        "the provider reads the directory the compose file mounts"
    );
}

#[test]
fn every_dashboard_query_reads_exported_metrics() {
    let exported = exported();
    let dashboard = dashboard();
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let names = metrics_in(expr);
            assert!(!names.is_empty(), "{expr}: reads no orchestrator metric");
            for name in names {
                assert!(
                    exported.contains(name),
                    "panel {:?} reads {name}, which the orchestrator does not export",
                    panel["title"]
                );
                used.insert(name.to_owned());
            }
        }
    }
    // The must-haves: real-time share, lag, failures, proof size.
    for needed in [
        "orchestrator_proving_seconds_bucket",
        "orchestrator_proving_lag_blocks",
        "orchestrator_jobs_dead_lettered_total",
        "orchestrator_proof_bytes_bucket",
        "orchestrator_jobs_in_flight",
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
}

#[test]
fn prometheus_scrapes_services_of_the_setups_on_their_metrics_port() {
    let env = read(".env");
    let port = env
        .lines()
        .find_map(|line| line.strip_prefix("METRICS_PORT="))
        .expect("compose/.env sets METRICS_PORT");
    let setups: String = std::fs::read_dir(compose(""))
        .expect("compose/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .map(|p| std::fs::read_to_string(p).expect("compose file"))
        .collect();
    let config = read("monitoring/prometheus.yml");
    let targets: Vec<&str> = config
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .filter(|t| t.contains(':') && !t.contains(' ') && !t.ends_with(':'))
        .collect();
    assert!(targets.len() >= 5, "{targets:?}");
    for target in targets {
        let (service, target_port) = target.split_once(':').expect("host:port");
        assert_eq!(target_port, port, "{target}: not METRICS_PORT");
        assert!(
            setups.contains(&format!("\n  {service}:\n")),
            "{service} is no service of any compose setup"
        );
    }
}
