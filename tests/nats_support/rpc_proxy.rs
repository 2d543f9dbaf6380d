//! A TCP proxy in front of anvil that can go dark: an RPC outage as the
//! watcher sees it (its connections reset, new ones refused at once) while
//! the chain goes on. Blocking threads; stopped when dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A proxy on a free loopback port to `target`.
pub struct RpcProxy {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl RpcProxy {
    /// Starts forwarding to `target` (`http://127.0.0.1:PORT`).
    pub fn start(target: &str) -> RpcProxy {
        let target: SocketAddr = target
            .trim_start_matches("http://")
            .parse()
            .expect("an http://IP:PORT target");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the RPC proxy");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let down = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (is_down, stopped, tracked) = (down.clone(), stop.clone(), open.clone());
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    // During an outage a connection is closed at once.
                    Ok((client, _)) if is_down.load(Ordering::Relaxed) => drop(client),
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        if let Ok(server) = TcpStream::connect(target) {
                            forward(client, server, &tracked);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        RpcProxy {
            addr,
            down,
            stop,
            open,
            thread: Some(thread),
        }
    }

    /// The URL to give the watcher as `L1_RPC`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts the outage: open connections are cut, new ones closed.
    pub fn go_down(&self) {
        self.down.store(true, Ordering::Relaxed);
        for stream in self.open.lock().expect("proxy connections").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Ends the outage.
    pub fn come_back(&self) {
        self.down.store(false, Ordering::Relaxed);
    }
}

/// Copies both ways between `client` and `server` on two threads; both
/// streams are kept in `open` so an outage can cut them.
fn forward(client: TcpStream, server: TcpStream, open: &Arc<Mutex<Vec<TcpStream>>>) {
    let pairs = [
        (client.try_clone(), server.try_clone()),
        (server.try_clone(), client.try_clone()),
    ];
    {
        let mut open = open.lock().expect("proxy connections");
        open.extend(client.try_clone().ok());
        open.extend(server.try_clone().ok());
    }
    for pair in pairs {
        if let (Ok(mut from), Ok(mut to)) = pair {
            std::thread::spawn(move || {
                let mut buffer = [0u8; 16 * 1024];
                while let Ok(n) = from.read(&mut buffer) {
                    if n == 0 || to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(Shutdown::Write);
            });
        }
    }
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.go_down();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
