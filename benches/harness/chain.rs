//! The chain of the bench: one anvil on a free loopback port that mines
//! only when asked (a backfill's range stands still), with a finalized block
//! close behind the head (one slot per epoch), and a small JSON-RPC client.
//!
//! A backfill's chain starts high: its genesis block is numbered past the
//! largest range (`--init` with a genesis `number`), so every range is final
//! from the start. Mining 100,000 blocks instead would take anvil over an
//! hour here (`anvil_mine` makes ~150 blocks/s at first and slows down as
//! the chain grows). A range run with `--follow finalized` reads only the
//! finalized head from the node, so the blocks below genesis are never
//! asked for; the provers never read the chain.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::sys;

/// An anvil process, killed when dropped.
pub struct Anvil {
    child: Child,
    pub addr: SocketAddr,
}

impl Anvil {
    /// Starts anvil and waits until it answers; with `genesis`, its chain
    /// starts at block `genesis.0` (the genesis file is written to
    /// `genesis.1`).
    pub fn start(genesis: Option<(u64, &Path)>) -> Result<Anvil, String> {
        let port = sys::free_port();
        let mut command = Command::new(sys::tool("anvil"));
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--slots-in-an-epoch", "1", "--silent"]);
        if let Some((number, path)) = genesis {
            let spec = json!({
                "config": {"chainId": 31337, "homesteadBlock": 0, "eip150Block": 0,
                    "eip155Block": 0, "eip158Block": 0, "byzantiumBlock": 0,
                    "constantinopleBlock": 0, "petersburgBlock": 0, "istanbulBlock": 0,
                    "berlinBlock": 0, "londonBlock": 0, "shanghaiTime": 0, "cancunTime": 0},
                "number": format!("{number:#x}"),
                "timestamp": "0x0",
                "gasLimit": "0x1c9c380",
                "difficulty": "0x0",
                "alloc": {}
            });
            std::fs::write(path, spec.to_string()).map_err(|e| e.to_string())?;
            command.arg("--init").arg(path);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("anvil: {e}"))?;
        let anvil = Anvil {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        if !sys::wait_for(Duration::from_secs(30), || {
            anvil.call("eth_blockNumber", json!([])).is_ok()
        }) {
            return Err("anvil did not answer within 30 s".into());
        }
        Ok(anvil)
    }

    /// The HTTP URL for `--rpc` / `L1_RPC`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The WebSocket URL (anvil serves both on one port).
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// One JSON-RPC call over HTTP/1.0 (no chunking, the server closes).
    pub fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let body = body.to_string();
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(600)))
            .map_err(|e| e.to_string())?;
        // One write of the whole request: `write!` on the bare stream sends
        // each piece as its own segment, and Nagle then holds the body back
        // until anvil's delayed ACK (40 ms), which the latency part measured
        // as the orchestrator's.
        let request = format!(
            "POST / HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| e.to_string())?;
        let (_, payload) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no HTTP body: {response}"))?;
        let mut reply: Value = serde_json::from_str(payload).map_err(|e| e.to_string())?;
        if let Some(error) = reply.get("error") {
            return Err(format!("{method}: {error}"));
        }
        Ok(reply["result"].take())
    }

    /// The number of block `tag` (`latest`, `finalized`); `None` when the
    /// node has none (no block is finalized right after genesis).
    pub fn block_opt(&self, tag: &str) -> Result<Option<u64>, String> {
        let block = self.call("eth_getBlockByNumber", json!([tag, false]))?;
        if block.is_null() {
            return Ok(None);
        }
        quantity(&block["number"]).map(Some)
    }

    /// The number of block `tag`, which must exist.
    pub fn block(&self, tag: &str) -> Result<u64, String> {
        self.block_opt(tag)?
            .ok_or_else(|| format!("anvil has no {tag} block"))
    }

    /// Mines until the finalized block is at least `block` (it trails the
    /// head by 2 blocks with one slot per epoch).
    pub fn finalize_up_to(&self, block: u64) -> Result<(), String> {
        for _ in 0..10 {
            if self.block_opt("finalized")? >= Some(block) {
                return Ok(());
            }
            let count = (block + 2).saturating_sub(self.block("latest")?).max(1);
            self.call("anvil_mine", json!([format!("{count:#x}")]))?;
        }
        Err(format!("anvil did not finalize block {block}"))
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON-RPC quantity (`"0x1f"`).
pub fn quantity(value: &Value) -> Result<u64, String> {
    value
        .as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| format!("not a quantity: {value}"))
}
