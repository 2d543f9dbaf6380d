//! A real nats-server with JetStream per test: free loopback ports, its own
//! store dir, ready once its health endpoint says JetStream is up, killed
//! when dropped.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::http::{get, get_ok};
use crate::support::{TempDir, node::find_tool, node::free_port, temp_dir};

/// `NATS_SERVER_BIN`, else `<repo>/.deps/bin/nats-server`, else `nats-server` on PATH.
fn nats_server_bin() -> PathBuf {
    find_tool("NATS_SERVER_BIN", "nats-server")
}

/// Whether `GET path` on `port` answers HTTP 200.
pub fn http_ok(port: u16, path: &str) -> bool {
    get_ok(port, path).is_some()
}

/// `GET path` on the monitoring `port`, as JSON; `None` on any failure.
pub fn http_json(port: u16, path: &str) -> Option<Value> {
    serde_json::from_str(&get(port, path)?.1).ok()
}

/// A nats-server process with JetStream enabled.
pub struct NatsServer {
    child: Child,
    port: u16,
    dir: TempDir,
    /// The monitoring port of the health check, kept for [`NatsServer::restart`].
    http_port: u16,
    /// The extra flags it was started with, kept for [`NatsServer::restart`].
    flags: Vec<String>,
}

impl NatsServer {
    /// Starts a server on free ports and waits until JetStream is ready.
    pub fn start() -> NatsServer {
        NatsServer::start_with(&[])
    }

    /// [`NatsServer::start`] with extra server flags, e.g. `--user U --pass P`
    /// or `--tls --tlscert C --tlskey K` (the health check, on the plain
    /// HTTP monitoring port, needs neither credentials nor TLS).
    pub fn start_with(flags: &[&str]) -> NatsServer {
        let bin = nats_server_bin();
        for _ in 0..5 {
            let dir = temp_dir("nats");
            let (port, http_port) = (free_port(), free_port());
            let log = File::create(dir.path().join("nats-server.log")).expect("nats log file");
            let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
            let child = spawn_server(&dir, port, http_port, &flags, log);
            let mut server = NatsServer {
                child,
                port,
                dir,
                http_port,
                flags,
            };
            if server.wait_ready(http_port) {
                return server;
            }
            // Most likely another process took a port in between: retry.
        }
        panic!(
            "nats-server did not start after 5 attempts ({})",
            bin.display()
        );
    }

    fn wait_ready(&mut self, http_port: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self
                .child
                .try_wait()
                .expect("try_wait nats-server")
                .is_some()
            {
                return false;
            }
            if http_ok(http_port, "/healthz?js-enabled-only=true") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The client URL, as `NATS_URL`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats-server.log")).unwrap_or_default()
    }
}

impl NatsServer {
    /// `kill -9` of the server, as a crash or a lost host: clients see the
    /// connection drop. The store dir and the ports stay, for [`NatsServer::restart`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again (after [`NatsServer::kill`]) on the same
    /// ports, with the same flags and store dir, so streams, consumers and
    /// their acknowledged state come back; waits until JetStream is ready.
    /// Its log is appended to the first run's.
    pub fn restart(&mut self) {
        assert!(
            self.child
                .try_wait()
                .expect("try_wait nats-server")
                .is_some(),
            "nats-server is still running; kill it before restarting"
        );
        // The port may be held for a moment after the kill: retry a little.
        for _ in 0..20 {
            let log = OpenOptions::new()
                .append(true)
                .create(true)
                .open(self.dir.path().join("nats-server.log"))
                .expect("nats log file");
            self.child = spawn_server(&self.dir, self.port, self.http_port, &self.flags, log);
            if self.wait_ready(self.http_port) {
                return;
            }
            self.kill();
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "nats-server did not restart on port {}:\n{}",
            self.port,
            self.log()
        );
    }
}

/// Starts nats-server with JetStream, its store in `dir`, on `port` and
/// monitoring `http_port`, with extra `flags`; its log goes to `log`.
fn spawn_server(dir: &TempDir, port: u16, http_port: u16, flags: &[String], log: File) -> Child {
    let bin = nats_server_bin();
    Command::new(&bin)
        .arg("-js")
        .arg("-sd")
        .arg(dir.path().join("store"))
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(["-m", &http_port.to_string()])
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()))
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NatsServer {
    /// The server's process id, e.g. to send it a signal.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGSTOP: the server keeps its sockets open but answers nothing, as a
    /// host stalled by swapping or a paused VM; clients see timeouts, not a
    /// closed connection. [`NatsServer::thaw`] resumes it.
    pub fn freeze(&self) {
        // SAFETY: kill(2) on our own child, which is not reaped while we hold it.
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGSTOP) };
    }

    /// SIGCONT after [`NatsServer::freeze`].
    pub fn thaw(&self) {
        // SAFETY: as in `freeze`.
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGCONT) };
    }

    /// The monitoring port (`/healthz`, `/jsz`, ...).
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The server name given with `-n` (a cluster node's), or "".
    pub fn name(&self) -> &str {
        self.flags
            .windows(2)
            .find(|pair| pair[0] == "-n")
            .map_or("", |pair| pair[1].as_str())
    }
}
