//! Plain HTTP/1.0 GETs on loopback, for the endpoints the tests read
//! (`/metrics`, nats-server's monitoring): HTTP/1.0, so the server closes
//! the connection after the body and no client library is needed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `GET path` on `port`: the status code and the body. `None`: no answer.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, body.to_owned()))
}

/// The body of `GET path` on `port` if it answered 200.
pub fn get_ok(port: u16, path: &str) -> Option<String> {
    get(port, path).and_then(|(status, body)| (status == 200).then_some(body))
}
