//! Harness of the container test (`tests/containers.rs`): a Docker engine
//! and the images (through `scripts/containers/`), an anvil node the
//! containers reach on the Docker host, and a [`Deployment`]: one compose
//! setup started and stopped with the Makefile's own targets, under a project
//! name of its own.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::node::{find_tool, free_port};

/// The image the test builds from the host's binaries (never the `:local`
/// tag users build, so `make start-*` never runs a test build).
pub const IMAGE: &str = "ethproofs-orchestrator:test";
/// The NATS stand-in built from the test's nats-server binary.
pub const NATS_IMAGE: &str = "ethproofs-test/nats:local";
/// Deadlock guard for one wait; never a speed expectation.
pub const WAIT: Duration = Duration::from_secs(120);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command; its output, or a panic naming it.
pub fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not run {command:?}: {e}"))
}

/// Runs a command that must succeed; its stdout.
pub fn check(command: &mut Command) -> String {
    let output = run(command);
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn script(name: &str) -> Command {
    let mut command = Command::new(repo().join("scripts/containers").join(name));
    command.current_dir(repo());
    command
}

/// A Docker engine and the images, once per test binary. `Err` with the
/// engine script's one line when no engine can run here (the tests then
/// skip); any later failure (base images, the test image) panics.
pub fn engine() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let output = run(&mut script("engine.sh"));
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let reason = stderr.lines().last().unwrap_or("engine script failed");
                return Err(reason.trim_start_matches("containers: ").to_owned());
            }
            let deps = find_tool("NATS_SERVER_BIN", "nats-server");
            let path = format!(
                "{}:{}",
                deps.parent().expect("tool dir").display(),
                std::env::var("PATH").unwrap_or_default()
            );
            check(
                script("base-images.sh")
                    .args(["debian", "nats"])
                    .env("NATS_IMAGE", NATS_IMAGE)
                    .env("PATH", &path),
            );
            let bin_dir = Path::new(env!("CARGO_BIN_EXE_orchestrator"))
                .parent()
                .expect("bin dir");
            crate::support::ensure_mock_provers_built();
            check(script("test-image.sh").arg(bin_dir).arg(IMAGE));
            Ok(())
        })
        .clone()
}

/// The Docker host's address on the default bridge: where
/// `host.docker.internal` (`host-gateway`) points inside the containers.
fn bridge_ip() -> String {
    let inspect = check(Command::new("docker").args([
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
    ]));
    if !inspect.trim().is_empty() {
        return inspect.trim().to_owned();
    }
    // Engines that leave the gateway out of the inspect output: docker0's address.
    let addr = check(Command::new("ip").args(["-4", "-o", "addr", "show", "dev", "docker0"]));
    addr.split_whitespace()
        .skip_while(|word| *word != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .unwrap_or_else(|| panic!("no IPv4 address on docker0: {addr}"))
        .to_owned()
}

/// anvil on the Docker host, listening on the bridge address only, so the
/// containers reach it as `http://host.docker.internal:PORT`; killed when
/// dropped.
pub struct HostAnvil {
    child: Child,
    addr: SocketAddr,
}

impl HostAnvil {
    pub fn start() -> HostAnvil {
        let ip = bridge_ip();
        let bin = find_tool("ANVIL_BIN", "anvil");
        let port = free_port();
        let child = Command::new(&bin)
            .args(["--host", &ip, "--port", &port.to_string()])
            .args(["--block-time", "1", "--slots-in-an-epoch", "1", "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));
        let anvil = HostAnvil {
            child,
            addr: format!("{ip}:{port}").parse().expect("socket address"),
        };
        let ready = crate::support::eventually(Duration::from_secs(20), || {
            anvil.call("eth_blockNumber", json!([])).is_ok()
        });
        assert!(ready, "anvil did not answer on {}", anvil.addr);
        anvil
    }

    /// `L1_RPC` for the containers.
    pub fn container_url(&self) -> String {
        format!("http://host.docker.internal:{}", self.addr.port())
    }

    /// The current finalized block.
    pub fn finalized(&self) -> u64 {
        let block = self
            .call("eth_getBlockByNumber", json!(["finalized", false]))
            .unwrap_or_else(|e| panic!("anvil: {e}"));
        let hex = block["number"].as_str().expect("block number");
        u64::from_str_radix(hex.trim_start_matches("0x"), 16).expect("hex block number")
    }

    /// Mines `blocks` blocks at once.
    pub fn mine(&self, blocks: u64) {
        self.call("anvil_mine", json!([format!("{blocks:#x}")]))
            .unwrap_or_else(|e| panic!("anvil_mine: {e}"));
    }

    /// One JSON-RPC call over HTTP/1.0 (the server closes the connection).
    fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let body = body.to_string();
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        let request = format!(
            "POST / HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let mut response = String::new();
        stream
            .write_all(request.as_bytes())
            .and_then(|()| stream.read_to_string(&mut response))
            .map_err(|e| e.to_string())?;
        let (_, payload) = response.split_once("\r\n\r\n").ok_or("no HTTP body")?;
        let mut reply: Value = serde_json::from_str(payload).map_err(|e| e.to_string())?;
        Ok(reply["result"].take())
    }
}

impl Drop for HostAnvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One compose setup, started with `make -C compose TARGET` under its own
/// project name and NATS port; `make stop-services` when dropped (if the
/// test did not stop it itself).
pub struct Deployment {
    project: String,
    env: Vec<(String, String)>,
    /// `nats://127.0.0.1:PORT`: the setup's NATS as published on the host.
    pub nats_url: String,
    stopped: bool,
}

impl Deployment {
    /// `make TARGET` with the test's images, `anvil` as `L1_RPC`, a 1 s poll
    /// interval, a short ack wait (a killed prover's job goes to another one
    /// after 6 s, not 30 s), `NEXT_BLOCK` if given (else unset) and `extra`.
    pub fn start(
        target: &str,
        anvil: &HostAnvil,
        next_block: Option<u64>,
        extra: &[(&str, &str)],
    ) -> Deployment {
        let port = free_port();
        let project = format!("ethproofs-test-{}", target.trim_start_matches("start-"));
        let mut env: Vec<(String, String)> = [
            ("COMPOSE_PROJECT_NAME", project.as_str()),
            ("ORCHESTRATOR_IMAGE", IMAGE),
            ("NATS_IMAGE", NATS_IMAGE),
            ("NATS_HOST_PORT", &port.to_string()),
            ("L1_RPC", &anvil.container_url()),
            ("ORCHESTRATOR_POLL_INTERVAL", "1s"),
            ("ORCHESTRATOR_ACK_WAIT", "6s"),
            ("ORCHESTRATOR_PROGRESS_INTERVAL", "2s"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some(block) = next_block {
            env.push(("NEXT_BLOCK".into(), block.to_string()));
        }
        let deployment = Deployment {
            project,
            env,
            nats_url: format!("nats://127.0.0.1:{port}"),
            stopped: false,
        };
        // A run interrupted before its cleanup may have left the project up.
        deployment.make("stop-services");
        let output = deployment.make(target);
        if !output.status.success() {
            deployment.fail(&format!(
                "make {target} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        deployment
    }

    fn make(&self, target: &str) -> Output {
        let mut make = Command::new("make");
        make.args(["-s", "-C"])
            .arg(repo().join("compose"))
            .arg(target);
        // The developer's shell must not change what the setup runs.
        for var in [
            "NEXT_BLOCK",
            "MOCK_PROVE_TIME_MS",
            "COMPOSE",
            "COMPOSE_FILE",
        ] {
            make.env_remove(var);
        }
        make.envs(self.env.iter().map(|(k, v)| (k, v)));
        run(&mut make)
    }

    /// The containers (ids, running or not) of one service.
    pub fn containers(&self, service: &str) -> Vec<String> {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let service = format!("label=com.docker.compose.service={service}");
        let ids = check(
            Command::new("docker").args(["ps", "-aq", "--filter", &project, "--filter", &service]),
        );
        ids.lines().map(str::to_owned).collect()
    }

    /// The one container of `service`; fails the test if there is not
    /// exactly one.
    pub fn container(&self, service: &str) -> String {
        match &self.containers(service)[..] {
            [id] => id.clone(),
            other => self.fail(&format!(
                "expected one container of service {service}, found {}",
                other.len()
            )),
        }
    }

    /// What a container wrote to stdout and stderr.
    pub fn logs(&self, container: &str) -> String {
        let output = run(Command::new("docker").args(["logs", container]));
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        text
    }

    /// Waits until the prover in `container` runs a job, then kills the
    /// container (SIGKILL: no hand-back); returns that job's id.
    pub fn kill_mid_job(&self, container: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(job) = job_in_flight(&self.logs(container)) {
                check(Command::new("docker").args(["kill", container]));
                return job;
            }
            if Instant::now() > deadline {
                self.fail(&format!("container {container} never ran a job"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `make stop-services`, then checks that no container, network or
    /// volume of the project is left.
    pub fn stop(&mut self) {
        self.stopped = true;
        let output = self.make("stop-services");
        assert!(
            output.status.success(),
            "make stop-services failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let label = format!("label=com.docker.compose.project={}", self.project);
        let name = format!("name={}_", self.project);
        // A set: a resource may match both its label and its name.
        let mut left = BTreeSet::new();
        for (kind, filter) in [
            ("container", &label),
            ("network", &label),
            ("network", &name),
            ("volume", &label),
            ("volume", &name),
        ] {
            let mut docker = Command::new("docker");
            match kind {
                "container" => docker.args(["ps", "-a"]),
                other => docker.args([other, "ls"]),
            };
            let ids = check(docker.args(["-q", "--filter", filter]));
            left.extend(ids.lines().map(|id| format!("{kind} {id}")));
        }
        assert!(
            left.is_empty(),
            "make stop-services left {} of project {}: {left:?}",
            left.len(),
            self.project
        );
    }

    /// Fails the test with `what` and the tail of every service's log.
    pub fn fail(&self, what: &str) -> ! {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let names = check(Command::new("docker").args([
            "ps",
            "-a",
            "--filter",
            &label,
            "--format",
            "{{.Names}} {{.Status}}",
        ]));
        let mut report = format!("{what}\ncontainers of {}:\n{names}", self.project);
        for line in names.lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            let logs = self.logs(name);
            let tail: Vec<&str> = logs.lines().rev().take(15).collect();
            report.push_str(&format!("--- {name} (last lines)\n"));
            for line in tail.iter().rev() {
                report.push_str(line);
                report.push('\n');
            }
        }
        panic!("{report}");
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if !self.stopped {
            self.make("stop-services");
        }
    }
}

/// The job ids in `job=` fields of the lines of `logs` that contain `what`.
fn jobs(logs: &str, what: &str) -> Vec<String> {
    logs.lines()
        .filter(|line| line.contains(what))
        .filter_map(|line| {
            let (_, rest) = line.split_once(" job=")?;
            Some(rest.split_whitespace().next()?.trim_matches('"').to_owned())
        })
        .collect()
}

/// The jobs a prover container finished (`job done`).
pub fn jobs_done(logs: &str) -> Vec<String> {
    jobs(logs, "job done")
}

/// The job a prover container's binary is running: the last one whose
/// output it relayed (`prover:` lines) and that it has not finished.
pub fn job_in_flight(logs: &str) -> Option<String> {
    let done: BTreeSet<String> = jobs_done(logs).into_iter().collect();
    let started = jobs(logs, " prover: ");
    started.into_iter().rev().find(|job| !done.contains(job))
}

/// For each block, the containers (by name) whose logs say they finished its
/// job (`job=block-N`), among `containers`.
pub fn blocks_done_by(
    deployment: &Deployment,
    containers: &[(&str, String)],
) -> BTreeMap<u64, Vec<String>> {
    let mut by_block: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (name, id) in containers {
        for job in jobs_done(&deployment.logs(id)) {
            if let Some(block) = job.strip_prefix("block-").and_then(|b| b.parse().ok()) {
                by_block.entry(block).or_default().push(name.to_string());
            }
        }
    }
    by_block
}

/// Every `docker-compose-*.yml` of compose/, by file name.
pub fn setup_files() -> Vec<String> {
    let dir: PathBuf = repo().join("compose");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("docker-compose-") && name.ends_with(".yml"))
        .collect();
    files.sort();
    files
}

/// `make -C compose config` with the test's images: its output.
pub fn compose_config() -> Output {
    let mut make = Command::new("make");
    make.args(["-s", "-C"])
        .arg(repo().join("compose"))
        .arg("config");
    make.env("ORCHESTRATOR_IMAGE", IMAGE)
        .env("NATS_IMAGE", NATS_IMAGE);
    run(&mut make)
}
