//! A real Ethereum JSON-RPC node for the tests: one anvil per test on a free
//! loopback port, with a finalized block that trails the head by 2, and a
//! blocking JSON-RPC client small enough to need no HTTP crate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A port nothing listens on right now, for a process a test starts later.
///
/// Taken below the kernel's ephemeral range, never from it: a port the kernel
/// handed out for `bind(0)` goes back to that range when the probe closes, and
/// any outgoing connection of a parallel test can take it as its local port
/// before the test's server binds it ("Address already in use"). Below the
/// range only listeners compete, and this process never hands a port out
/// twice; the start depends on the pid, so the test binaries that run one
/// after another do not reuse each other's ports either.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let high = ephemeral_start().unwrap_or(32_768).max(LOW + 1_000);
    let span = high - LOW;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let port = (LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        let free = |ip: [u8; 4]| TcpListener::bind(SocketAddr::from((ip, port))).is_ok();
        if free([127, 0, 0, 1]) && free([0, 0, 0, 0]) {
            return port;
        }
    }
    panic!("no free port between {LOW} and {high}");
}

/// The first port of the kernel's ephemeral range, if the kernel says.
fn ephemeral_start() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A test tool: `$env_var`, else `<repo>/.deps/bin/<name>`, else `name` on
/// PATH; panics naming the install script when none exists.
pub fn find_tool(env_var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        return path.into();
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".deps/bin")
        .join(name);
    if local.is_file() {
        return local;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    on_path.unwrap_or_else(|| {
        panic!(
            "{name} not found (checked ${env_var}, {}, PATH): run scripts/install-test-deps.sh",
            local.display()
        )
    })
}

/// `ANVIL_BIN`, else `<repo>/.deps/bin/anvil`, else `anvil` on PATH.
fn anvil_bin() -> PathBuf {
    find_tool("ANVIL_BIN", "anvil")
}

/// One blocking HTTP/1.0 JSON-RPC call (HTTP/1.0: the server closes the
/// connection after the response and never chunks it).
fn rpc_call(addr: SocketAddr, method: &str, params: Value) -> std::io::Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST / HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let invalid = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{what}: {response}"),
        )
    };
    let (_, payload) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("no HTTP body"))?;
    let mut reply: Value =
        serde_json::from_str(payload).map_err(|_| invalid("body is not JSON"))?;
    if let Some(error) = reply.get("error") {
        return Err(invalid(&format!("JSON-RPC error {error}")));
    }
    Ok(reply["result"].take())
}

/// An anvil process, killed when dropped.
pub struct Anvil {
    child: Child,
    addr: SocketAddr,
}

impl Anvil {
    /// Starts anvil on `port` (1 s blocks, 1 slot per epoch), not yet ready.
    fn spawn(bin: &std::path::Path, port: u16) -> Anvil {
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--block-time", "1", "--slots-in-an-epoch", "1", "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));
        Anvil {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// Starts anvil (1 s blocks, 1 slot per epoch) and waits until it answers.
    pub fn start() -> Anvil {
        let bin = anvil_bin();
        for _ in 0..5 {
            let port = free_port();
            let mut anvil = Anvil::spawn(&bin, port);
            if anvil.wait_ready() {
                return anvil;
            }
            // Most likely another process took the port in between: retry.
        }
        panic!("anvil did not start after 5 attempts ({})", bin.display());
    }

    /// Starts anvil on `port` (where a test's RPC URL has pointed while
    /// nothing listened: an outage ends), waiting until it answers.
    pub fn start_at(port: u16) -> Anvil {
        let bin = anvil_bin();
        let mut anvil = Anvil::spawn(&bin, port);
        assert!(anvil.wait_ready(), "anvil did not start on port {port}");
        anvil
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().expect("try_wait anvil").is_some() {
                return false;
            }
            if rpc_call(self.addr, "eth_blockNumber", json!([])).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The HTTP URL to give the orchestrator as `--rpc`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The WebSocket URL of the same node (anvil serves both on one port).
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// A JSON-RPC call that must succeed.
    pub fn rpc(&self, method: &str, params: Value) -> Value {
        rpc_call(self.addr, method, params).unwrap_or_else(|e| panic!("anvil {method}: {e}"))
    }

    /// The number of the newest block.
    pub fn latest(&self) -> u64 {
        parse_quantity(&self.rpc("eth_blockNumber", json!([])))
    }

    /// Block `number` as the node returns it (without transactions).
    pub fn block(&self, number: u64) -> Value {
        self.rpc(
            "eth_getBlockByNumber",
            json!([format!("{number:#x}"), false]),
        )
    }

    /// Stops anvil's own mining: only the blocks a test mines appear.
    pub fn stop_interval_mining(&self) {
        self.rpc("evm_setIntervalMining", json!([0]));
    }

    /// Mines `stale` blocks, waits until the wall clock is more than
    /// `age_secs` past the newest of them (a wait for a point in time, not
    /// for an amount of it), then mines `fresh` blocks stamped an hour ahead,
    /// so they stay fresh while a test runs. Returns the first and the last
    /// block mined. Call with interval mining stopped.
    pub fn mine_stale_then_fresh(&self, stale: u64, age_secs: u64, fresh: u64) -> (u64, u64) {
        let first = self.latest() + 1;
        self.mine(stale);
        let stale_time = parse_quantity(&self.block(first + stale - 1)["timestamp"]);
        let aged = || now_secs() > stale_time + age_secs;
        assert!(
            super::eventually(Duration::from_secs(age_secs + 10), aged),
            "the clock did not pass block {}'s time + {age_secs}s",
            first + stale - 1
        );
        self.rpc("evm_setNextBlockTimestamp", json!([now_secs() + 3600]));
        self.mine(fresh);
        (first, first + stale + fresh - 1)
    }

    /// The number of the current finalized block.
    pub fn finalized(&self) -> u64 {
        let block = self.rpc("eth_getBlockByNumber", json!(["finalized", false]));
        parse_quantity(&block["number"])
    }

    /// Mines `blocks` blocks at once.
    pub fn mine(&self, blocks: u64) {
        self.rpc("anvil_mine", json!([format!("{blocks:#x}")]));
    }

    /// Mines until the finalized block is at least `block`.
    pub fn finalize_up_to(&self, block: u64) {
        for _ in 0..10 {
            let finalized = self.finalized();
            if finalized >= block {
                return;
            }
            // Near genesis the finalized block lags by less than 2, so a
            // single round may fall short.
            self.mine(block - finalized);
        }
        panic!("anvil did not finalize block {block}");
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON-RPC quantity (`"0x1f"`) as a number.
pub fn parse_quantity(value: &Value) -> u64 {
    let hex = value.as_str().and_then(|s| s.strip_prefix("0x"));
    hex.and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| panic!("not a JSON-RPC quantity: {value}"))
}

/// Now, in whole seconds since the Unix epoch (block timestamps' unit).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}
