//! Part 3: role mode on loopback NATS. A fresh nats-server per repeat,
//! `orchestrator init`, a proof matcher and 1 or 2 prover processes (one
//! worker each, one shared consumer), then a watcher announcing a backlog
//! that is final already; timed from the watcher's start to the last
//! completed proof. Beside it, raw JetStream with async-nats alone: publish
//! the same number of messages one by one, then pull and ack them one by
//! one as a one-worker prover does.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt;

use crate::chain::Anvil;
use crate::standalone::Kit;
use crate::sys;

/// How long a backlog may take before the run counts as failed.
const BACKLOG_LIMIT: Duration = Duration::from_secs(600);

/// A nats-server with JetStream and its own store, killed when dropped.
pub struct Nats {
    child: Child,
    pub url: String,
    /// Its HTTP monitoring port (`/varz`).
    monitor: u16,
}

impl Nats {
    /// Starts one on free ports, its store under `dir`.
    pub fn start(dir: &Path) -> Result<Nats, String> {
        let port = sys::free_port();
        let monitor = sys::free_port();
        let child = Command::new(sys::tool("nats-server"))
            .arg("-js")
            .arg("-sd")
            .arg(dir.join("store"))
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &monitor.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("nats-server: {e}"))?;
        let nats = Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            monitor,
        };
        let up = sys::wait_for(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if up {
            Ok(nats)
        } else {
            Err("nats-server did not start".into())
        }
    }

    /// The messages the server has taken in from clients and sent out to
    /// them so far (`in_msgs`, `out_msgs` of `/varz`).
    fn messages(&self) -> Option<(u64, u64)> {
        let body = http_get(self.monitor, "/varz")?;
        let varz: serde_json::Value = serde_json::from_str(body.split_once("\r\n\r\n")?.1).ok()?;
        Some((varz["in_msgs"].as_u64()?, varz["out_msgs"].as_u64()?))
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One role process of a run: what it is, the process, its metrics port.
struct Role {
    label: String,
    child: Child,
    port: u16,
}

/// `orchestrator <role>` with a clean environment plus `env`; its logs go
/// to `<dir>/<label>.stderr`.
fn role(
    kit: &Kit,
    dir: &Path,
    label: &str,
    command: &str,
    env: &[(&str, String)],
) -> Result<Role, String> {
    let port = sys::free_port();
    let mut cmd = Command::new(&kit.orchestrator);
    cmd.arg(command).env_clear();
    for key in ["PATH", "HOME", "TMPDIR"] {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    let child = cmd
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("METRICS_PORT", port.to_string())
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.join(format!("{label}.stderr")))
                .map_err(|e| e.to_string())?,
        )
        .spawn()
        .map_err(|e| format!("{label}: {e}"))?;
    Ok(Role {
        label: label.to_owned(),
        child,
        port,
    })
}

/// `GET path` on loopback `port` over HTTP/1.0: the whole response.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    Some(response)
}

/// Whether `/readyz` on `port` answers 200.
fn ready(port: u16) -> bool {
    http_get(port, "/readyz")
        .is_some_and(|r| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"))
}

/// One role-mode backlog: how long it took, and the CPU each process used
/// for it.
pub struct Backlog {
    /// From the watcher's start to the last completed proof.
    pub took: Duration,
    /// (process, CPU milliseconds per block), nats-server's included; the
    /// roles' start-up is in it too.
    pub cpu_ms_per_block: Vec<(String, f64)>,
    /// Messages nats-server took in from and sent out to the roles, per
    /// block, over the backlog alone (counted from the watcher's start).
    pub nats_messages_per_block: Option<(f64, f64)>,
}

/// One role-mode backlog of `blocks` blocks from `from` with `provers`
/// prover processes.
pub fn backlog(
    kit: &Kit,
    anvil: &Anvil,
    from: u64,
    blocks: u64,
    provers: usize,
) -> Result<Backlog, String> {
    let dir = kit.scratch(&format!("roles-{provers}"));
    let nats = Nats::start(&dir)?;
    let base = vec![("NATS_URL", nats.url.clone()), ("L1_RPC", anvil.http_url())];
    let with = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        base.iter().cloned().chain(extra.iter().cloned()).collect()
    };
    let mut init = role(kit, &dir, "init", "init", &base)?.child;
    let (status, _) = sys::wait4(&init)?;
    let _ = init.try_wait();
    if status != 0 {
        return Err(format!("orchestrator init failed (see {})", dir.display()));
    }
    let mut running = Running(Vec::new());
    for i in 1..=provers {
        let work: PathBuf = dir.join(format!("work-{i}"));
        running.0.push(role(
            kit,
            &dir,
            &format!("prover-{i}"),
            "prover",
            &with(&[
                ("BINARY", kit.noop.display().to_string()),
                ("CONSUMER_NAME", "bench-prover".into()),
                ("ORCHESTRATOR_WORKERS", "1".into()),
                ("ORCHESTRATOR_WORK_DIR", work.display().to_string()),
            ]),
        )?);
    }
    running.0.push(role(
        kit,
        &dir,
        "proof-matcher",
        "proof-matcher",
        &with(&[
            ("INPUT_QUEUE", "block_proofs,blocks".into()),
            ("OUTPUT_QUEUE", "completed_proofs".into()),
        ]),
    )?);
    for Role { child, port, .. } in &mut running.0 {
        if !sys::wait_for(Duration::from_secs(60), || ready(*port)) {
            let gone = child.try_wait().ok().flatten();
            return Err(format!(
                "a role never got ready (exit {gone:?}; logs in {})",
                dir.display()
            ));
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let took = runtime.block_on(async {
        let client = async_nats::connect(&nats.url)
            .await
            .map_err(|e| e.to_string())?;
        let mut completed = client
            .subscribe("modularorchestrator.completed_proofs")
            .await
            .map_err(|e| e.to_string())?;
        client.flush().await.map_err(|e| e.to_string())?;
        let to = from + blocks - 1;
        let before = nats.messages();
        let started = Instant::now();
        running.0.push(role(
            kit,
            &dir,
            "block-watcher",
            "block-watcher",
            &with(&[
                ("NEXT_BLOCK", from.to_string()),
                ("ORCHESTRATOR_TO_BLOCK", to.to_string()),
            ]),
        )?);
        let mut seen = HashSet::new();
        while seen.len() < blocks as usize {
            let left = BACKLOG_LIMIT.saturating_sub(started.elapsed());
            let message = tokio::time::timeout(left, completed.next())
                .await
                .map_err(|_| {
                    format!(
                        "{} of {blocks} completed after {BACKLOG_LIMIT:?}",
                        seen.len()
                    )
                })?
                .ok_or("the subscription ended")?;
            let proof: serde_json::Value =
                serde_json::from_slice(&message.payload).map_err(|e| e.to_string())?;
            if let Some(block) = proof["block"].as_u64() {
                seen.insert(block);
            }
        }
        Ok::<_, String>((started.elapsed(), before))
    })?;
    let (took, before) = took;
    let nats_messages_per_block = before.zip(nats.messages()).map(|((i0, o0), (i1, o1))| {
        let per_block = |n: u64| n as f64 / blocks as f64;
        (per_block(i1 - i0), per_block(o1 - o0))
    });
    let per_block = |pid: u32| sys::cpu_time(pid).map(|t| t.as_secs_f64() * 1000.0 / blocks as f64);
    let cpu_ms_per_block = std::iter::once(("nats-server".to_owned(), nats.child.id()))
        .chain(running.0.iter().map(|r| (r.label.clone(), r.child.id())))
        .filter_map(|(label, pid)| Some((label, per_block(pid)?)))
        .collect();
    drop(running);
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Backlog {
        took,
        cpu_ms_per_block,
        nats_messages_per_block,
    })
}

/// The role processes of one run: SIGTERM, then reaped, when dropped.
struct Running(Vec<Role>);

impl Drop for Running {
    fn drop(&mut self) {
        for role in &self.0 {
            sys::terminate(&role.child);
        }
        for role in &mut self.0 {
            let _ = role.child.wait();
        }
    }
}

/// Raw JetStream rates with async-nats alone, in messages per second.
#[derive(Debug, Clone, Copy)]
pub struct Raw {
    /// Publish one, wait for its ack, next (as the watcher did).
    pub publish: f64,
    /// Pull one (fetch of 1), double-ack it, next: one worker's pattern.
    pub pull_one: f64,
    /// Pull up to 100 at once, double-ack each.
    pub pull_batch: f64,
}

/// Measures [`Raw`] on a fresh nats-server with `messages` messages.
pub fn raw(kit: &Kit, messages: u64) -> Result<Raw, String> {
    let dir = kit.scratch("raw-jetstream");
    let nats = Nats::start(&dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let rates = runtime.block_on(async {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let client = async_nats::connect(&nats.url).await.map_err(|x| e(&x))?;
        let js = jetstream::new(client);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: "raw".into(),
                subjects: vec!["raw.>".into()],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|x| e(&x))?;
        let started = Instant::now();
        for i in 0..messages {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("block-{i}").as_str());
            js.publish_with_headers("raw.blocks", headers, i.to_string().into())
                .await
                .map_err(|x| e(&x))?
                .await
                .map_err(|x| e(&x))?;
        }
        let publish = messages as f64 / started.elapsed().as_secs_f64();
        let mut rates = vec![publish];
        for (name, batch) in [("one", 1usize), ("batch", 100)] {
            let consumer = stream
                .create_consumer(pull::Config {
                    durable_name: Some(name.into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ..Default::default()
                })
                .await
                .map_err(|x| e(&x))?;
            let started = Instant::now();
            let mut taken = 0;
            while taken < messages {
                let mut fetched = consumer
                    .fetch()
                    .max_messages(batch)
                    .messages()
                    .await
                    .map_err(|x| e(&x))?;
                while let Some(message) = fetched.next().await {
                    message
                        .map_err(|x| e(&x))?
                        .double_ack()
                        .await
                        .map_err(|x| e(&*x))?;
                    taken += 1;
                }
            }
            rates.push(messages as f64 / started.elapsed().as_secs_f64());
        }
        Ok::<_, String>(rates)
    })?;
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Raw {
        publish: rates[0],
        pull_one: rates[1],
        pull_batch: rates[2],
    })
}
